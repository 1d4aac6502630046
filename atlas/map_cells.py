"""Where a conv unit's map position lies in a picture: pure arithmetic, shared by the sampler (concept
labels of place-bound units) and the viewer (the frame on a unit's pictures), which imports no torch.

    cell_of((4, 4), (8, 8), (32, 32))  # -> (16, 20, 16, 20): rows and columns 16-19
"""

from __future__ import annotations


def cell_of(
    position: tuple[int, int], map_hw: tuple[int, int], image_hw: tuple[int, int]
) -> tuple[int, int, int, int]:
    """The image block a conv unit's map position stands for: (y0, y1, x0, x1), the position's share of
    the image at the map's stride (position (4, 4) of an 8 x 8 map over 32 x 32 pixels: rows and columns
    16-19). Its receptive field is wider; the block is where the unit's map says *here*."""
    (y, x), (h, w), (hh, ww) = position, map_hw, image_hw
    return (
        y * hh // h,
        max((y + 1) * hh // h, y * hh // h + 1),
        x * ww // w,
        max((x + 1) * ww // w, x * ww // w + 1),
    )
