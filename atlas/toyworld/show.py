"""Picture grids of the toy world: samples per class and facet, and G's reconstructions next to the originals.

Usage::

    grid = sample_grid(data, per_fine=10)              # (H, W, 3) uint8: one row per fine label
    grid = recon_grid(real, recon, fine, per_fine=8)   # pairs of rows: real, then G(E(real))
    save_png(grid, "out/samples.png", scale=3)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from atlas.toyworld.shapes import FINE_NAMES


def _row(images: torch.Tensor, n: int, pad: int = 1) -> torch.Tensor:
    """(k, 3, S, S) uint8 -> (S + 2 pad, n * (S + 2 pad), 3): k images (blank-padded to n) side by side."""
    s = images.shape[-1]
    cells = torch.full((n, 3, s + 2 * pad, s + 2 * pad), 255, dtype=torch.uint8)
    cells[: len(images), :, pad : pad + s, pad : pad + s] = images[:n]
    return torch.cat(list(cells), dim=2).permute(1, 2, 0)


def _u8(x: torch.Tensor) -> torch.Tensor:
    return x if x.dtype == torch.uint8 else (x.clamp(0, 1) * 255).round().to(torch.uint8)


def sample_grid(images: torch.Tensor, fine: torch.Tensor, per_fine: int = 10) -> np.ndarray:
    """(N, 3, S, S) images (uint8 or rgb01), (N,) fine labels -> (rows, cols, 3) uint8, a row per label."""
    rows = [_row(_u8(images[fine == f][:per_fine]), per_fine) for f in range(len(FINE_NAMES))]
    return torch.cat(rows, dim=0).numpy()


def recon_grid(real: torch.Tensor, recon: torch.Tensor, fine: torch.Tensor, per_fine: int = 8) -> np.ndarray:
    """Real images and reconstructions: per fine label a row of originals, then a row of G(E(x))."""
    rows = []
    for f in range(len(FINE_NAMES)):
        sel = (fine == f).nonzero()[:per_fine, 0]
        rows += [_row(_u8(real[sel]), per_fine), _row(_u8(recon[sel]), per_fine)]
    return torch.cat(rows, dim=0).numpy()


def save_png(grid: np.ndarray, path: str | Path, scale: int = 3) -> Path:
    from PIL import Image

    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(grid)
    img.resize((img.width * scale, img.height * scale), Image.NEAREST).save(p)
    return p
