"""Image bytes for tests: encode an array in any Pillow format (GIF via a palette)."""
from __future__ import annotations

import io

import numpy as np
from PIL import Image


def encode(array: np.ndarray, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    img = Image.fromarray(array)
    if fmt == "GIF":
        img = img.convert("P")
    img.save(buf, format=fmt, **kwargs)
    return buf.getvalue()
