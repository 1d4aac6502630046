"""Image spaces: how a tensor encodes an RGB picture, made explicit.

Every generator declares the space of its output and every target the space of its input. Pictures
travel between them through the canonical space: float RGB in [0, 1], shape (B, 3, H, W)::

    rgb01 = generator.space.decode(G(h))        # e.g. DeePSiM: BGR, mean-subtracted, about +-120, 256x256
    x_in  = target.space.encode(rgb01)          # e.g. AlexNet: RGB, ImageNet mean/std, 224 centre crop

Both steps are differentiable, so gradients flow from the target back to the code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

IMAGENET_MEAN_RGB = (0.485, 0.456, 0.406)
IMAGENET_STD_RGB = (0.229, 0.224, 0.225)
CAFFE_MEAN_BGR = (104.0, 117.0, 123.0)
_LUMA = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)  # ITU-R BT.601 luma weights


@dataclass(frozen=True)
class ImageSpace:
    """A tensor encoding of RGB images: ``x = (rgb01 * value_scale)[channel_order] - mean) / std``.

    ``channel_order: gray`` is a one-channel model: it reads the picture's luminance (ITU-R BT.601,
    0.299 R + 0.587 G + 0.114 B), and a one-channel output decodes to a grey RGB picture. ``mean`` and
    ``std`` hold one value per channel, or one value for every channel.

    ``size`` is the square size the model uses; ``geometry`` says how a picture of another size is
    fitted when encoding: ``center_crop`` (crop when larger, as DGN-AM crops 256 -> 227; resize when
    smaller) or ``resize`` (bilinear).
    """

    size: int
    channel_order: Literal["RGB", "BGR", "gray"] = "RGB"
    value_scale: float = 1.0
    mean: tuple[float, ...] = (0.0, 0.0, 0.0)  # 3 values, or 1 for every channel
    std: tuple[float, ...] = (1.0, 1.0, 1.0)
    geometry: Literal["center_crop", "resize"] = "resize"

    def _stats(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean = torch.tensor(self.mean, dtype=like.dtype, device=like.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, dtype=like.dtype, device=like.device).view(1, -1, 1, 1)
        if self.channel_order == "gray":
            mean, std = _one_channel(mean), _one_channel(std)
        return mean, std

    @property
    def channels(self) -> int:
        """Channels of the model tensor: 1 for gray, else 3."""
        return 1 if self.channel_order == "gray" else 3

    def fit(self, rgb01: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, 3, size, size) by this space's geometry."""
        h, w = rgb01.shape[-2:]
        if h == self.size and w == self.size:
            return rgb01
        if self.geometry == "center_crop" and h >= self.size and w >= self.size:
            top, left = (h - self.size) // 2, (w - self.size) // 2
            return rgb01[..., top : top + self.size, left : left + self.size]
        if h > self.size or w > self.size:  # shrinking: antialiased, so every pixel of G's picture counts
            # (plain bilinear reads 4 of each (H/size)^2 pixels: at 256 -> 32 px, 6 % of them get a gradient,
            # and the ascent can hide the unit's pattern in the pixels it skips)
            small = F.interpolate(
                rgb01.float(),
                size=(self.size, self.size),
                mode="bilinear",
                align_corners=False,
                antialias=True,
            )
            return small.to(rgb01.dtype)
        return F.interpolate(rgb01, size=(self.size, self.size), mode="bilinear", align_corners=False)

    def seen(self, rgb01: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) rgb01 -> the picture as this model reads it, for keeping: a ``center_crop`` space
        keeps only the crop it reads (DeePSiM's 256 px picture -> the 227 px centre that AlexNet reads, as
        DGN-AM's ``act_max.py`` and PPGN save it; the border reaches no unit), and a gray model's picture is
        its luminance in all three channels (the colours G draws beside it reach no unit). A picture the
        space resizes is kept at its own size."""
        h, w = rgb01.shape[-2:]
        if self.geometry == "center_crop" and h >= self.size and w >= self.size:
            rgb01 = self.fit(rgb01)  # (B, 3, size, size)
        if self.channel_order != "gray":
            return rgb01
        luma = (rgb01 * _LUMA.to(rgb01.dtype).to(rgb01.device)).sum(1, keepdim=True)  # (B, 1, H, W)
        return luma.expand(-1, 3, -1, -1)

    def encode(self, rgb01: torch.Tensor) -> torch.Tensor:
        """Canonical RGB [0,1] (B, 3, H, W) -> model tensor (B, C, size, size), C = ``channels``."""
        x = self.fit(rgb01) * self.value_scale
        if self.channel_order == "BGR":
            x = x.flip(1)
        elif self.channel_order == "gray":
            x = (x * _LUMA.to(x.dtype).to(x.device)).sum(1, keepdim=True)  # (B, 1, size, size)
        mean, std = self._stats(x)
        return (x - mean) / std

    def decode(self, x: torch.Tensor) -> torch.Tensor:
        """Model tensor (B, C, H, W) -> canonical RGB (B, 3, H, W), nominally in [0,1] (not clamped: keeps
        gradients); a gray tensor becomes a grey picture."""
        mean, std = self._stats(x)
        x = x * std + mean
        if self.channel_order == "BGR":
            x = x.flip(1)
        elif self.channel_order == "gray":
            x = x.expand(-1, 3, -1, -1)
        return x / self.value_scale

    def describe(self) -> str:
        mean, std = (t.flatten().tolist() for t in self._stats(torch.zeros(1, 3, 1, 1)))  # what it uses
        return (
            f"{self.size}x{self.size} {self.channel_order} x{self.value_scale:g} "
            f"mean={tuple(round(m, 3) for m in mean)} std={tuple(round(s, 3) for s in std)} "
            f"({self.geometry})"
        )


def conversion(source: ImageSpace, target: ImageSpace) -> str:
    """How a picture drawn in ``source`` (a generator's) reaches ``target`` (a network's input), in words."""
    n, m = source.size, target.size
    if n == m:
        how = "same size"
    elif target.geometry == "center_crop" and n > m:
        how = f"centre {m}x{m} crop"
    else:
        how = f"resized to {m}x{m}" + (", antialiased" if n > m else " (enlarged)")
    return f"{n}x{n} {source.channel_order} -> {m}x{m} {target.channel_order} ({how})"


def _one_channel(stats: torch.Tensor) -> torch.Tensor:
    """(1, C, 1, 1) per-channel stats -> (1, 1, 1, 1) for a gray model: one value as it is; three (an RGB
    space's, e.g. a torchvision target told channel_order: gray) folded with the luma weights, as the
    luminance itself is."""
    if stats.shape[1] == 1:
        return stats
    return (stats * _LUMA.to(stats.dtype).to(stats.device)).sum(1, keepdim=True)


def deepsim_space() -> ImageSpace:
    """DeePSiM generators' output: 256x256 BGR, Caffe mean subtracted, [0,255] scale (about +-120)."""
    return ImageSpace(size=256, channel_order="BGR", value_scale=255.0, mean=CAFFE_MEAN_BGR)


def torchvision_space(
    size: int = 224, geometry: Literal["center_crop", "resize"] = "center_crop"
) -> ImageSpace:
    """torchvision ImageNet models: RGB in [0,1], normalized by the ImageNet mean/std."""
    return ImageSpace(size=size, mean=IMAGENET_MEAN_RGB, std=IMAGENET_STD_RGB, geometry=geometry)


def to_uint8_images(rgb01: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) float RGB -> (B, H, W, 3) uint8 on the CPU, clamped to [0, 1]."""
    return _levels(rgb01).to(torch.uint8).permute(0, 2, 3, 1).cpu()


def as_stored(rgb01: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) float RGB -> the same, float32 in [0, 1], as :func:`to_uint8_images` keeps it (8 bits)."""
    return _levels(rgb01) / 255


def _levels(rgb01: torch.Tensor) -> torch.Tensor:
    return (rgb01.detach().float().clamp(0, 1) * 255).round()
