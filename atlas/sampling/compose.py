"""Composed pair pictures: two units' own pictures laid side by side, the start of a pair composite's chain
(``sampler.pair_start: composed``; docs/sampling.md, "Composed pairs").

A chain that climbs ``log p(a) + log p(b)`` from a neutral code tends to draw one shape between the two
classes; started from the two units' own syntheses placed as a two-object picture of the data places them
(one object a quarter of the width from each edge), it keeps two objects. The picture is read back into G's
code by the engine (the code layer, through the generator's code encoder), as real images' codes are.

Usage::

    picture = compose_pair(left, right)      # (H, W, 3) uint8 each -> (H, W, 3) uint8
"""

from __future__ import annotations

import numpy as np

OBJECT_DISTANCE = 40.0  # an object pixel: this far (RGB, 0-255) from the border's median colour
MIN_OBJECT_PIXELS = 5  # fewer: no object found, the picture's centre stands for it


def _background_and_mask(picture: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(the border's median colour (3,), the object's pixels (H, W) bool) of a uint8 (H, W, 3) picture."""
    f = picture.astype(np.float32)
    border = np.concatenate([f[0], f[-1], f[:, 0], f[:, -1]])  # (2H + 2W, 3)
    background = np.median(border, axis=0)
    return background, np.linalg.norm(f - background, axis=-1) > OBJECT_DISTANCE


def _centre_x(mask: np.ndarray) -> float:
    """The object's mean column, or the picture's middle when there is too little of it."""
    cols = np.nonzero(mask)[1]
    return float(cols.mean()) if cols.size >= MIN_OBJECT_PIXELS else (mask.shape[1] - 1) / 2


def _shifted(array: np.ndarray, d: int, fill: np.ndarray | float) -> np.ndarray:
    """``array`` moved ``d`` columns right (left when negative), the columns it leaves set to ``fill``."""
    out = np.empty_like(array)
    out[...] = fill
    if d > 0:
        out[:, d:] = array[:, :-d]
    elif d < 0:
        out[:, :d] = array[:, -d:]
    else:
        out[...] = array
    return out


def compose_pair(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """``right`` moved so its object's centre sits at three quarters of the width, then ``left``'s object
    pixels moved to a quarter of it and pasted over, within the left half: one picture of two objects on
    ``right``'s background. (H, W, 3) uint8 each."""
    h, w, _ = right.shape
    background_l, mask_l = _background_and_mask(left)
    background_r, mask_r = _background_and_mask(right)
    d_right = int(round(3 * w / 4 - _centre_x(mask_r)))  # the data's two-object places (10, 30 of 40 px)
    d_left = int(round(w / 4 - _centre_x(mask_l)))
    canvas = _shifted(right, d_right, background_r.astype(right.dtype))
    obj = _shifted(left, d_left, background_l.astype(left.dtype))
    mask = _shifted(mask_l, d_left, False)
    mask[:, w // 2 :] = False  # a's object stays in its half
    return np.where(mask[..., None], obj, canvas).astype(np.uint8)
