"""Colour truth on the toy world: which palette colour is a picture's object, and does an atlas over-use one?

Usage::

    from atlas.bench.colour import object_colour, colour_presence, over_representation
    ids = object_colour(images)                         # (N, H, W, 3) uint8 -> (N,) palette index
    share = colour_presence(picture_ids, real_ids)
    over = over_representation(picture_ids, real_ids)   # {"max_ratio", "colour", "ratios", ...}
    # share: fraction of pictures whose colour is among the real top-k's

**The rule** (one rule, applied identically to generated pictures and real images):

1. border colour = per-channel median of the 1-pixel frame of the picture (the background: objects stay
   inside the frame; a distractor dot on the border is outvoted by the median);
2. the object pixels = the ``OBJECT_PIXELS`` fraction of pixels farthest (Euclidean, RGB) from the border
   colour — 6.25 % = 64 pixels of a 32x32 picture, fewer than the smallest object covers (two dots at the
   smallest radius, ~90 pixels), so they lie inside the object;
3. object colour = per-channel mean of those pixels;
4. the answer = the nearest palette colour (``PALETTE``, rendered at 0.8-1.0 of its value: compared at 0.9x),
   plus its distance (a large distance = an off-palette colour).

The toy world renders an object in one of eight palette colours (`atlas.toyworld.shapes.PALETTE`), never the
background's colour, so the rule recovers it on real images (`tests/unit/test_bench_colour.py` checks it on
rendered images of every colour and class).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np

from atlas.toyworld.shapes import PALETTE

COLOUR_NAMES = ("red", "green", "blue", "yellow", "cyan", "magenta", "orange", "white")
OBJECT_PIXELS = 0.0625  # fraction of the picture's pixels taken as the object (farthest from the border)
PALETTE_SCALE = 0.9  # objects are drawn at 0.8-1.0 x their palette colour


def _as_float(images: np.ndarray) -> np.ndarray:
    x = np.asarray(images)
    if x.ndim == 3:
        x = x[None]
    if x.dtype == np.uint8:
        return x.astype(np.float32) / 255.0
    return x.astype(np.float32)


def border_colour(images: np.ndarray) -> np.ndarray:
    """(N, H, W, 3) uint8 or [0, 1] float -> (N, 3) per-channel median of the 1-pixel frame, in [0, 1]."""
    x = _as_float(images)
    frame = np.concatenate(
        [x[:, 0, :, :], x[:, -1, :, :], x[:, 1:-1, 0, :], x[:, 1:-1, -1, :]], axis=1
    )  # (N, 2W + 2(H-2), 3)
    return np.median(frame, axis=1)


def object_rgb(images: np.ndarray, fraction: float = OBJECT_PIXELS) -> np.ndarray:
    """(N, H, W, 3) -> (N, 3): mean colour of the ``fraction`` of pixels farthest from the border colour."""
    x = _as_float(images)
    n, h, w, _ = x.shape
    flat = x.reshape(n, h * w, 3)
    d = np.linalg.norm(flat - border_colour(x)[:, None, :], axis=2)  # (N, HW)
    k = max(1, int(round(fraction * h * w)))
    idx = np.argpartition(-d, k - 1, axis=1)[:, :k]  # (N, k) farthest pixels
    return np.take_along_axis(flat, idx[:, :, None], axis=1).mean(axis=1)


def nearest_palette(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, 3) colours in [0, 1] -> (palette index (N,), distance to it (N,))."""
    pal = np.asarray(PALETTE, dtype=np.float32) * PALETTE_SCALE  # (P, 3)
    d = np.linalg.norm(np.asarray(rgb, dtype=np.float32)[:, None, :] - pal[None], axis=2)  # (N, P)
    ids = d.argmin(axis=1)
    return ids, d[np.arange(len(ids)), ids]


def object_colour(images: np.ndarray) -> np.ndarray:
    """(N, H, W, 3) uint8 (or [0, 1] float) pictures -> (N,) palette index of the object's colour."""
    if len(images) == 0:
        return np.zeros(0, dtype=np.int64)
    return nearest_palette(object_rgb(images))[0].astype(np.int64)


def colour_presence(picture_ids: Sequence[int], real_ids: Sequence[int]) -> float:
    """Fraction of a unit's pictures whose object colour is among its real top-k images' colours."""
    if len(picture_ids) == 0:
        return float("nan")
    present = set(int(c) for c in real_ids)
    return float(np.mean([int(c) in present for c in picture_ids]))


def colour_shares(ids: Sequence[int], n_colours: int = len(PALETTE)) -> np.ndarray:
    """(n_colours,) share of each palette colour among ``ids``."""
    counts = np.bincount(np.asarray(ids, dtype=np.int64), minlength=n_colours)[:n_colours].astype(float)
    total = counts.sum()
    return counts / total if total > 0 else counts


MIN_COUNT = 3  # a colour is rated when it accounts for this many pictures, observed or expected


def over_representation(
    picture_ids: Sequence[int], real_ids: Sequence[int], min_count: float = MIN_COUNT
) -> dict[str, object]:
    """How much more often each colour is the object colour of the pictures than of the natural top-k.

    ratio_c = share of colour c among the pictures / its share among the real top-k images (the units' top-k
    pooled). A colour the pictures use but the real top-k never shows has ratio ``inf``; one neither uses is
    left out. ``max_ratio`` is taken over the *rated* colours: those with at least ``min_count`` pictures, or
    whose real share predicts at least ``min_count`` of them (one blue picture among 40 against one blue real
    image among 90 is 2.25x, and says nothing); ``max_ratio_all`` over every colour.

    Returns {"max_ratio", "colour" (name of the max), "max_ratio_all", "colour_all", "ratios" {name: ratio},
    "picture_share" {name: share}, "real_share" {name: share}, "pictures", "real"}.
    """
    p, r = colour_shares(picture_ids), colour_shares(real_ids)
    n = len(picture_ids)
    ratios: dict[str, float] = {}
    rated: dict[str, float] = {}
    for c, name in enumerate(COLOUR_NAMES):
        if p[c] == 0:
            if r[c] > 0:
                ratios[name] = 0.0
            continue
        ratios[name] = float(p[c] / r[c]) if r[c] > 0 else float("inf")
        if max(p[c], r[c]) * n >= min_count:
            rated[name] = ratios[name]
    worst = max(rated, key=lambda k: rated[k]) if rated else None
    worst_all = max(ratios, key=lambda k: ratios[k]) if ratios else None
    return {
        "max_ratio": rated[worst] if worst is not None else float("nan"),
        "colour": worst,
        "max_ratio_all": ratios[worst_all] if worst_all is not None else float("nan"),
        "colour_all": worst_all,
        "ratios": ratios,
        "picture_share": {name: float(p[c]) for c, name in enumerate(COLOUR_NAMES)},
        "real_share": {name: float(r[c]) for c, name in enumerate(COLOUR_NAMES)},
        "pictures": n,
        "real": len(real_ids),
    }


def most_common(ids: Sequence[int]) -> tuple[str | None, float]:
    """(name of the most frequent colour, its share) — e.g. ("magenta", 0.85)."""
    if len(ids) == 0:
        return None, float("nan")
    c, k = Counter(int(i) for i in ids).most_common(1)[0]
    return COLOUR_NAMES[c], k / len(ids)
