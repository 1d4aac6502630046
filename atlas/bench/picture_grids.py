"""The benchmarks' picture grids (PNG): one method's units row by row, and every method side by side.

Usage::

    save_grid(results, Path("bench/dgn_am-seed0.png"))        # per unit: real top images | each chain
    save_compare({"dgn_am": r1, "fourier": r2}, Path("bench/compare-seed0.png"))
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from atlas.sampling.results import UnitResult


def save_grid(
    units: list[UnitResult],
    path: Path,
    *,
    picture: str = "last",
    n_real: int = 3,
    gap_px: int = 4,
    scale: int = 1,
) -> None:
    """PNG grid: one row per unit — its real top ``n_real`` images, a gap, then every chain's ``picture``
    ('last' or 'best'), upscaled ``scale`` times."""
    from PIL import Image

    rows = []
    for u in units:
        if u.status != "ok" or not u.chains:
            continue
        tiles = [getattr(c, picture).image for c in u.chains]
        h, w, _ = tiles[0].shape
        gap = np.full((h, gap_px, 3), 255, np.uint8)
        real = [im for _, _, im in u.real_topk[:n_real]] or [np.zeros_like(tiles[0])]
        rows.append(np.concatenate(real + [gap] + tiles, axis=1))
    if not rows:
        return
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 2), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    grid = np.concatenate(rows, axis=0)
    if scale > 1:
        grid = grid.repeat(scale, axis=0).repeat(scale, axis=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid).save(path)


COMPARE_CHAINS = 2  # chains per method in the side-by-side grid


def save_compare(methods: dict[str, list[UnitResult]], path: Path, chains: int = COMPARE_CHAINS) -> None:
    """PNG: a header row of names, then one row per unit — its real top image, then for each method (in
    order) the last pictures of its first ``chains`` chains, methods separated by a white gap."""
    from PIL import Image

    first = next(iter(methods.values()))
    rows, widths = [], []
    for i, u in enumerate(first):
        if u.status != "ok" or not u.chains:
            continue
        tile = u.chains[0].last.image
        gap = np.full((tile.shape[0], 4, 3), 255, np.uint8)
        blank = np.full_like(tile, 255)
        parts = [u.real_topk[0][2] if u.real_topk else blank]
        widths = [tile.shape[1]]
        for res in methods.values():
            cs = res[i].chains if i < len(res) and res[i].status == "ok" else []
            parts += [gap] + [cs[k].last.image if k < len(cs) else blank for k in range(chains)]
            widths.append(gap.shape[1] + chains * tile.shape[1])
        rows.append(np.concatenate(parts, axis=1))
    if not rows:
        return
    names = ["real", *methods]
    extra = max(0, LETTER_PX * len(names[-1]) + 8 - widths[-1])  # the last name has no next column to run on
    if extra:
        rows = [np.pad(r, ((0, 0), (0, extra), (0, 0)), constant_values=255) for r in rows]
        widths[-1] += extra
    header = _label_row(names, widths)
    body = [np.pad(r, ((0, 2), (0, 0), (0, 0)), constant_values=255) for r in rows]
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate([header, *body], axis=0)).save(path, optimize=True)


LETTER_PX = 6  # PIL's default font, a letter's width


def _label_row(names: list[str], widths: list[int], line: int = 12) -> np.ndarray:
    """(2 * line, sum(widths), 3) uint8: each name left-aligned over its column, on two staggered lines so
    that a name may run on over the next column (``ppgn_h/joint`` over two chains' 64 px was cut to
    ``ppgn_h/joi``); cut only where it would reach the next name on its line (6 px a letter)."""
    from PIL import Image, ImageDraw

    im = Image.new("RGB", (sum(widths), 2 * line), "white")
    draw = ImageDraw.Draw(im)
    starts = np.cumsum([0, *widths])
    for i, name in enumerate(names):
        room = starts[min(i + 2, len(names))] - starts[i]  # up to the next name on the same line
        draw.text(
            (int(starts[i]) + 5, (i % 2) * line), name[: max(1, (int(room) - 8) // LETTER_PX)], fill="black"
        )
    return np.asarray(im)
