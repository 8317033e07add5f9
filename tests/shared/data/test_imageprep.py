"""Per-image checks: sniffed content, bombs refused before decoding, truncation, resizing."""
from __future__ import annotations

import io

from PIL import Image

from headstart.shared.data.imageprep import PrepOptions, prepare_image


def _image(size=(120, 80), fmt="JPEG", mode="RGB") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size, "red").save(buf, format=fmt)
    return buf.getvalue()


def test_original_bytes_are_kept_by_default() -> None:
    data = _image(fmt="PNG")
    out = prepare_image(data, PrepOptions(min_side=8))
    assert (out.status, out.format, out.ext, out.width, out.height) == ("ok", "png", "png", 120, 80)
    assert out.data == data and out.stored_sha256 == out.sha


def test_resize_shrinks_the_longest_side_and_reencodes_as_jpeg() -> None:
    out = prepare_image(_image((400, 100), fmt="PNG", mode="RGBA"), PrepOptions(min_side=8, resize=100))
    assert out.status == "ok" and out.ext == "jpg"
    assert Image.open(io.BytesIO(out.data)).size == (100, 25)
    assert (out.width, out.height) == (400, 100)  # the report keeps the downloaded size
    assert out.stored_sha256 != out.sha


def test_rejections_carry_a_status() -> None:
    jpeg = _image((256, 256))
    assert prepare_image(b"<html>hi</html>", PrepOptions()).status == "not_image"
    assert prepare_image(jpeg[: len(jpeg) // 2], PrepOptions()).status == "decode_error"
    assert prepare_image(_image((10, 10)), PrepOptions(min_side=32)).status == "too_small"
    bomb = prepare_image(_image((300, 300)), PrepOptions(max_pixels=50_000))
    assert bomb.status == "too_large" and "pixels" in bomb.error


def test_the_content_id_is_the_hash_of_the_download() -> None:
    data = _image()
    assert prepare_image(data, PrepOptions(resize=50)).sha == prepare_image(data, PrepOptions()).sha
