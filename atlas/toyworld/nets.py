"""The toy world's networks: target T, judge J, generator G, discriminator D, comparator C, code DAE.

Shapes (S = image size, a multiple of 8; D = T's fc6 width):
- ``TargetNet``:  (B, 3, S, S) encoded image -> (B, n_classes) logits; named layers conv1..conv4
  (post-activation), fc6, relu6, fc7, relu7, fc8.
- ``JudgeNet``:   (B, 3, S, S) -> (B, n_fine) logits; a different family (5x5 stem, LeakyReLU, average pools,
  global pooling).
- ``Generator``:  (B, D) post-ReLU fc6 code -> (B, 3, S, S) RGB in [0, 1] (sigmoid output).
- ``CodeDiscriminator``: (B, 3, S, S) image, (B, D) code -> (B,) logit (projection conditioning).
- ``Comparator``: a fixed, randomly initialised conv net; its features give G's feature loss. It is neither
  T nor J, so G is not rewarded for pleasing either of them.
- ``CodeDAE``:    (B, D) raw code -> (B, D) denoised code; standardization by stored mean/std inside.
- ``ReaderNet``:  (B, 3, S, S) encoded image -> (B, sum of head sizes) attribute logits, heads concatenated in
  ``READER_HEADS`` order; a third family (coordinate channels, strided convs, GroupNorm, SiLU, no pooling).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from atlas.toyworld.shapes import FINE_NAMES, PALETTE


def _conv_bn_relu(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())


class TargetNet(nn.Module):
    def __init__(self, widths: tuple[int, ...], fc: int, n_classes: int, size: int, pools: int = 3) -> None:
        super().__init__()
        w1, w2, w3, w4 = widths
        self.conv1 = _conv_bn_relu(3, w1)
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = _conv_bn_relu(w1, w2)
        self.pool2 = nn.MaxPool2d(2)
        self.conv3 = _conv_bn_relu(w2, w3)
        self.pool3 = nn.MaxPool2d(2) if pools == 3 else nn.Identity()
        self.conv4 = _conv_bn_relu(w3, w4)
        self.flatten = nn.Flatten()
        self.fc6 = nn.Linear(w4 * (size // 2**pools) ** 2, fc)
        self.relu6 = nn.ReLU()
        self.fc7 = nn.Linear(fc, fc)
        self.relu7 = nn.ReLU()
        self.fc8 = nn.Linear(fc, n_classes)

    def conv_map(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) encoded input -> (B, C4, S / 2**pools, S / 2**pools) the post-ReLU conv4 map."""
        x = self.pool1(self.conv1(x))
        x = self.pool2(self.conv2(x))
        return self.conv4(self.pool3(self.conv3(x)))

    def code(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) encoded image -> (B, D) post-ReLU fc6 code."""
        return self.relu6(self.fc6(self.flatten(self.conv_map(x))))

    def head(self, h: torch.Tensor) -> torch.Tensor:
        """(B, D) code -> (B, n_classes) logits."""
        return self.fc8(self.relu7(self.fc7(h)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.code(x))


class JudgeNet(nn.Module):
    def __init__(self, widths: tuple[int, ...], n_fine: int) -> None:
        super().__init__()
        w1, w2, w3 = widths

        def conv(cin: int, cout: int, k: int = 3) -> list[nn.Module]:
            return [
                nn.Conv2d(cin, cout, k, padding=k // 2, bias=False),
                nn.BatchNorm2d(cout),
                nn.LeakyReLU(0.1),
            ]

        def block(cin: int, cout: int) -> nn.Sequential:
            return nn.Sequential(*conv(cin, cout), *conv(cout, cout))

        self.block1 = nn.Sequential(*conv(3, w1, 5))
        self.pool1 = nn.AvgPool2d(2)
        self.block2 = block(w1, w2)
        self.pool2 = nn.AvgPool2d(2)
        self.block3 = block(w2, w3)
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.head = nn.Linear(w3, n_fine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool1(self.block1(x))
        x = self.pool2(self.block2(x))
        return self.head(self.flatten(self.gap(self.block3(x))))


def _up(cin: int, cout: int) -> nn.Sequential:
    """x2 up-block of the DeePSiM family: transposed conv 4x4 s2, conv 3x3, BatchNorm, LeakyReLU 0.2."""
    return nn.Sequential(
        nn.ConvTranspose2d(cin, cout, 4, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.LeakyReLU(0.2),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.LeakyReLU(0.2),
    )


class Generator(nn.Module):
    def __init__(self, code_dim: int, width: int, size: int, ups: int = 3) -> None:
        super().__init__()
        self.s0 = size // 2**ups
        w = width
        self.w0 = 2 * w
        self.defc = nn.Sequential(nn.Linear(code_dim, self.w0 * self.s0 * self.s0), nn.LeakyReLU(0.2))
        self.deconv3 = _up(self.w0, w) if ups == 3 else nn.Identity()  # S/8 -> S/4
        self.deconv2 = _up(w if ups == 3 else self.w0, w)  # S/4 -> S/2
        self.deconv1 = _up(w, w // 2)  # S/2 -> S
        self.to_rgb = nn.Conv2d(w // 2, 3, 3, padding=1)
        self.out = nn.Sigmoid()

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        x = self.defc(h).view(len(h), self.w0, self.s0, self.s0)
        return self.out(self.to_rgb(self.deconv1(self.deconv2(self.deconv3(x)))))


class SpatialGenerator(nn.Module):
    """G from T's conv4 map (B, C4, S / 2**ups, S / 2**ups) -> (B, 3, S, S) rgb01 (as DeePSiM's pool5 G):
    a 3x3 conv to 2 x width channels, ``ups`` up-blocks (the last to width / 2), 3x3 conv to RGB, sigmoid."""

    def __init__(self, in_channels: int, width: int, ups: int = 2) -> None:
        super().__init__()
        w = width
        self.inp = nn.Sequential(nn.Conv2d(in_channels, 2 * w, 3, padding=1), nn.LeakyReLU(0.2))
        widths = [2 * w] + [w] * (ups - 1) + [w // 2]
        self.ups = nn.Sequential(*(_up(a, b) for a, b in zip(widths[:-1], widths[1:], strict=True)))
        self.to_rgb = nn.Conv2d(w // 2, 3, 3, padding=1)
        self.out = nn.Sigmoid()

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.out(self.to_rgb(self.ups(self.inp(h))))


class CodeDiscriminator(nn.Module):
    def __init__(self, code_dim: int, width: int, size: int) -> None:
        super().__init__()
        w = width
        self.features = nn.Sequential(
            nn.Conv2d(3, w, 4, 2, 1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(w, 2 * w, 4, 2, 1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(2 * w, 2 * w, 4, 2, 1),
            nn.LeakyReLU(0.2),
            nn.Flatten(),
        )
        feat = 2 * w * (size // 8) ** 2
        self.fc = nn.Linear(feat, 4 * w)
        self.out = nn.Linear(4 * w, 1)
        self.proj = nn.Linear(code_dim, 4 * w)

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        f = torch.nn.functional.leaky_relu(self.fc(self.features(x * 2 - 1)), 0.2)  # (B, 4w)
        return self.out(f).squeeze(1) + (f * self.proj(h)).sum(1)


class Comparator(nn.Module):
    """Fixed random conv features at three scales: (B, 3, S, S) rgb01 -> list of feature maps."""

    def __init__(self, seed: int = 1234, width: int = 16) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.convs = nn.ModuleList(
            [
                nn.Conv2d(3, width, 3, padding=1),
                nn.Conv2d(width, 2 * width, 3, stride=2, padding=1),
                nn.Conv2d(2 * width, 2 * width, 3, stride=2, padding=1),
            ]
        )
        for conv in self.convs:
            fan_in = conv.weight[0].numel()
            conv.weight.data = torch.randn(conv.weight.shape, generator=g) * (2.0 / fan_in) ** 0.5
            conv.bias.data.zero_()
        self.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        x = x * 2 - 1
        for conv in self.convs:
            x = torch.relu(conv(x))
            feats.append(x)
        return feats


class _Block(nn.Module):
    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.LayerNorm(hidden), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, hidden)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.net(x)


class CodeDAE(nn.Module):
    """R(h) = h + std * f((h - mean) / std): a residual MLP on standardized codes (identity at init)."""

    def __init__(self, dim: int, hidden: int, blocks: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))
        self.inp = nn.Linear(dim, hidden)
        self.blocks = nn.Sequential(*[_Block(hidden) for _ in range(blocks)])
        self.out = nn.Linear(hidden, dim)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        z = (h - self.mean) / self.std
        z = z + self.out(torch.relu(self.blocks(self.inp(z))))
        return z * self.std + self.mean


# the attribute reader's heads, in the order of its concatenated logits: (attribute, number of values)
READER_HEADS: tuple[tuple[str, int], ...] = (
    ("fine", len(FINE_NAMES)),  # fine (facet-level) label; class: the most probability summed over facets
    ("colour", len(PALETTE)),  # the object's palette colour
    ("row", 3),  # the object centre's row tertile (top, middle, bottom)
    ("col", 3),  # its column tertile (left, centre, right)
    ("size", 3),  # radius tertile (small, medium, large)
    ("distractor", 2),  # a small dot of another colour: no, yes
)


def _gn_silu(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
        nn.GroupNorm(min(4, cout), cout),
        nn.SiLU(),
    )


class ReaderNet(nn.Module):
    """The attribute reader: where T and J pool (max / average, global), it keeps *where* things are, and
    adds *whether* something small is anywhere (a global max).

    (B, 3, S, S) -> concat coordinate maps x, y in [-1, 1] -> (B, 5, S, S) -> stem 3x3 (stride 1) ->
    three 3x3 stride-2 convs (S/2, S/4, S/8) -> [1x1 squeeze of the S/8 map, flattened ; global max of the
    S/4 and S/8 maps (B, w3 + w4)] -> hidden (SiLU) -> heads (B, sum of sizes); and *which pixels* are the
    object's: a 1x1 conv of the S/4 map to 16 channels, pixel-shuffled to (B, 1, S, S) coverage logits (the
    object's mask, so a conv unit's picture can be checked at the unit's place), appended flattened:
    (B, sum of sizes + S * S).
    """

    def __init__(
        self, widths: tuple[int, ...], squeeze: int, hidden: int, size: int, heads=READER_HEADS
    ) -> None:
        super().__init__()
        w1, w2, w3, w4 = widths
        coords = (torch.arange(size, dtype=torch.float32) + 0.5) / size * 2 - 1
        gy, gx = torch.meshgrid(coords, coords, indexing="ij")
        self.register_buffer("coords", torch.stack([gx, gy])[None], persistent=False)  # (1, 2, S, S)
        self.stem = _gn_silu(5, w1, 1)
        self.down1 = _gn_silu(w1, w2, 2)  # S/2
        self.down2 = _gn_silu(w2, w3, 2)  # S/4
        self.down3 = _gn_silu(w3, w4, 2)  # S/8
        self.squeeze = nn.Sequential(nn.Conv2d(w4, squeeze, 1), nn.SiLU())
        self.flatten = nn.Flatten()
        self.anywhere = nn.AdaptiveMaxPool2d(1)
        self.hidden = nn.Sequential(nn.Linear(squeeze * (size // 8) ** 2 + w3 + w4, hidden), nn.SiLU())
        self.heads = nn.Linear(hidden, sum(n for _, n in heads))
        self.cover = nn.Sequential(nn.Conv2d(w3, 16, 1), nn.PixelShuffle(4))  # (B, w3, S/4, S/4) -> (B,1,S,S)
        self.head_sizes = tuple(heads)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.cat([x, self.coords.to(x.dtype).expand(len(x), -1, -1, -1)], dim=1)  # (B, 5, S, S)
        mid = self.down2(self.down1(self.stem(x)))  # (B, w3, S/4, S/4)
        x = self.down3(mid)  # (B, w4, S/8, S/8)
        where = self.flatten(self.squeeze(x))  # (B, squeeze * (S/8)^2)
        anywhere = [self.flatten(self.anywhere(mid)), self.flatten(self.anywhere(x))]  # (B, w3), (B, w4)
        heads = self.heads(self.hidden(torch.cat([where, *anywhere], dim=1)))  # (B, sum of head sizes)
        return torch.cat([heads, self.cover(mid).flatten(1)], dim=1)  # (B, sum of head sizes + S * S)

    def split(self, logits: torch.Tensor) -> dict[str, torch.Tensor]:
        """(B, sum of head sizes [+ S * S]) -> {attribute: (B, n) logits} [+ "cover": (B, S, S) logits of
        each pixel being the object's, when the reader has the coverage output]."""
        sizes = [n for _, n in self.head_sizes]
        heads, rest = logits[:, : sum(sizes)], logits[:, sum(sizes) :]
        out = {name: part for (name, _), part in zip(self.head_sizes, heads.split(sizes, dim=1), strict=True)}
        if rest.shape[1]:
            side = math.isqrt(rest.shape[1])
            out["cover"] = rest.reshape(len(rest), side, side)
        return out
