"""Tiny random models for fast unit tests of the sampling engine (no toy world, no weights).

Target (16x16 RGB): conv1 relu1 pool1 conv2 relu2 pool2 flatten fc6 relu6 fc7 relu7 fc8 (10 logits);
generator: 32-d code (the target's relu6) -> linear -> 2 transposed convs -> tanh, space [-1, 1];
DAE: residual MLP on 32-d codes.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from atlas.models.codes import CodeStats
from atlas.models.deepsim import Reshape
from atlas.models.loaded import LoadedModel, freeze
from atlas.models.spaces import ImageSpace

SIZE = 16
CODE = 32


class ResidualMLP(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(d, 64), nn.ReLU(), nn.Linear(64, d))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return torch.relu(h + 0.1 * self.net(h))


def tiny_target(seed: int = 0, batchnorm: bool = False) -> LoadedModel:
    """``batchnorm``: BatchNorms (``bn1``, ``bn2``, random running statistics) after the convs, which the
    engine folds."""
    torch.manual_seed(seed)
    bn1 = [("bn1", _random_batchnorm(8))] if batchnorm else []
    bn2 = [("bn2", _random_batchnorm(16))] if batchnorm else []
    m = nn.Sequential(
        OrderedDict(
            [
                ("conv1", nn.Conv2d(3, 8, 3, padding=1)),
                *bn1,
                ("relu1", nn.ReLU()),
                ("pool1", nn.MaxPool2d(2)),
                ("conv2", nn.Conv2d(8, 16, 3, padding=1)),
                *bn2,
                ("relu2", nn.ReLU()),
                ("pool2", nn.MaxPool2d(2)),
                ("flatten", nn.Flatten()),
                ("fc6", nn.Linear(16 * 4 * 4, CODE)),
                ("relu6", nn.ReLU()),
                ("fc7", nn.Linear(CODE, CODE)),
                ("relu7", nn.ReLU()),
                ("fc8", nn.Linear(CODE, 10)),
            ]
        )
    )
    space = ImageSpace(size=SIZE, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    return LoadedModel(freeze(m), "target", "tiny:target", space=space, output_layer="fc8")


def _random_batchnorm(channels: int) -> nn.BatchNorm2d:
    norm = nn.BatchNorm2d(channels)
    with torch.no_grad():
        norm.running_mean.normal_(0.0, 0.3)
        norm.running_var.uniform_(0.5, 2.0)
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.normal_(0.0, 0.1)
    return norm


def tiny_generator(seed: int = 1) -> LoadedModel:
    torch.manual_seed(seed)
    m = nn.Sequential(
        OrderedDict(
            [
                ("defc", nn.Linear(CODE, 16 * 4 * 4)),
                ("relu", nn.LeakyReLU(0.3)),
                ("reshape", Reshape(16, 4, 4)),
                ("deconv1", nn.ConvTranspose2d(16, 8, 4, 2, 1)),
                ("relu1", nn.LeakyReLU(0.3)),
                ("deconv0", nn.ConvTranspose2d(8, 3, 4, 2, 1)),
                ("tanh", nn.Tanh()),
            ]
        )
    )
    with torch.no_grad():  # gain: real codes are small (~0.1), pictures must still vary with the code
        m.defc.weight.mul_(30.0)
        m.deconv1.weight.mul_(2.0)
        m.deconv0.weight.mul_(2.0)
    space = ImageSpace(size=SIZE, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))  # tanh [-1, 1] <-> rgb01
    return LoadedModel(
        freeze(m),
        "generator",
        "tiny:generator",
        space=space,
        code_shape=(CODE,),
        extras={"code_layer": "relu6"},
    )


def tiny_dae(seed: int = 2) -> LoadedModel:
    torch.manual_seed(seed)
    return LoadedModel(freeze(ResidualMLP(CODE)), "dae", "tiny:dae", code_shape=(CODE,))


class TinyReal:
    """A RealImages-like set: random smooth pictures."""

    def __init__(self, n: int = 64, seed: int = 3) -> None:
        g = torch.Generator().manual_seed(seed)
        low = torch.rand(n, 3, 4, 4, generator=g)
        self.images = nn.functional.interpolate(low, size=(SIZE, SIZE), mode="bilinear", align_corners=False)
        self.labels = torch.zeros(n, dtype=torch.long)


def tiny_world(seed: int = 0, batchnorm: bool = False):
    """(target, generator, dae, real) with the generator's code stats from the real images' relu6 codes;
    ``batchnorm``: the target's (:func:`tiny_target`)."""
    target, gen = tiny_target(seed, batchnorm), tiny_generator(seed + 1)
    dae, real = tiny_dae(seed + 2), TinyReal()
    from atlas.models.probes import LayerProbe

    with torch.no_grad():
        codes = LayerProbe(target.module, ["relu6"])(target.space.encode(real.images))["relu6"]
    gen.extras["code_stats"] = CodeStats.from_codes(codes, "tiny real images")
    return target, gen, dae, real


def pixel_config():
    """A run config of a small python: target and the pixel method (no generator needed): the checks of
    preflight_models with models the test builds itself."""
    from atlas.config import config_from_dict

    return config_from_dict(
        {
            "name": "t",
            "models": {"target": "python:tests.unit.byo_factories:good", "allow_random_weights": True},
            "layers": [{"name": "fc8"}],
            "sampler": {"method": "pixel", "steps": 2, "chains_per_unit": 2, "start": "random"},
            "facets": {"real_images": None},
            "compute": {"device": "cpu"},
        }
    )
