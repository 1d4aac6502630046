"""Diversity of a set of pictures: the one measure of every benchmark (quality, product, objectives)."""

from __future__ import annotations

import math

import numpy as np
import torch


def picture_diversity(images: list[np.ndarray]) -> float:
    """Mean pairwise RMS pixel distance between (H, W, 3) uint8 pictures, in [0, 1]; NaN for fewer than 2."""
    if len(images) < 2:
        return float("nan")
    x = torch.from_numpy(np.stack(images)).float().flatten(1) / 255  # (K, HW3)
    d = torch.cdist(x, x) / math.sqrt(x.shape[1])  # RMS distance
    k = x.shape[0]
    return float(d.sum() / (k * (k - 1)))
