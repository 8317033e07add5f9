"""Image decoding by content, with the checks every job applies.

Formats are sniffed from the bytes (a PNG or GIF named ``.jpg`` works); truncated or corrupt
files, images below a minimum size and decompression bombs (more pixels than a limit,
checked from the header *before* decoding) are rejected with a reason, never an exception
from deep inside a decoder.
"""
from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, UnidentifiedImageError

# Default limits: shared by dataset loading and scraping.
MAX_PIXELS = 89_478_485  # Pillow's own bomb threshold (~ 0.25 GiB RGBA)
MIN_SIDE = 8

_SIGNATURES: list[tuple[bytes, int, str]] = [
    (b"\xff\xd8\xff", 0, "jpeg"),
    (b"\x89PNG\r\n\x1a\n", 0, "png"),
    (b"GIF87a", 0, "gif"),
    (b"GIF89a", 0, "gif"),
    (b"BM", 0, "bmp"),
    (b"WEBP", 8, "webp"),
    (b"II*\x00", 0, "tiff"),
    (b"MM\x00*", 0, "tiff"),
]
EXTENSIONS = {"jpeg": "jpg", "png": "png", "gif": "gif", "bmp": "bmp", "webp": "webp", "tiff": "tif"}


class ImageRejected(ValueError):
    """An image failed a check; ``status`` is a short machine-readable reason."""

    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class ImageInfo:
    format: str
    width: int
    height: int


def sniff_format(data: bytes) -> str | None:
    """The image format from magic bytes, or None when the bytes are not a known image."""
    for magic, offset, name in _SIGNATURES:
        if data[offset:offset + len(magic)] == magic:
            if name == "webp" and data[:4] != b"RIFF":
                continue
            return name
    return None


def inspect_image(data: bytes, max_pixels: int = MAX_PIXELS, min_side: int = MIN_SIDE) -> ImageInfo:
    """Check headers only (cheap): format, size limits. Raise :class:`ImageRejected`."""
    fmt = sniff_format(data)
    if fmt is None:
        raise ImageRejected("not_image", "bytes are not a JPEG/PNG/GIF/BMP/WebP/TIFF image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as img:
                width, height = img.size
    except Image.DecompressionBombError as exc:
        raise ImageRejected("too_large", f"decompression bomb refused: {exc}") from None
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise ImageRejected("decode_error", f"unreadable {fmt} header: {exc}") from None
    if width * height > max_pixels:
        raise ImageRejected("too_large", f"{width}x{height} = {width * height} pixels exceeds the "
                                         f"limit of {max_pixels} (decompression bomb guard)")
    if min(width, height) < min_side:
        raise ImageRejected("too_small", f"{width}x{height} is below the minimum side of {min_side}px")
    return ImageInfo(fmt, width, height)


def decode_image(data: bytes, max_pixels: int = MAX_PIXELS, min_side: int = MIN_SIDE) -> np.ndarray:
    """Decode to an RGB ``uint8`` array (H, W, 3) after :func:`inspect_image`'s checks.

    The full decode catches truncated files (Pillow only notices at load time).
    """
    inspect_image(data, max_pixels, min_side)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as img:
                img.load()
                rgb = img.convert("RGB")
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise ImageRejected("decode_error", f"corrupt or truncated image: {exc}") from None
    return np.asarray(rgb, dtype=np.uint8)


def resize_longest(img: Image.Image, longest: int) -> Image.Image:
    """Shrink so the longest side is ``longest`` (keeps the aspect ratio, never enlarges)."""
    w, h = img.size
    scale = longest / max(w, h)
    if scale >= 1:
        return img
    return img.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.BICUBIC)


def encode_jpeg(array: np.ndarray, quality: int = 92) -> bytes:
    """Encode an RGB array as JPEG bytes."""
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def encode_png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()
