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
    """PNG grid: a header naming the columns, then one row per unit — its name, its real top ``n_real``
    images, a gap, then every chain's ``picture`` ('last' or 'best'); the pictures upscaled ``scale`` times
    (the names are not)."""
    from PIL import Image

    shown = [u for u in units if u.status == "ok" and u.chains]
    n_shown = max([1, *(min(len(u.real_topk), n_real) for u in shown)])  # every row's real columns alike
    rows, names = [], []
    for u in shown:
        tiles = [getattr(c, picture).image for c in u.chains]
        h, w, _ = tiles[0].shape
        gap = np.full((h, gap_px, 3), 255, np.uint8)
        real = [im for _, _, im in u.real_topk[:n_real]]
        real += [np.full_like(tiles[0], 255)] * (n_shown - len(real))  # a unit with fewer: blank, in place
        rows.append(np.concatenate(real + [gap] + tiles, axis=1))
        names.append(unit_name(u))
    if not rows:
        return
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 2), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    if scale > 1:
        rows = [r.repeat(scale, axis=0).repeat(scale, axis=1) for r in rows]
    labels = _unit_column(names, [r.shape[0] for r in rows])
    real_px = (n_shown * w + gap_px) * scale
    heads = ["unit", f"real top {n_shown}", f"{picture} picture of each chain"]
    extra = max(0, LETTER_PX * len(heads[-1]) + 8 - (width * scale - real_px))  # the last name whole
    rows = [np.pad(r, ((0, 0), (0, extra), (0, 0)), constant_values=255) for r in rows]
    header = _label_row(heads, [labels.shape[1], real_px, width * scale - real_px + extra])
    body = np.concatenate([labels, np.concatenate(rows, axis=0)], axis=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate([header, body], axis=0)).save(path, optimize=True)


COMPARE_CHAINS = 2  # chains per method in the side-by-side grid


def save_compare(methods: dict[str, list[UnitResult]], path: Path, chains: int = COMPARE_CHAINS) -> None:
    """PNG: a header row of names, then one row per unit — its name, its real top image, then for each
    method (in order) the last pictures of its first ``chains`` chains, methods separated by a white gap."""
    from PIL import Image

    first = next(iter(methods.values()))
    rows, widths, names = [], [], []
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
        names.append(unit_name(u))
    if not rows:
        return
    names_row = ["real", *methods]
    extra = max(0, LETTER_PX * len(names_row[-1]) + 8 - widths[-1])  # the last name has no next column
    if extra:
        rows = [np.pad(r, ((0, 0), (0, extra), (0, 0)), constant_values=255) for r in rows]
        widths[-1] += extra
    body = [np.pad(r, ((0, 2), (0, 0), (0, 0)), constant_values=255) for r in rows]
    labels = _unit_column(names, [r.shape[0] for r in body])
    header = _label_row(["unit", *names_row], [labels.shape[1], *widths])
    path.parent.mkdir(parents=True, exist_ok=True)
    body_im = np.concatenate([labels, np.concatenate(body, axis=0)], axis=1)
    Image.fromarray(np.concatenate([header, body_im], axis=0)).save(path, optimize=True)


def unit_name(u: UnitResult) -> str:
    """A grid row's name: ``fc8 3``, a composite with its expression (``fc8 10: 3 + 5``)."""
    return f"{u.layer} {u.unit}" + (f": {u.composite}" if u.composite else "")


def _unit_column(names: list[str], heights: list[int]) -> np.ndarray:
    """(sum(heights), width, 3) uint8: each row's name on white, left-aligned, centred on its row."""
    from PIL import Image, ImageDraw

    width = LETTER_PX * max(len(n) for n in names) + 10
    im = Image.new("RGB", (width, sum(heights)), "white")
    draw = ImageDraw.Draw(im)
    for name, top, h in zip(names, np.cumsum([0, *heights]), heights, strict=False):
        draw.text((4, int(top) + max(0, (h - LINE_PX) // 2)), name, fill="black")
    return np.asarray(im)


LETTER_PX = 6  # PIL's default font, a letter's width
LINE_PX = 11  # and a line's height


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
