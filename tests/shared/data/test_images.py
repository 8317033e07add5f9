"""Images are decoded by content with size and decompression-bomb checks."""
from __future__ import annotations

import contextlib
import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, ImageFile

from headstart.shared.data import images
from headstart.shared.data.images import (ImageInfo, ImageRejected, decode_image, encode_jpeg, encode_png,
                           inspect_image, resize_longest, sniff_format)
from tests.helpers import encode


def gradient(h=32, w=48) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 255 // max(w - 1, 1), y * 255 // max(h - 1, 1), (x + y) % 256],
                    axis=-1).astype(np.uint8)


def png_with_declared_size(width: int, height: int) -> bytes:
    """A tiny valid PNG whose IHDR claims ``width`` x ``height`` (CRC fixed up)."""
    data = bytearray(encode_png(gradient(8, 8)))
    assert data[12:16] == b"IHDR"
    ihdr = bytearray(data[16:29])
    ihdr[0:8] = struct.pack(">II", width, height)
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + bytes(ihdr)) & 0xFFFFFFFF)
    return bytes(data)


@contextlib.contextmanager
def no_pixel_decoding():
    """Fail if any image's pixel data gets decoded (allocated) inside the block."""
    def refuse(self, *args, **kwargs):
        raise AssertionError("pixel data was decoded")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ImageFile.ImageFile, "load", refuse)
        mp.setattr(Image.Image, "load", refuse)
        mp.setattr(Image.Image, "convert", refuse)
        yield


# --------------------------------------------------------------------------- sniffing


@pytest.mark.parametrize("fmt, name", [("JPEG", "jpeg"), ("PNG", "png"), ("GIF", "gif"),
                                       ("BMP", "bmp"), ("WEBP", "webp"), ("TIFF", "tiff")])
def test_formats_are_sniffed_and_decoded(fmt, name):
    data = encode(gradient(), fmt)
    assert sniff_format(data) == name
    assert inspect_image(data) == ImageInfo(name, 48, 32)
    array = decode_image(data)
    assert array.shape == (32, 48, 3)
    assert array.dtype == np.uint8
    assert images.EXTENSIONS[name]


def test_lossless_decode_is_exact():
    src = gradient()
    np.testing.assert_array_equal(decode_image(encode_png(src)), src)


def test_png_named_jpg_decodes(tmp_path):
    path = tmp_path / "photo.jpg"
    path.write_bytes(encode_png(gradient()))
    assert inspect_image(path.read_bytes()).format == "png"
    assert decode_image(path.read_bytes()).shape == (32, 48, 3)


def test_gif_decodes_to_rgb():
    data = encode(gradient(), "GIF")
    assert data[:6] in (b"GIF87a", b"GIF89a")
    assert decode_image(data).shape == (32, 48, 3)


def test_modes_are_converted_to_rgb():
    gray = Image.fromarray(gradient()[..., 0])
    rgba = Image.fromarray(np.dstack([gradient(), np.full((32, 48), 128, np.uint8)]))
    for img in (gray, rgba, Image.fromarray(gradient()).convert("CMYK")):
        buf = io.BytesIO()
        img.save(buf, format="TIFF" if img.mode == "CMYK" else "PNG")
        assert decode_image(buf.getvalue()).shape == (32, 48, 3)


def test_jpeg_roundtrip_is_close():
    src = gradient()
    out = decode_image(encode_jpeg(src, quality=95))
    assert np.abs(out.astype(int) - src.astype(int)).mean() < 6


# --------------------------------------------------------------------------- rejections


def status_of(data: bytes, **kwargs) -> str:
    with pytest.raises(ImageRejected) as info:
        decode_image(data, **kwargs)
    assert isinstance(info.value, ValueError)
    return info.value.status


