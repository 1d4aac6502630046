"""Real-image sets for facet seeds and dataset examples: the toy world's ``real_images(...)`` or a folder.

Usage::

    real = load_image_folder("my_images/", size=64)     # .images (N, 3, 64, 64) float rgb01, .paths
    real.images, real.labels                              # labels/fine are None for a plain folder

Anything with an ``.images`` (N, 3, H, W) float rgb01 tensor works as a real-image set (``RealImagesLike``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from atlas.errors import AtlasError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


class RealImagesLike(Protocol):
    images: torch.Tensor  # (N, 3, H, W) float rgb01


@dataclass
class FolderImages:
    images: torch.Tensor  # (N, 3, size, size) float rgb01
    paths: list[str] = field(default_factory=list)
    labels: torch.Tensor | None = None
    fine: torch.Tensor | None = None


def load_image_folder(path: str | Path, size: int, limit: int | None = None) -> FolderImages:
    """Every image under ``path`` (recursive, sorted), shorter side resized to ``size``, centre-cropped."""
    from PIL import Image

    root = Path(path)
    if not root.is_dir():
        raise AtlasError(f"image folder {str(root)!r} not found; give a directory of .png/.jpg images")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if limit is not None:
        files = files[:limit]
    if not files:
        raise AtlasError(f"image folder {str(root)!r} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    out = []
    for f in files:
        try:
            with Image.open(f) as im:
                im = im.convert("RGB")
                w, h = im.size
                s = size / min(w, h)
                im = im.resize((max(size, round(w * s)), max(size, round(h * s))), Image.BILINEAR)
                w, h = im.size
                left, top = (w - size) // 2, (h - size) // 2
                im = im.crop((left, top, left + size, top + size))
                out.append(torch.from_numpy(np.asarray(im, dtype=np.uint8).copy()))
        except OSError as exc:
            raise AtlasError(f"image {str(f)!r} is unreadable ({exc.__class__.__name__})") from None
    images = torch.stack(out).permute(0, 3, 1, 2).float() / 255.0  # (N, 3, size, size)
    return FolderImages(images=images, paths=[str(f) for f in files])
