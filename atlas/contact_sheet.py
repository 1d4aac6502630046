"""Labelled picture grids (contact sheets) as one image: tiles in rows, caption lines under each tile, an
optional title above and a label left of each row. `atlas export` draws a layer's units with it, `atlas
toyworld show` the toy world's classes.

Usage::

    tiles = [Tile(png_bytes, ("unit 7 · act 12.3", "hook · 0.97")), Tile(None, ("unit 8",), "failed")]
    sheet = contact_sheet(tiles, columns=10, tile_px=96, title="fc8 · units 0-99")
    save_sheet(sheet, Path("out/fc8/sheet-01.png"))
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from atlas.atomic import atomic_write

GAP_PX = 6  # between tiles and around the sheet
BACKGROUND = (255, 255, 255)
INK = (20, 20, 20)
MUTED = (120, 120, 120)
EMPTY = (235, 235, 235)


@dataclass(frozen=True)
class Tile:
    picture: (
        np.ndarray | bytes | None
    )  # (H, W, 3) uint8, PNG bytes, or None: a grey square saying ``missing``
    caption: tuple[str, ...] = ()  # lines under the picture, each cut to the tile's width with "…"
    missing: str = "no image"


def font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """Pillow's bundled font at ``size`` px (no font file on the system needed)."""
    return ImageFont.load_default(size=size)


def fit_text(draw: ImageDraw.ImageDraw, text: str, face, width: int) -> str:
    """``text`` cut with "…" to at most ``width`` px in ``face``."""
    if draw.textlength(text, font=face) <= width:
        return text
    while text and draw.textlength(text + "…", font=face) > width:
        text = text[:-1]
    return text + "…"


def _picture(tile: Tile, px: int) -> Image.Image | None:
    """The tile's picture as a ``px`` square RGB image (small pictures scaled up with nearest neighbours,
    so a 32 px toy picture stays sharp; large ones down with Lanczos); None when it has none or its bytes
    do not decode."""
    if tile.picture is None:
        return None
    try:
        if isinstance(tile.picture, bytes | bytearray | memoryview):
            image = Image.open(io.BytesIO(bytes(tile.picture))).convert("RGB")
        else:
            image = Image.fromarray(np.asarray(tile.picture, dtype=np.uint8)).convert("RGB")
    except (OSError, ValueError, SyntaxError):  # PIL's errors for damaged bytes: drawn as missing
        return None
    upscale = image.width <= px and image.height <= px
    return image.resize((px, px), Image.Resampling.NEAREST if upscale else Image.Resampling.LANCZOS)


def contact_sheet(
    tiles: Sequence[Tile],
    *,
    columns: int,
    tile_px: int,
    title: str | None = None,
    row_labels: Sequence[str] | None = None,
) -> Image.Image:
    """The tiles, ``columns`` a row, each picture ``tile_px`` square with its caption lines under it; a
    ``title`` line above; ``row_labels`` (one per row) in a column on the left."""
    size = max(10, min(24, tile_px // 8))  # captions grow with the tiles: 14 px under 256 px ones was small
    face, title_face = font(size), font(size + 4)
    lines = max((len(t.caption) for t in tiles), default=0)
    line_px = size + 3
    cell_w, cell_h = tile_px, tile_px + lines * line_px
    rows = max(1, -(-len(tiles) // columns))
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    label_w = 0
    if row_labels:
        label_w = min(
            int(max(probe.textlength(text, font=face) for text in row_labels)) + GAP_PX, 4 * tile_px
        )
    top = GAP_PX + (size + 4 + GAP_PX if title else 0)
    width = GAP_PX + label_w + columns * (cell_w + GAP_PX)
    if title:  # a sheet of few small tiles is widened to its whole title ("fc8 · units 0-…" at --tile 40)
        width = max(width, int(probe.textlength(title, font=title_face)) + 2 * GAP_PX)
    height = top + rows * (cell_h + GAP_PX)
    sheet = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    if title:
        draw.text(
            (GAP_PX, GAP_PX), fit_text(draw, title, title_face, width - 2 * GAP_PX), fill=INK, font=title_face
        )
    for i, tile in enumerate(tiles):
        row, col = divmod(i, columns)
        x, y = GAP_PX + label_w + col * (cell_w + GAP_PX), top + row * (cell_h + GAP_PX)
        picture = _picture(tile, tile_px)
        if picture is not None:
            sheet.paste(picture, (x, y))
        else:
            draw.rectangle((x, y, x + tile_px - 1, y + tile_px - 1), fill=EMPTY)
            text = fit_text(draw, tile.missing, face, tile_px - 8)
            draw.text((x + 4, y + tile_px // 2 - size // 2), text, fill=MUTED, font=face)
        for j, text in enumerate(tile.caption):
            fill = INK if j == 0 else MUTED
            draw.text(
                (x, y + tile_px + 2 + j * line_px), fit_text(draw, text, face, cell_w), fill=fill, font=face
            )
    for row, text in enumerate(row_labels or ()):
        y = top + row * (cell_h + GAP_PX) + tile_px // 2 - size // 2
        draw.text((GAP_PX, y), fit_text(draw, text, face, label_w - GAP_PX), fill=INK, font=face)
    return sheet


def save_sheet(sheet: Image.Image, path: Path) -> Path:
    """Write the sheet as a PNG, whole or not at all (missing folders are created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: sheet.save(tmp, format="PNG"))
    return path