@pytest.mark.parametrize("data", [
    b"<!DOCTYPE html><html><body>404 Not Found</body></html>",
    b"",
    b"\x00" * 100,
    b"%PDF-1.4 ...",
    b"RIFF\x00\x00\x00\x00WAVEfmt ",
])
def test_non_images_are_not_image(data):
    assert sniff_format(data) is None
    assert status_of(data) == "not_image"


def test_truncated_jpeg_is_decode_error():
    noise = np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8)
    data = encode(noise, "JPEG", quality=95)
    assert inspect_image(data[: len(data) // 2]).format == "jpeg"  # header still readable
    assert status_of(data[: len(data) // 2]) == "decode_error"


def test_truncated_png_is_decode_error():
    data = encode_png(gradient(64, 64))
    assert status_of(data[: len(data) - 30]) == "decode_error"


def test_corrupt_header_is_decode_error():
    assert status_of(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10) == "decode_error"
    assert status_of(b"\xff\xd8\xff" + b"\x00" * 50) == "decode_error"


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "GIF", "BMP", "WEBP", "TIFF"])
def test_every_truncation_is_rejected_cleanly(fmt):
    """No decoder exception escapes: every prefix decodes or raises ImageRejected."""
    data = encode(gradient(24, 24), fmt)
    cuts = sorted(set(range(0, min(len(data), 80))) | set(range(80, len(data), max(1, len(data) // 40))))
    for cut in cuts:
        try:
            out = decode_image(data[:cut])
        except ImageRejected as exc:
            assert exc.status in {"not_image", "decode_error", "too_small", "too_large"}, (cut, exc.status)
        else:
            assert out.shape == (24, 24, 3), cut


@pytest.mark.parametrize("size", [(4, 4), (7, 100), (100, 7)])
def test_tiny_images_are_too_small(size):
    h, w = size
    assert status_of(encode_png(gradient(h, w))) == "too_small"


def test_min_side_is_configurable():
    data = encode_png(gradient(4, 4))
    assert decode_image(data, min_side=4).shape == (4, 4, 3)
    assert status_of(encode_png(gradient(16, 16)), min_side=17) == "too_small"


def test_crafted_png_header_is_what_it_claims():
    data = png_with_declared_size(3000, 2000)
    assert len(data) < 1000
    with Image.open(io.BytesIO(data)) as img:  # header only: valid IHDR with a good CRC
        assert img.size == (3000, 2000)


@pytest.mark.parametrize("width, height", [(100_000, 100_000), (10_000, 10_000), (65_535, 2)])
def test_huge_declared_dimensions_are_too_large_without_decoding(width, height):
    data = png_with_declared_size(width, height)
    with no_pixel_decoding():
        with pytest.raises(ImageRejected) as info:
            inspect_image(data, max_pixels=100_000)
        assert info.value.status == "too_large"
        assert status_of(data, max_pixels=100_000) == "too_large"


def test_default_bomb_limit_rejects_100000_squared():
    huge, big = png_with_declared_size(100_000, 100_000), png_with_declared_size(10_000, 10_000)
    with no_pixel_decoding():
        assert status_of(huge) == "too_large"  # beyond Pillow's own hard limit
        assert status_of(big) == "too_large"  # 1e8 px: above MAX_PIXELS, below Pillow's error


def test_max_pixels_is_configurable():
    data = encode_png(gradient(32, 48))
    assert status_of(data, max_pixels=32 * 48 - 1) == "too_large"
    assert decode_image(data, max_pixels=32 * 48).shape == (32, 48, 3)


# --------------------------------------------------------------------------- helpers


def test_resize_longest():
    img = Image.fromarray(gradient(100, 200))
    assert resize_longest(img, 50).size == (50, 25)
    assert resize_longest(img, 400) is img  # never enlarges
    assert resize_longest(Image.fromarray(gradient(300, 2)), 30).size == (1, 30)


def test_encoders_produce_sniffable_bytes():
    assert sniff_format(encode_jpeg(gradient())) == "jpeg"
    assert sniff_format(encode_png(gradient())) == "png"
