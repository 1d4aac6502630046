"""Random views of a batch of pictures, each chain drawing its own (transformation robustness).

Usage::

    u = rand_per_chain(gens, 4, device)                    # (B, 4) uniforms, row b from chain b's generator
    seen = warp(img, robustness_theta(u, pad=0.05, jitter=0.035, scale=(0.9, 1.1), rotate=10))
    seen = warp(img, crop_theta(u[:, :1], normal, crop=(0.7, 1.0)))  # MACO's crop (normal: (B, 2) N(0, 1))
    seen = seen + crop_noise(gens, seen.shape, 0.05)        # MACO's Gaussian + uniform noise

Lucid's ``standard_transforms`` (pad 12, jitter 8, scale 0.9-1.1, rotate +-10 degrees at 224 px; its second,
final ``jitter(4)`` is left out) become one affine warp per chain: the picture padded with grey by ``pad``
(fraction of its side), zoomed by ``s``, rotated by ``r`` and shifted by up to ``jitter`` (fraction of the
side), sampled bilinearly at the
picture's own size. MACO (Fel et al. 2023) crops a random box (side ``c`` in ``crop`` x the picture's side,
centre ~ N(0.5, 0.15) kept inside) and resizes it to the picture's size.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from atlas.sampling.seeds import randn_per_chain

GREY = 0.5  # outside the picture


def rand_per_chain(gens: list[torch.Generator], n: int, device: torch.device) -> torch.Tensor:
    """(B, n) uniforms in [0, 1), row b from chain b's generator."""
    return torch.stack([torch.rand(n, generator=g, device=device) for g in gens])


def warp(img: torch.Tensor, theta: torch.Tensor, fill: float = GREY) -> torch.Tensor:
    """img (B, C, H, W), theta (B, 2, 3) (output -> input, normalized coordinates) -> (B, C, H, W);
    ``fill`` outside the picture."""
    grid = F.affine_grid(theta.to(img.dtype), list(img.shape), align_corners=False)
    return F.grid_sample(img - fill, grid, mode="bilinear", padding_mode="zeros", align_corners=False) + fill


def robustness_theta(
    u: torch.Tensor, pad: float, jitter: float, scale: tuple[float, float], rotate: float
) -> torch.Tensor:
    """(B, 4) uniforms -> (B, 2, 3) Lucid's pad, jitter, scale, rotate as one warp (module docstring).

    ``in = R(r) (out * (1 + 2 pad) / s) + d``: s in [scale], r in [-rotate, rotate] degrees, d in
    [-jitter, jitter]^2 (normalized coordinates span 2 per side): a shift over ``jitter`` of the side in all,
    half of it each way, as Lucid's ``jitter(8)`` (a random crop offset in [0, 8) px) at 224 px is 0.035."""
    s = scale[0] + (scale[1] - scale[0]) * u[:, 0]
    r = math.radians(rotate) * (2 * u[:, 1] - 1)
    dx, dy = (2 * u[:, 2] - 1) * jitter, (2 * u[:, 3] - 1) * jitter
    z = (1 + 2 * pad) / s
    cos, sin = torch.cos(r) * z, torch.sin(r) * z
    row0 = torch.stack([cos, -sin, dx], dim=1)
    row1 = torch.stack([sin, cos, dy], dim=1)
    return torch.stack([row0, row1], dim=1)  # (B, 2, 3)


def crop_theta(u: torch.Tensor, normal: torch.Tensor, crop: tuple[float, float]) -> torch.Tensor:
    """MACO's random crop: u (B, 1) uniforms (box side), normal (B, 2) N(0, 1) (box centre) -> (B, 2, 3)."""
    c = crop[0] + (crop[1] - crop[0]) * u[:, 0]  # box side, fraction of the picture's side
    half = c / 2
    centre = (0.5 + 0.15 * normal).clamp(min=half.view(-1, 1), max=(1 - half).view(-1, 1))  # (B, 2) in [0, 1]
    zero = torch.zeros_like(c)
    row0 = torch.stack([c, zero, 2 * centre[:, 0] - 1], dim=1)
    row1 = torch.stack([zero, c, 2 * centre[:, 1] - 1], dim=1)
    return torch.stack([row0, row1], dim=1)


def crop_noise(gens: list[torch.Generator], shape: tuple[int, ...], level: float) -> torch.Tensor:
    """(B, C, H, W) MACO's augmentation noise: ``level * N(0, 1) + level * (U - 0.5)``, per chain."""
    per = tuple(shape[1:])
    device = gens[0].device
    normal = randn_per_chain(gens, per, device)
    uniform = torch.stack([torch.rand(per, generator=g, device=device) for g in gens])
    return level * normal + level * (uniform - 0.5)
