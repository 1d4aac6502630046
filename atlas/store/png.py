"""PNG encoding of uint8 images for the ``images`` table."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


def encode_png(image: np.ndarray, *, compress_level: int = 6) -> bytes:
    """Encode a uint8 image (H, W, 3), (H, W, 4), (H, W, 1) or (H, W) as PNG bytes."""
    array = np.asarray(image)
    if array.dtype != np.uint8:
        raise ValueError(f"encode_png expects uint8 pixels, got {array.dtype}")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise ValueError(f"encode_png expects (H, W), (H, W, 1|3|4), got shape {array.shape}")
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array)).save(buf, format="PNG", compress_level=compress_level)
    return buf.getvalue()


def decode_png(data: bytes) -> np.ndarray:
    """PNG bytes -> uint8 array (H, W, C)."""
    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img.convert("RGB"))


def png_problem(data: bytes) -> str | None:
    """Why ``data`` is not a whole PNG (its chunk CRCs, then its pixels; the error's first line), or None
    when it decodes: ``atlas verify --deep`` and ``atlas export`` refuse a damaged picture alike."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.verify()  # chunk CRCs
        with Image.open(io.BytesIO(data)) as img:
            img.load()  # the pixels decompress
    except (OSError, ValueError, SyntaxError) as exc:  # PIL's errors for damaged data
        return next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
    return None
