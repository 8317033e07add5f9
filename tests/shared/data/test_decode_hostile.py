"""The one decode path: upright, browser-faithful 8-bit RGB, bounded on hostile JPEGs,
shrunk while decoding when a model input is much smaller."""
from __future__ import annotations

import base64
import io
import time

import numpy as np
import pytest
from PIL import Image, ImageOps

from headstart.shared.data import jpeg, pixels
from headstart.shared.data.images import (MODEL_REDUCING_GAP, ImageRejected, Skipped, decode_image,
                                          inspect_image, read_image, shrink_factor)
from headstart.shared.storage.store import open_store
from tests.helpers import encode


def photo(h: int = 40, w: int = 24, seed: int = 0) -> np.ndarray:
    """A smooth, asymmetric picture (so a flip or a rotation shows)."""
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([x * 255 // max(w - 1, 1), y * 255 // max(h - 1, 1),
                     ((x // 4 + y // 4) % 2) * 200 + 20], axis=-1)
    return base.astype(np.uint8)


def with_orientation(array: np.ndarray, orientation: int, fmt: str = "PNG") -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format=fmt, exif=exif.tobytes(), quality=95)
    return buf.getvalue()


def status_of(data: bytes, **kw) -> str:
    with pytest.raises(ImageRejected) as info:
        decode_image(data, **kw)
    return info.value.status


# ------------------------------------------------------------------ orientation (issue 10.8)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_matches_exif_transpose(orientation):
    stored = photo()
    data = with_orientation(stored, orientation)
    expected = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB"))
    np.testing.assert_array_equal(decode_image(data), expected)


def test_portrait_phone_photo_stored_landscape_decodes_upright():
    upright = photo(48, 32)                   # portrait, as the phone was held
    stored = np.rot90(upright, 1)             # the sensor's landscape pixels
    data = with_orientation(np.ascontiguousarray(stored), 6, "JPEG")
    out = decode_image(data)
    assert out.shape == (48, 32, 3)
    assert np.abs(out[..., :2].astype(int) - upright[..., :2].astype(int)).mean() < 6  # smooth channels


def test_orientation_applies_after_a_scaled_decode():
    upright = np.repeat(np.repeat(photo(48, 32), 8, 0), 8, 1)  # 384 x 256
    data = with_orientation(np.ascontiguousarray(np.rot90(upright, 1)), 6, "JPEG")
    out = decode_image(data, target=32)
    assert out.shape == (96, 64, 3)  # shrunk by 4 (keeping 2x the target) and upright


# ------------------------------------------------------------ modes and bit depths (issue 10.9)


def test_16_bit_grayscale_png_is_scaled_not_clipped():
    ramp = np.linspace(0, 65535, 64 * 64).reshape(64, 64).astype(np.uint16)
    out = decode_image(encode(ramp, "PNG"))
    expected = np.rint(ramp / 257.0)
    assert np.abs(out[..., 0].astype(float) - expected).max() <= 1
    assert (out == 255).mean() < 0.05  # clipping would make ~99.6% of it white
    assert (out[..., 0] == out[..., 2]).all()


def test_i16_tiff_is_scaled():
    ramp = (np.arange(32 * 32).reshape(32, 32) * 60).astype(np.uint16)
    img = Image.fromarray(ramp)
    assert img.mode == "I;16"
    out = decode_image(encode(ramp, "TIFF"))
    assert np.abs(out[..., 1].astype(float) - np.rint(ramp / 257.0)).max() <= 1


def test_32_bit_integer_and_float_images_are_scaled():
    wide = (np.arange(32 * 32).reshape(32, 32) * 1000 - 400_000).astype(np.int32)
    out = decode_image(encode(wide, "TIFF"))
    assert out.min() == 0 and out.max() == 255  # stretched, not clipped at 0 / 255
    unit = np.linspace(0, 1, 32 * 32, dtype=np.float32).reshape(32, 32)
    out = decode_image(encode(unit, "TIFF"))
    assert out[0, 0, 0] == 0 and out[-1, -1, 0] == 255 and 120 < out[16, 16, 0] < 135


def test_transparency_is_composited_on_white():
    rgb = photo(32, 32)
    alpha = np.zeros((32, 32), np.uint8)
    alpha[:, 16:] = 255
    rgba = encode(np.dstack([rgb, alpha]), "PNG")
    out = decode_image(rgba)
    assert (out[:, :16] == 255).all()
    np.testing.assert_array_equal(out[:, 16:], rgb[:, 16:])
    la = encode(np.dstack([rgb[..., 0], alpha]), "PNG")
    assert Image.open(io.BytesIO(la)).mode == "LA"
    out = decode_image(la)
    assert (out[:, :16] == 255).all() and (out[:, 16:, 0] == rgb[:, 16:, 0]).all()


def test_palette_with_transparency_is_composited_on_white():
    img = Image.new("P", (32, 32), 0)
    img.putpalette([0, 0, 0, 200, 30, 30] + [0] * 762)  # index 0 black (transparent), 1 red
    img.paste(1, (0, 0, 16, 32))
    buf = io.BytesIO()
    img.save(buf, format="PNG", transparency=0)
    out = decode_image(buf.getvalue())
    assert (out[:, 16:] == 255).all()          # a browser shows the page (white), not black
    assert (out[:, :16] == (200, 30, 30)).all()


def test_cmyk_jpeg_matches_its_rgb_source():
    src = photo(32, 32)
    cmyk = Image.fromarray(src).convert("CMYK")
    buf = io.BytesIO()
    cmyk.save(buf, format="JPEG", quality=95)
    assert Image.open(io.BytesIO(buf.getvalue())).mode == "CMYK"
    out = decode_image(buf.getvalue())
    assert np.abs(out.astype(int) - src.astype(int)).mean() < 8


# ------------------------------------------------------------------ hostile JPEGs (issue 10.2)


def _split_scans(data: bytes) -> tuple[bytes, list[bytes]]:
    """A progressive JPEG as (everything before the first SOS, [each SOS segment + data])."""
    first = data.index(b"\xff\xda")
    scans, pos = [], first
    while True:
        nxt = data.find(b"\xff\xda", pos + 2)
        if nxt < 0:
            scans.append(data[pos:data.rindex(b"\xff\xd9")])
            return data[:first], scans
        scans.append(data[pos:nxt])
        pos = nxt


def test_progressive_jpeg_with_thousands_of_scans_is_refused_quickly():
    noise = np.random.default_rng(1).integers(0, 256, (256, 256, 3), dtype=np.uint8)
    data = encode(noise, "JPEG", progressive=True, quality=90)
    head, scans = _split_scans(data)
    assert 2 <= len(scans) <= 20
    hostile = head + b"".join(scans) + scans[-1] * 3000 + b"\xff\xd9"
    assert jpeg.read_layout(hostile).scans == len(scans) + 3000
    t0 = time.monotonic()
    assert status_of(hostile) == "too_large"
    assert time.monotonic() - t0 < 2
    assert decode_image(data).shape == (256, 256, 3)  # the honest file is fine


def _claim_size(data: bytes, width: int, height: int) -> bytes:
    sof = max(data.find(b"\xff\xc0"), data.find(b"\xff\xc2"))
    out = bytearray(data)
    out[sof + 5:sof + 7] = height.to_bytes(2, "big")
    out[sof + 7:sof + 9] = width.to_bytes(2, "big")
    return bytes(out)


@pytest.mark.parametrize("progressive", [False, True])
def test_header_claiming_far_more_pixels_than_data_is_decode_error(progressive):
    data = _claim_size(encode(photo(16, 16), "JPEG", progressive=progressive), 7000, 7000)
    assert len(data) < 3000
    assert status_of(data) == "decode_error"


@pytest.mark.parametrize("kw", [{}, {"optimize": True}, {"progressive": True, "optimize": True}])
def test_large_flat_jpegs_are_not_mistaken_for_short_data(kw):
    flat = np.full((1024, 1536, 3), 128, np.uint8)
    data = encode(flat, "JPEG", quality=75, **kw)
    layout = jpeg.read_layout(data)
    assert layout.entropy_bytes >= layout.min_entropy_bytes
    assert decode_image(data, target=128).shape == (256, 384, 3)


def test_layout_of_ordinary_jpegs():
    base = jpeg.read_layout(encode(photo(), "JPEG"))
    assert (base.width, base.height, base.scans) == (24, 40, 1)
    assert base.sampling[0] == (2, 2)
    assert jpeg.read_layout(b"\xff\xd8\xff\xd9") is None


# ---------------------------------------------------------- scaled decode (issue 13.1)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
@pytest.mark.parametrize("target, expected", [(None, (800, 1000)), (160, (400, 500)),
                                              (200, (400, 500)), (201, (800, 1000)),
                                              (90, (200, 250)), (50, (100, 125))])
def test_large_sources_shrink_while_decoding(fmt, target, expected):
    """Shrunk while decoding, but both sides stay >= 2x the target (MODEL_REDUCING_GAP)."""
    big = np.repeat(np.repeat(photo(100, 125), 8, 0), 8, 1)
    out = decode_image(encode(big, fmt, quality=92), target=target)
    assert out.shape[:2] == expected
    assert min(out.shape[:2]) >= 2 * (target or 0)


def test_shrink_factor():
    assert shrink_factor(1000, 800, 160) == 4
    assert shrink_factor(319, 5000, 160) == 1
    assert shrink_factor(5000, 5000, 100) == 8
    assert shrink_factor(5000, 5000, None) == 1
    assert shrink_factor(100, 100, 160) == 1  # smaller than the target
    assert shrink_factor(1000, 800, 160, gap=2) == 2
    assert shrink_factor(639, 5000, 160, gap=2) == 1
    assert shrink_factor(5000, 5000, 100, gap=2) == 8
    assert MODEL_REDUCING_GAP == 2


def test_scaled_decode_is_close_to_a_full_decode_shrunk():
    big = np.repeat(np.repeat(photo(64, 64), 8, 0), 8, 1)  # 512 x 512
    data = encode(big, "JPEG", quality=92)
    fast = decode_image(data, target=64).astype(float)  # 8x the target: DCT-shrunk by 4
    full = np.asarray(Image.fromarray(decode_image(data)).reduce(4)).astype(float)
    assert fast.shape == full.shape == (128, 128, 3)
    assert np.abs(fast - full).mean() < 3


def test_read_image_returns_skipped_records(tmp_path):
    (tmp_path / "ok.png").write_bytes(encode(photo(), "PNG"))
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "bad.jpg").write_bytes(b"<html>")
    store = open_store(str(tmp_path))
    assert read_image(store, "ok.png").shape == (40, 24, 3)
    assert read_image(store, "empty.jpg", "cat") == Skipped("empty.jpg", "cat", "empty", "file is empty")
    assert read_image(store, "bad.jpg", name="x").status == "not_image"
    assert read_image(store, "missing.jpg").status == "unreadable"


def test_upright_is_a_view_for_every_orientation():
    a = photo(6, 4)
    for o in range(1, 9):
        assert pixels.upright(a, o).shape == (a.shape if o < 5 else (4, 6, 3))


def test_training_and_explain_loaders_see_phone_photos_upright(tmp_path):
    """Tag 6 (sensor landscape, held portrait): every loader hands the model the upright
    picture - red on top, blue below - not the sideways one."""
    from headstart.shared.data.datasets import Item
    from headstart.shared.data.imagesets import ImageRef, iter_chunks
    from headstart.shared.data.loading import load_split

    upright = np.zeros((96, 64, 3), np.uint8)
    upright[:48, :, 0] = 255
    upright[48:, :, 2] = 255
    store = open_store(str(tmp_path))
    store.write_bytes("a/phone.jpg", with_orientation(np.ascontiguousarray(np.rot90(upright, 1)), 6, "JPEG"))
    split = load_split(store, "t", [Item("a/phone.jpg", "a")], ["a"], 16)
    chunk = next(iter_chunks([ImageRef(store.uri, "a/phone.jpg")], 16, 24))
    for image in (split.images[0], chunk.model[0], chunk.display[0].astype(np.float32)):
        top, bottom = image[: len(image) // 3], image[-len(image) // 3:]
        assert top[..., 0].mean() > 200 and top[..., 2].mean() < 60
        assert bottom[..., 2].mean() > 200 and bottom[..., 0].mean() < 60


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "GIF", "TIFF", "WEBP", "BMP"])
def test_corrupted_bytes_never_raise_anything_but_image_rejected(fmt):
    """Seeded byte flips in the first 200 bytes (headers, markers): an array or a status."""
    data = encode(photo(24, 24), fmt, **({"progressive": True} if fmt == "JPEG" else {}))
    rng = np.random.default_rng(5)
    for _ in range(150):
        mutated = bytearray(data)
        for pos in rng.integers(0, min(len(data), 200), size=int(rng.integers(1, 4))):
            mutated[pos] = int(rng.integers(0, 256))
        try:
            out = decode_image(bytes(mutated), target=int(rng.integers(1, 40)), min_side=1)
        except ImageRejected as exc:
            assert exc.status in {"not_image", "decode_error", "too_small", "too_large"}
        else:
            assert out.dtype == np.uint8 and out.ndim == 3 and out.shape[2] == 3


# --------------------------------------------- decode cost and arithmetic coding (issue 10.2)

# 32x32 JPEGs re-coded by ``jpegtran -arithmetic [-progressive]`` (libjpeg-turbo 2.1): Pillow
# cannot write arithmetic coding, and its libjpeg-turbo decodes it.
_ARITHMETIC_JPEG = (
    "/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDAAYEBQYFBAYGBQYHBwYIChAKCgkJChQODwwQFxQYGBcUFhYaHSUfGhsjHBYWICwg"
    "IyYnKSopGR8tMC0oMCUoKSj/2wBDAQcHBwoIChMKChMoGhYaKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgo"
    "KCgoKCgoKCgoKCgoKCj/yQARCAAgACADASIAAhEBAxEB/8wACgAQEAUBEBEF/9oADAMBAAIRAxEAPwD/ANjv6pyWp5BeoMCi"
    "OhqPSGu8Q+qYoWc5TdsKEB/O+lDGZbWIaWB0X9Y9DvWeTWmqhQBUySrAHpg+UYyIEBEkosLxqXuxomqizmSBcXkvqcORvi21"
    "eacBYj46SH77XfzL0wLTiQhBRY/Li2Pz03ImWw4rriU2guUiRelWQ2WY5TBZFQCs3jSwdar4/ok8WyNfgpw6CT81VtC1TeWx"
    "YYx4cDF+KP/Z"
)
_ARITHMETIC_PROGRESSIVE_JPEG = (
    "/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDAAYEBQYFBAYGBQYHBwYIChAKCgkJChQODwwQFxQYGBcUFhYaHSUfGhsjHBYWICwg"
    "IyYnKSopGR8tMC0oMCUoKSj/2wBDAQcHBwoIChMKChMoGhYaKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgo"
    "KCgoKCgoKCgoKCgoKCj/ygARCAAgACADASIAAhEBAxEB/8wABgAQARD/2gAMAwEAAhADEAAAAf8AscPYcIY1FTPoM9EW3C20"
    "cqN4/8wABBAF/9oACAEBAAEFAh6vn3kkKKc+lvF1a9CcS6eC/8wABBEF/9oACAEDAQE/ARf9uuz/zAAEEQX/2gAIAQIBAT8B"
    "SwDxZ1D/zAAEEAX/2gAIAQEABj8CsP/MAAQQBf/aAAgBAQABPyHj7fgsgW96OFs22gUfMZA8dxh362T/2gAMAwEAAgADAAAA"
    "EGhek//MAAQRBf/aAAgBAwEBPxB8/8wABBEF/9oACAECAQE/EHz/zAAEEAX/2gAIAQEAAT8QOoxCqYTg3fs232ZZloJ/Ap5U"
    "uT0+52z84LedCihWe17qUkBy2CnaUToy5/Gvfzkq2BY1gJfZ/wD7JQQVPYMgi/PSU1gtbijlg4qHOJ/W/NdoCW6buxl+DtqQ"
    "jN7NSf/Z"
)


@pytest.mark.parametrize("blob", [_ARITHMETIC_JPEG, _ARITHMETIC_PROGRESSIVE_JPEG])
def test_arithmetic_coded_jpegs_are_refused_with_a_reason(blob):
    data = base64.b64decode(blob)
    layout = jpeg.read_layout(data)
    assert layout.arithmetic and (layout.width, layout.height) == (32, 32)
    with Image.open(io.BytesIO(data)) as img:  # Pillow itself would accept them
        img.load()
    with pytest.raises(ImageRejected, match="arithmetic-coded JPEG") as info:
        decode_image(data)
    assert info.value.status == "decode_error"
    # The hostile case they would let through: a header claiming 7000x7000 over 32x32 of data
    # decoded "ok" in 0.1 s (sequential) or 6.6 s (progressive), a grey picture.
    sof = next(data.find(m) for m in (b"\xff\xc9", b"\xff\xca") if data.find(m) > 0)
    claimed = bytearray(data)
    claimed[sof + 5:sof + 9] = (7000).to_bytes(2, "big") * 2
    t0 = time.monotonic()
    assert status_of(bytes(claimed)) == "decode_error" and time.monotonic() - t0 < 0.5


def test_many_scans_of_a_large_frame_are_refused_by_their_product():
    """100 scans pass the scan count; over 10.9 Mpx they cost 1.09e9 scan-pixels (~7 s of
    decoding here, stored "ok" before), so the product refuses them before any pixel."""
    flat = np.full((3300, 3300, 3), 90, np.uint8)
    honest = encode(flat, "JPEG", progressive=True, quality=75)
    head, scans = _split_scans(honest)
    hostile = head + b"".join(scans) + scans[-1] * (100 - len(scans)) + b"\xff\xd9"
    layout = jpeg.read_layout(hostile)
    assert layout.scans == 100 <= jpeg.MAX_SCANS and layout.scan_pixels > jpeg.MAX_SCAN_PIXELS
    t0 = time.monotonic()
    with pytest.raises(ImageRejected, match="100 scans of 3300x3300") as info:
        decode_image(hostile)
    assert info.value.status == "too_large" and time.monotonic() - t0 < 1
    ordinary = jpeg.read_layout(honest)  # an encoder's own 10 scans of the same frame pass
    assert ordinary.scans <= 12 and ordinary.scan_pixels <= jpeg.MAX_SCAN_PIXELS
    pixels.check_jpeg(honest, inspect_image(honest))
    # 10 scans of 100 Mpx (Pillow's own limit is 89 Mpx) stay under the product
    assert jpeg.MAX_SCAN_PIXELS >= 10 * 10_000 * 10_000
