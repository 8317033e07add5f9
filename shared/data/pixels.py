"""The pixel half of :func:`headstart.shared.data.images.decode_image`: scaled decode,
EXIF orientation, and every Pillow mode to the 8-bit RGB a browser shows.

Callers go through ``decode_image`` (which checks headers first and turns failures into
:class:`~headstart.shared.data.images.ImageRejected`); these helpers may raise anything.
"""
from __future__ import annotations

import io
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
from PIL import Image

from headstart.shared.data.images import ImageInfo, ImageRejected
from headstart.shared.data.jpeg import MAX_SCAN_PIXELS, MAX_SCANS, read_layout

_ORIENTATION = 0x0112
_HIGH_DEPTH = {"I;16", "I;16L", "I;16B", "I;16N", "I", "F"}
_ALPHA = {"RGBA", "LA", "PA", "RGBa", "La"}


def check_jpeg(data: bytes, info: ImageInfo) -> None:
    """Refuse decode-time bombs from the marker structure (see :mod:`.jpeg`)."""
    layout = read_layout(data)
    if layout is None:
        return  # no frame header: Pillow's decode reports it
    if layout.arithmetic:
        raise ImageRejected("decode_error", f"arithmetic-coded JPEG (marker 0x{layout.sof:X}): refused, "
                                            "as web browsers do (its size cannot show whether it "
                                            "holds the picture its header claims)")
    if layout.scans > MAX_SCANS or layout.scan_pixels > MAX_SCAN_PIXELS:
        raise ImageRejected("too_large", f"progressive JPEG with {layout.scans} scans of "
                                         f"{layout.width}x{layout.height} exceeds the limit of "
                                         f"{MAX_SCANS} scans and {MAX_SCAN_PIXELS:,} scans x pixels "
                                         "(each scan re-decodes the image)")
    need = layout.min_entropy_bytes
    if layout.entropy_bytes < need // 2 or (layout.scans == 0 and need):
        raise ImageRejected("decode_error", f"header claims {info.width}x{info.height} but the file "
                                            f"holds {layout.entropy_bytes} bytes of image data "
                                            f"(a complete picture needs at least {need})")


def decode_upright(data: bytes, factor: int, is_jpeg: bool) -> np.ndarray:
    """Decode, shrunk by ``factor`` (1, 2, 4 or 8), upright, as RGB ``uint8`` (H, W, 3)."""
    with _decoded(data, factor, is_jpeg) as (img, orientation, factor):
        rgb = to_rgb8(img)
    if factor > 1:  # formats without a scaled decode: box filter, integer factor
        rgb = np.asarray(Image.fromarray(rgb).reduce(factor))
    return np.ascontiguousarray(upright(rgb, orientation))


@contextmanager
def _decoded(data: bytes, factor: int, is_jpeg: bool) -> Iterator[tuple[Image.Image, int, int]]:
    """The loaded image (JPEGs DCT-scaled by up to ``factor``), its EXIF orientation and the
    integer factor the scaled decode left to do; the file is open inside the block only."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with Image.open(io.BytesIO(data)) as img:
            orientation = _orientation(img)
            if is_jpeg and factor > 1:
                w, h = img.size
                img.draft(None, (max(1, w // factor), max(1, h // factor)))  # DCT-domain scaling
                factor = max(1, factor // max(1, round(w / img.size[0])))  # what draft left to do
            img.load()
            yield img, orientation, factor


# EXIF orientation -> the Pillow transpose that :func:`upright` performs on arrays.
_TRANSPOSE = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
              4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE,
              6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
              8: Image.Transpose.ROTATE_90}


def decode_upright_image(data: bytes, factor: int, is_jpeg: bool) -> Image.Image:
    """:func:`decode_upright` as a Pillow RGB image, with the same pixels.

    Plain RGB and L images (what JPEGs decode to) skip the two numpy round trips a
    decode -> resize -> encode chain would make (each ~0.5 ms for a 320x240 image, holding
    the GIL); every other mode goes through :func:`to_rgb8`."""
    with _decoded(data, factor, is_jpeg) as (img, orientation, factor):
        if img.mode in ("RGB", "L") and "transparency" not in img.info:
            rgb = img.convert("RGB")  # a copy for RGB: the file closes below
        else:
            rgb = Image.fromarray(to_rgb8(img))
    if factor > 1:
        rgb = rgb.reduce(factor)
    return rgb.transpose(_TRANSPOSE[orientation]) if orientation in _TRANSPOSE else rgb


def _orientation(img: Image.Image) -> int:
    try:
        value = int(img.getexif().get(_ORIENTATION, 1))
    except Exception:  # noqa: BLE001 - broken EXIF is common; the picture itself may be fine
        return 1
    return value if 1 <= value <= 8 else 1


def upright(a: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation (1-8) to an (H, W, C) array, as ``ImageOps.exif_transpose``."""
    if orientation == 2:
        return a[:, ::-1]
    if orientation == 3:
        return a[::-1, ::-1]
    if orientation == 4:
        return a[::-1]
    if orientation == 5:
        return a.transpose(1, 0, 2)
    if orientation == 6:
        return np.rot90(a, -1)
    if orientation == 7:
        return a.transpose(1, 0, 2)[::-1, ::-1]
    if orientation == 8:
        return np.rot90(a, 1)
    return a


def _scale_high_depth(a: np.ndarray, mode: str) -> np.ndarray:
    """One channel of more than 8 bits to ``uint8`` by scaling its full range, not clipping.

    16-bit modes (and Pillow's 32-bit ``I`` holding 16-bit data, as it does for 16-bit PNG
    and TIFF) map 0..65535 to 0..255; float images in 0..1 map to 0..255; anything else
    (signed or wider data, as from scientific TIFFs) is stretched from its min to its max.
    """
    a = a.astype(np.float64)
    lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
    if mode == "F" and lo >= 0 and hi <= 1:
        scale, lo = 255.0, 0.0
    elif mode != "F" and lo >= 0 and hi <= 65535:
        scale, lo = 255.0 / 65535.0, 0.0
    else:
        scale = 255.0 / (hi - lo) if hi > lo else 0.0
    return np.clip(np.rint((a - lo) * scale), 0, 255).astype(np.uint8)


def _cmyk_to_rgb(img: Image.Image) -> Image.Image:
    icc = img.info.get("icc_profile")
    if icc:
        try:
            from PIL import ImageCms

            src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            out = ImageCms.profileToProfile(img, src, ImageCms.createProfile("sRGB"), outputMode="RGB")
            if out is not None:
                return out
        except Exception:  # noqa: BLE001 - a broken profile: fall back to the plain formula
            pass
    return img.convert("RGB")  # (255 - C)(255 - K)/255, as browsers do without a profile


def to_rgb8(img: Image.Image) -> np.ndarray:
    """Any Pillow mode -> RGB ``uint8`` as a browser shows it (alpha over white)."""
    mode = img.mode
    if mode in _HIGH_DEPTH:
        gray = _scale_high_depth(np.asarray(img), mode)
        return np.repeat(gray[..., None], 3, axis=-1)
    if mode == "CMYK":
        return np.asarray(_cmyk_to_rgb(img), dtype=np.uint8)
    if mode in _ALPHA or (mode in ("P", "L", "RGB") and "transparency" in img.info):
        rgba = np.asarray(img.convert("RGBA"), dtype=np.float32)
        alpha = rgba[..., 3:] / 255.0
        return np.rint(rgba[..., :3] * alpha + 255.0 * (1.0 - alpha)).astype(np.uint8)
    return np.asarray(img.convert("RGB"), dtype=np.uint8)
