"""Labelled picture sheets of the toy world: samples per fine label (class and facet), and G's
reconstructions under the originals; each row named on its left.

Usage::

    sheet = sample_sheet(images, fine, per_fine=10)          # a row per fine label: "disk", "pill/capsule"
    sheet = recon_sheet(real, recon, fine, per_fine=8)       # per label a row of originals, then G(E(x))
    save_sheet(sheet, Path("out/samples.png"))
"""

from __future__ import annotations

import torch
from PIL import Image

from atlas.contact_sheet import Tile, contact_sheet
from atlas.toyworld.shapes import FINE_NAMES

TILE_PX = 96  # a 32 px picture three times


def _u8(x: torch.Tensor) -> torch.Tensor:
    return x if x.dtype == torch.uint8 else (x.clamp(0, 1) * 255).round().to(torch.uint8)


def _row(images: torch.Tensor, n: int) -> list[Tile]:
    """(k, 3, S, S) -> n tiles: the k pictures, then blank ones."""
    pictures = [Tile(im.permute(1, 2, 0).numpy()) for im in _u8(images[:n])]
    return pictures + [Tile(None, missing="")] * (n - len(pictures))


def sample_sheet(images: torch.Tensor, fine: torch.Tensor, per_fine: int = 10) -> Image.Image:
    """(N, 3, S, S) images (uint8 or rgb01), (N,) fine labels -> a sheet with a row per fine label."""
    tiles = [t for f in range(len(FINE_NAMES)) for t in _row(images[fine == f], per_fine)]
    return contact_sheet(tiles, columns=per_fine, tile_px=TILE_PX, row_labels=FINE_NAMES)


def recon_sheet(
    real: torch.Tensor, recon: torch.Tensor, fine: torch.Tensor, per_fine: int = 8
) -> Image.Image:
    """Real images and reconstructions: per fine label a row of originals, then a row of G(E(x))."""
    tiles, labels = [], []
    for f, name in enumerate(FINE_NAMES):
        sel = (fine == f).nonzero()[:per_fine, 0]
        tiles += _row(real[sel], per_fine) + _row(recon[sel], per_fine)
        labels += [name, f"{name}: G(E(x))"]
    return contact_sheet(tiles, columns=per_fine, tile_px=TILE_PX, row_labels=labels)
