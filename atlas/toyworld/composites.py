"""Natural two-object pictures: the ceiling of a two-unit picture's "judged as both classes" (issue 17).

Usage::

    pictures = two_object_pictures(get_preset("default").data, a=0, b=1, n=64)   # (K, S, S, 3) uint8, K <= n
    pictures = natural_pair_pictures(get_preset("pairs").data, a=0, b=1)  # the world's own, where it has any

The toy world draws one object an image, and J and T never saw two. Before asking a picture made for the
objective ``a + b`` to be read as both classes, ask how often J reads a *natural* picture of both so: each
picture here is a rendered image of class ``b`` whose object lies right of centre, with the object of a
rendered image of class ``a`` that lies left of centre pasted over it (the renderer's object mask), both at
the world's own radius, so the objects touch or overlap a little, as in any 32-pixel picture of two.
"""

from __future__ import annotations

import dataclasses
from functools import lru_cache

import numpy as np
import torch

from atlas.toyworld.dataset import ToyData, render
from atlas.toyworld.presets import DataConfig

SIDE = 0.15  # object centres at least this far left / right of the image centre (half-image units)
POOL = 4000  # images rendered per side: each class has 1/10 of them, about a third on each side


def two_object_pictures(cfg: DataConfig, a: int, b: int, n: int = 64, seed: int = 0) -> np.ndarray:
    """Up to ``n`` pictures of a class-``a`` object (left) over a class-``b`` image (object right):
    (K, S, S, 3) uint8, deterministic for a seed; no distractor dots."""
    plain = dataclasses.replace(cfg, distractor_p=0.0, second_p=0.0)  # one object each, then pasted
    left, right = render(POOL, plain, seed=7919 + 2 * seed), render(POOL, plain, seed=7920 + 2 * seed)
    ia = ((left.labels == a) & (left.attributes.cx < -SIDE)).nonzero().flatten()  # type: ignore[union-attr]
    ib = ((right.labels == b) & (right.attributes.cx > SIDE)).nonzero().flatten()  # type: ignore[union-attr]
    k = min(n, len(ia), len(ib))
    ia, ib = ia[:k], ib[:k]
    mask = left.attributes.mask[ia][:, None].float()  # type: ignore[union-attr]  # (K, 1, S, S)
    pictures = right.images[ib].float() * (1 - mask) + left.images[ia].float() * mask  # (K, 3, S, S)
    return pictures.round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def natural_pair_pictures(cfg: DataConfig, a: int, b: int, n: int = 64, seed: int = 0) -> np.ndarray:
    """Up to ``n`` natural pictures holding objects of classes ``a`` and ``b``: the world's own two-object
    images where it draws them (``DataConfig.second_p`` > 0; rendered afresh, not the train or test split),
    else :func:`two_object_pictures`. (K, S, S, 3) uint8."""
    if cfg.second_p <= 0:
        return two_object_pictures(cfg, a, b, n, seed)
    pool = _pair_pool(cfg, seed)
    first, second = pool.labels, pool.second_labels()
    hit = ((first == a) & (second == b)) | ((first == b) & (second == a))
    idx = hit.nonzero().flatten()[:n]
    return pool.images[idx].permute(0, 2, 3, 1).numpy()


@lru_cache(maxsize=2)
def _pair_pool(cfg: DataConfig, seed: int) -> ToyData:
    """Images of a two-object world to pick pairs from (about 440 of each pair of classes)."""
    return render(POOL * 10, cfg, seed=7921 + 2 * seed)
