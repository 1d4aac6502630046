"""Real-image sets for facet seeds and dataset examples: the toy world's ``real_images(...)`` or a folder.

Usage::

    check_image_folder("my_images/")                     # every file decodes (pre-flight), -> count
    real = load_image_folder("my_images/", size=64)     # .images (N, 3, 64, 64) float rgb01, .paths
    real = load_image_folder("my_images/", 64, limit=500)  # an evenly spaced 500 of the sorted files
    real.images, real.labels                              # labels/fine are None for a plain folder

Anything with an ``.images`` (N, 3, H, W) float rgb01 tensor works as a real-image set (``RealImagesLike``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from atlas.errors import AtlasError
from atlas.sampling.concepts import ConceptSet
from atlas.tables import counted

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


class RealImagesLike(Protocol):
    images: torch.Tensor  # (N, 3, H, W) float rgb01


@dataclass
class FolderImages:
    images: torch.Tensor  # (N, 3, size, size) float rgb01
    paths: list[str] = field(default_factory=list)
    names: list[str] = field(default_factory=list)  # each image's path inside the folder (atlas shows it)
    labels: torch.Tensor | None = None
    fine: torch.Tensor | None = None
    concepts: ConceptSet | None = None  # one concept per first-level subfolder (labelled probe set)
    source_index: list[int] | None = None  # each image's position among the folder's files (None: all)


def evenly_spaced(count: int, limit: int | None) -> list[int]:
    """``limit`` of ``count`` positions spread evenly from the first (all of them when ``limit`` is None or
    at least ``count``): a sorted folder of class subfolders keeps every class, where its first files
    would be one class."""
    if limit is None or limit >= count:
        return list(range(count))
    return [i * count // limit for i in range(limit)]


def image_files(path: str | Path) -> list[Path]:
    """The image files under ``path`` (recursive, sorted); one-line errors for a missing/empty folder."""
    root = Path(path).expanduser()
    if not root.exists():
        where = "" if root.is_absolute() else f" (from {Path.cwd()})"  # a relative path: where it looked
        raise AtlasError(f"image folder {str(root)!r} not found{where}; give a directory of .png/.jpg images")
    if not root.is_dir():
        raise AtlasError(f"image folder {str(root)!r} is a file, not a directory; give a directory of images")
    try:
        entries = list(root.rglob("*"))  # one walk of the folder
        every = [p for p in entries if p.is_file()]
        dangling = sorted(p for p in entries if p.is_symlink() and not p.exists())
    except OSError as exc:
        raise AtlasError(f"image folder {str(root)!r} cannot be listed ({type(exc).__name__})") from None
    broken = [p for p in dangling if p.suffix.lower() in IMAGE_SUFFIXES]
    if broken:  # an image the user put there that cannot be read: an error, not a quiet skip
        raise AtlasError(
            f"image {str(broken[0])!r} is a link to nothing ({os.readlink(broken[0])!r} does not exist)"
            + (f", and {len(broken) - 1} more" if len(broken) > 1 else "")
            + "; fix or remove it"
        )
    files = sorted(p for p in every if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        other = f" (it holds {counted(len(every), 'other file')})" if every else " (it is empty)"
        raise AtlasError(
            f"image folder {str(root)!r} holds no images{other}; expected {', '.join(IMAGE_SUFFIXES)} files"
        )
    return files


def _decode(f: Path):
    """Open and fully decode one image as RGB (PIL), or raise."""
    from PIL import Image

    with Image.open(f) as im:
        im = _to_rgb8(im)
    if min(im.size) < 1:
        raise ValueError("empty image")
    return im


def _to_rgb8(im):
    """RGB with 8 bits a channel. A 16-bit or 32-bit grayscale image (PIL modes ``I;16*``, ``I``) is scaled
    from its depth's range, and a float one (``F``) from [0, 1] (or [0, 255] when above 1): PIL's own
    conversion clips them at 255, a 16-bit PNG turning almost white."""
    import numpy as np
    from PIL import Image

    if im.mode.startswith("I;16") or im.mode in ("I", "F"):
        values = np.asarray(im, dtype=np.float64)
        if im.mode == "F":
            top = 1.0 if values.size == 0 or np.nanmax(values) <= 1.0 else 255.0
        else:  # 'I' holds a 16-bit PNG on older Pillows: its depth from its values
            top = 65535.0 if im.mode.startswith("I;16") or values.max(initial=0) > 255 else 255.0
        gray = np.clip(np.nan_to_num(values) / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(gray).convert("RGB")
    return im.convert("RGB")


def check_image_folder(path: str | Path, files: list[Path] | None = None) -> int:
    """Decode every image under ``path`` (nothing kept); returns the count.

    An unreadable file is an error naming it (and how many more there are), not a skip: the workers load
    the same folder and must see the same images in the same order (real-image indices are recorded).
    """
    files = image_files(path) if files is None else files  # ``files``: the caller's listing of it
    bad: list[tuple[Path, str]] = []
    for f in files:
        try:
            _decode(f)
        except Exception as exc:  # noqa: BLE001 - PIL raises OSError, ValueError, DecompressionBombError, ...
            bad.append((f, type(exc).__name__))
    if bad:
        more = f" and {len(bad) - 1} more of {len(files)}" if len(bad) > 1 else ""
        raise AtlasError(
            f"image {str(bad[0][0])!r} in folder {str(path)!r} is unreadable ({bad[0][1]}){more}; "
            "fix or remove it (every image file in the folder, or in its facets.real_limit sample, is used)"
        )
    return len(files)


def load_image_folder(
    path: str | Path, size: int, limit: int | None = None, files: list[Path] | None = None
) -> FolderImages:
    """Every image under ``path`` (recursive, sorted), shorter side resized to ``size``, centre-cropped
    (``files``: the caller's listing of it, :func:`image_files`); ``limit``: an evenly spaced sample of
    them (:func:`evenly_spaced`)."""
    from PIL import Image

    files = image_files(path) if files is None else files
    kept = evenly_spaced(len(files), limit)
    files = [files[i] for i in kept]
    out = []
    for f in files:
        try:
            im = _decode(f)
            w, h = im.size
            s = size / min(w, h)
            im = im.resize((max(size, round(w * s)), max(size, round(h * s))), Image.BILINEAR)
            w, h = im.size
            left, top = (w - size) // 2, (h - size) // 2
            im = im.crop((left, top, left + size, top + size))
            out.append(torch.from_numpy(np.asarray(im, dtype=np.uint8).copy()))
        except Exception as exc:  # noqa: BLE001 - see check_image_folder
            raise AtlasError(
                f"image {str(f)!r} is unreadable ({exc.__class__.__name__}); fix or remove it "
                "(every image file in the folder, or in its facets.real_limit sample, is used)"
            ) from None
    images = torch.stack(out).permute(0, 3, 1, 2).contiguous().float() / 255.0  # (N, 3, size, size)
    root = Path(path).expanduser()
    return FolderImages(
        images=images,
        paths=[str(f) for f in files],
        names=[f.relative_to(root).as_posix() for f in files],
        concepts=folder_concepts(path, files),
        source_index=None if limit is None else kept,
    )


def small_concepts(root: str | Path, files: list[Path], minimum: int) -> list[str]:
    """The concept subfolders of ``root`` (:func:`folder_concepts`) holding fewer than ``minimum`` images:
    the labels never score them (``concepts.MIN_POSITIVES``)."""
    concepts = folder_concepts(root, files)
    if concepts is None:
        return []
    counts = concepts.members.sum(0).tolist()
    return [name for name, n in zip(concepts.names, counts, strict=True) if n < minimum]


def folder_concepts(root: str | Path, files: list[Path]) -> ConceptSet | None:
    """A labelled probe set from a folder with one subfolder per concept: concept ``<subfolder>`` holds the
    images under it. None unless every image sits in a subfolder and there are at least two."""
    tops = [f.relative_to(root).parts for f in files]
    if any(len(parts) < 2 for parts in tops):
        return None
    names = sorted({parts[0] for parts in tops})
    if len(names) < 2:
        return None
    members = torch.tensor([[parts[0] == n for n in names] for parts in tops], dtype=torch.bool)  # (N, C)
    return ConceptSet(names, members)
