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


def _exif_jpeg(array, orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="JPEG", exif=exif.tobytes(), quality=95)
    return buf.getvalue()


def test_reencoded_phone_photos_are_stored_upright() -> None:
    import numpy as np

    upright = np.zeros((120, 60, 3), np.uint8)  # portrait: red top half, blue bottom half
    upright[:60, :, 0] = 255
    upright[60:, :, 2] = 255
    data = _exif_jpeg(np.ascontiguousarray(np.rot90(upright, 1)), 6)  # sensor landscape + tag 6
    for opts in (PrepOptions(min_side=8, reencode=True), PrepOptions(min_side=8, resize=60)):
        out = prepare_image(data, opts)
        stored = Image.open(io.BytesIO(out.data))
        assert stored.getexif().get(0x0112, 1) == 1       # no tag left to apply...
        pixels = np.asarray(stored.convert("RGB")).astype(int)
        assert pixels.shape[0] > pixels.shape[1]            # ...because the pixels are upright
        assert pixels[5, :, 0].mean() > 200 and pixels[-5, :, 2].mean() > 200
    kept = prepare_image(data, PrepOptions(min_side=8))
    assert kept.data == data  # originals keep their tag (every reader applies it)


def test_scrape_refuses_jpeg_decode_bombs() -> None:
    import numpy as np

    buf = io.BytesIO()
    Image.fromarray(np.full((16, 16, 3), 90, np.uint8)).save(buf, format="JPEG")
    data = bytearray(buf.getvalue())
    sof = data.find(b"\xff\xc0")
    data[sof + 5:sof + 9] = (7000).to_bytes(2, "big") * 2  # header claims 7000 x 7000
    out = prepare_image(bytes(data), PrepOptions(max_pixels=60_000_000))
    assert out.status == "decode_error" and "7000x7000" in out.error
