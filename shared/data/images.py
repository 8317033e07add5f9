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
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, UnidentifiedImageError

if TYPE_CHECKING:
    from headstart.shared.storage.store import Store

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
    except Exception as exc:  # noqa: BLE001 - header parsers of hostile bytes raise all sorts
        raise ImageRejected("decode_error", f"unreadable {fmt} header: {type(exc).__name__}: {exc}") from None
    if width * height > max_pixels:
        raise ImageRejected("too_large", f"{width}x{height} = {width * height} pixels exceeds the "
                                         f"limit of {max_pixels} (decompression bomb guard)")
    if min(width, height) < min_side:
        raise ImageRejected("too_small", f"{width}x{height} is below the minimum side of {min_side}px")
    return ImageInfo(fmt, width, height)


@dataclass
class Skipped:
    """An image that could not be used, and why (``status`` as :class:`ImageRejected`'s)."""

    key: str
    label: str
    status: str
    reason: str


# A model-input decode keeps both sides at least this many times the input side (Pillow's
# ``reducing_gap`` idea): the DCT-scaled decode is not a spatial filter of the full decode,
# and what is left for the model's antialiased resize must be large enough that the two
# paths agree. Measured (bench/decode_agreement.py, 500 held-out flowers5 photos re-encoded
# 4x-16x, MobileNetV2@160): top-1 agreement with the full decode 0.984-0.990 at gap 1,
# 0.996-1.000 at gap 2; the decode is still 1.6-5.5x faster than a full decode at 6x-16x.
MODEL_REDUCING_GAP = 2


def shrink_factor(width: int, height: int, target: int | None, gap: int = 1) -> int:
    """The largest of 8, 4, 2, 1 that keeps both sides at least ``gap * target`` (1 without
    a target)."""
    if not target:
        return 1
    fits = min(width // (gap * target), height // (gap * target))
    return next((f for f in (8, 4, 2) if fits >= f), 1)


def decode_image(data: bytes, *, target: int | None = None, max_pixels: int = MAX_PIXELS,
                 min_side: int = MIN_SIDE, longest: int | None = None) -> np.ndarray:
    """Decode image bytes to the upright RGB ``uint8`` array (H, W, 3) every job uses.

    This is the one decode path: training, evaluation, the explain jobs, prediction and
    scrape's re-encoding all call it, and a saved ``model.keras`` applied to its result gives
    exactly the probabilities the jobs report. In order:

    1. the format is sniffed from the bytes and the header checked (:func:`inspect_image`:
       ``not_image``, ``too_small``, ``too_large`` before any pixel is decoded); a JPEG's
       marker structure too (:mod:`headstart.shared.data.jpeg`: more than ``MAX_SCANS``
       progressive scans is ``too_large``, less coded data than the frame needs is
       ``decode_error``);
    2. with ``target`` (the model's input side), a source at least four times ``target`` on
       both sides is shrunk *while decoding* by 2, 4 or 8, keeping both sides >=
       ``MODEL_REDUCING_GAP * target`` (2x): JPEGs in the DCT domain (libjpeg scaled decode,
       several times faster), other formats with a box filter; the model's own (antialiased)
       resize then does the rest. ``longest`` (scrape's re-encode) shrinks whenever the
       source is at least twice ``longest``;
    3. the EXIF orientation is applied (a portrait phone photo comes back portrait);
    4. the pixels become 8-bit RGB as a browser shows them: 16-bit and other high-bit-depth
       images are scaled (not clipped) to 8 bits, CMYK goes through its ICC profile when it
       has one, and transparency (RGBA, LA, palette + alpha) is composited onto white.

    Raises :class:`ImageRejected` (``status`` in ``not_image``, ``too_small``,
    ``too_large``, ``decode_error``); no decoder exception escapes.
    """
    from headstart.shared.data import pixels

    return _checked_decode(data, pixels.decode_upright, target, max_pixels, min_side, longest)


def decode_to_image(data: bytes, *, target: int | None = None, max_pixels: int = MAX_PIXELS,
                    min_side: int = MIN_SIDE, longest: int | None = None) -> Image.Image:
    """:func:`decode_image` (same checks, same pixels) as an RGB Pillow image: for chains
    that stay in Pillow (scrape's resize + re-encode), without the numpy copies."""
    from headstart.shared.data import pixels

    return _checked_decode(data, pixels.decode_upright_image, target, max_pixels, min_side, longest)


def _checked_decode(data: bytes, decode, target: int | None, max_pixels: int, min_side: int,
                    longest: int | None):
    """Steps 1-4 of :func:`decode_image`, with ``decode(data, factor, is_jpeg)`` for the pixels."""
    from headstart.shared.data import pixels

    info = inspect_image(data, max_pixels, min_side)
    factor = (shrink_factor(max(info.width, info.height), max(info.width, info.height), longest)
              if longest else shrink_factor(info.width, info.height, target, MODEL_REDUCING_GAP))
    try:
        if info.format == "jpeg":
            pixels.check_jpeg(data, info)
        return decode(data, factor, info.format == "jpeg")
    except ImageRejected:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageRejected("too_large", f"decompression bomb refused: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - parsers of hostile bytes raise all sorts
        raise ImageRejected("decode_error", f"corrupt or truncated {info.format}: "
                                            f"{type(exc).__name__}: {exc}") from None


def read_image(store: Store, key: str, label: str = "", *, target: int | None = None,
               max_pixels: int = MAX_PIXELS, min_side: int = MIN_SIDE,
               name: str | None = None) -> np.ndarray | Skipped:
    """Read ``key`` from ``store`` and :func:`decode_image` it: the array, or a
    :class:`Skipped` record (named ``name`` or ``key``) saying why not. Never raises."""
    shown = name or key
    try:
        data = store.read_bytes(key)
    except OSError as exc:  # FileNotFoundError included
        return Skipped(shown, label, "unreadable", str(exc))
    if len(data) == 0:
        return Skipped(shown, label, "empty", "file is empty")
    try:
        return decode_image(data, target=target, max_pixels=max_pixels, min_side=min_side)
    except ImageRejected as exc:
        return Skipped(shown, label, exc.status, str(exc))


def resize_longest(img: Image.Image, longest: int) -> Image.Image:
    """Shrink so the longest side is ``longest`` (keeps the aspect ratio, never enlarges)."""
    w, h = img.size
    scale = longest / max(w, h)
    if scale >= 1:
        return img
    return img.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.BICUBIC)


def encode_jpeg(array: np.ndarray, quality: int = 92) -> bytes:
    """Encode an RGB array as JPEG bytes."""
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def encode_png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()
