"""DeePSiM up-convolutional generators (Dosovitskiy & Brox 2016), as used by DGN-AM and PPGN.

Architecture from REFERENCE.md ("DeePSiM up-convolutional generator"): LeakyReLU(0.3) after every
layer but the last; fully connected ``defc7 -> defc6 -> defc5`` (the fc8 variant starts from 1000-d),
reshape to 256x4x4, then transposed convolutions up to 3x256x256. The pool5 variant starts from
256x6x6 with three convolutions down to 4x4. The module keeps the layer names of the widely
circulated PyTorch "upconvGAN" port, so its state dicts load as they are: ``G.defc7.weight``, ...

Output space: BGR, Caffe-mean subtracted, [0, 255] scale (about +-120): ``spaces.deepsim_space()``.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

VARIANTS = ("fc6", "fc7", "fc8", "pool5")
CODE_SHAPES: dict[str, tuple[int, ...]] = {
    "fc6": (4096,),
    "fc7": (4096,),
    "fc8": (1000,),
    "pool5": (256, 6, 6),
}


INVERTED_NETWORK = "python:atlas.models.caffenet:caffenet"  # DeePSiM's generators invert CaffeNet's codes
CAFFENET_CODE_LAYERS = {"fc6": "relu6", "fc7": "relu7", "fc8": "fc8", "pool5": "pool5"}  # by variant


def foreign_code_note(
    generator: str, network: str, layer: str, uses: list[str], via_encoder: bool
) -> str | None:
    """A warning when a DeePSiM generator's code is read from a network that is not CaffeNet (the one its
    generators invert: unit i of another network's fc6 means nothing to G), for ``uses`` (what reads the
    code, e.g. "the joint prior E(G(h))"); ``via_encoder``: ``network`` is models.encoder (else the target,
    through models.code_layer). None when the generator is no DeePSiM one, the network is CaffeNet or
    nothing reads the code."""
    key = "models.encoder" if via_encoder else "models.code_layer"
    variant = generator.partition(":")[2]
    if not generator.startswith("deepsim:") or network.startswith(INVERTED_NETWORK) or not uses:
        return None
    verb = "reads" if len(uses) == 1 else "read"
    want = CAFFENET_CODE_LAYERS.get(variant, variant)
    return (
        f"{key}: {generator} inverts CaffeNet's {variant} code, but {' and '.join(uses)} {verb} "
        f"{network}'s {layer!r}, another network's units; set models.encoder to CaffeNet "
        f"({INVERTED_NETWORK} with its weights) and models.code_layer to {want}"
    )


class Reshape(nn.Module):
    """(B, N) -> (B, *shape): the fully connected code layers into a feature map."""

    def __init__(self, *shape: int) -> None:
        super().__init__()
        self.shape = shape

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], *self.shape)


def _lrelu() -> nn.LeakyReLU:
    return nn.LeakyReLU(0.3)


def _layers(variant: str) -> list[tuple[str, nn.Module]]:
    if variant == "pool5":
        head: list[tuple[str, nn.Module]] = [
            ("Rconv6", nn.Conv2d(256, 512, 3, 1, 1)),
            ("Rrelu6", _lrelu()),
            ("Rconv7", nn.Conv2d(512, 512, 3, 1, 1)),
            ("Rrelu7", _lrelu()),
            ("Rconv8", nn.Conv2d(512, 512, 3, 1, 0)),
            ("Rrelu8", _lrelu()),
        ]
        first_deconv_in = 512
    else:
        code_dim = CODE_SHAPES[variant][0]
        head = [
            ("defc7", nn.Linear(code_dim, 4096)),
            ("relu_defc7", _lrelu()),
            ("defc6", nn.Linear(4096, 4096)),
            ("relu_defc6", _lrelu()),
            ("defc5", nn.Linear(4096, 4096)),
            ("relu_defc5", _lrelu()),
            ("reshape", Reshape(256, 4, 4)),
        ]
        first_deconv_in = 256
    body: list[tuple[str, nn.Module]] = [
        ("deconv5", nn.ConvTranspose2d(first_deconv_in, 256, 4, 2, 1)),
        ("relu_deconv5", _lrelu()),  # 8x8
        ("conv5_1", nn.ConvTranspose2d(256, 512, 3, 1, 1)),
        ("relu_conv5_1", _lrelu()),
        ("deconv4", nn.ConvTranspose2d(512, 256, 4, 2, 1)),
        ("relu_deconv4", _lrelu()),  # 16x16
        ("conv4_1", nn.ConvTranspose2d(256, 256, 3, 1, 1)),
        ("relu_conv4_1", _lrelu()),
        ("deconv3", nn.ConvTranspose2d(256, 128, 4, 2, 1)),
        ("relu_deconv3", _lrelu()),  # 32x32
        ("conv3_1", nn.ConvTranspose2d(128, 128, 3, 1, 1)),
        ("relu_conv3_1", _lrelu()),
        ("deconv2", nn.ConvTranspose2d(128, 64, 4, 2, 1)),
        ("relu_deconv2", _lrelu()),  # 64x64
        ("deconv1", nn.ConvTranspose2d(64, 32, 4, 2, 1)),
        ("relu_deconv1", _lrelu()),  # 128x128
        ("deconv0", nn.ConvTranspose2d(32, 3, 4, 2, 1)),  # 256x256, no activation
    ]
    return head + body


class DeePSiMGenerator(nn.Module):
    """code (B, *CODE_SHAPES[variant]) -> image (B, 3, 256, 256) in DeePSiM's BGR mean-subtracted space."""

    def __init__(self, variant: str = "fc6") -> None:
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"unknown DeePSiM variant {variant!r}; valid: {', '.join(VARIANTS)}")
        self.variant = variant
        self.code_shape = CODE_SHAPES[variant]
        self.G = nn.Sequential(OrderedDict(_layers(variant)))

    def forward(self, code: torch.Tensor) -> torch.Tensor:
        return self.G(code)  # (B, 3, 256, 256)
