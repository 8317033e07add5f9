"""``decode_to_image`` (scrape's Pillow-only chain) gives exactly ``decode_image``'s pixels."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from headstart.shared.data.images import ImageRejected, decode_image, decode_to_image


def _pattern(w: int, h: int) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([(x * 7) % 256, (y * 5) % 256, (x * y) % 256], axis=-1).astype(np.uint8)


def _save(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _jpeg_with_orientation(orientation: int, size=(96, 64)) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return _save(Image.fromarray(_pattern(*size)), "JPEG", quality=90, exif=exif.tobytes())


CASES = {f"jpeg-orientation-{o}": _jpeg_with_orientation(o) for o in range(1, 9)}
CASES.update({
    "jpeg-gray": _save(Image.fromarray(_pattern(80, 60)[..., 0]), "JPEG"),
    "jpeg-cmyk": _save(Image.fromarray(_pattern(80, 60)).convert("CMYK"), "JPEG"),
    "png-rgba": _save(Image.fromarray(np.dstack([_pattern(70, 50), _pattern(70, 50)[..., :1]]), "RGBA"), "PNG"),
    "png-16bit": _save(Image.fromarray(_pattern(70, 50)[..., 0].astype(np.uint16) * 200), "PNG"),
    "gif-palette": _save(Image.fromarray(_pattern(70, 50)).convert("P"), "GIF"),
    "png-transparent-rgb": _save(Image.fromarray(_pattern(70, 50)), "PNG", transparency=(0, 0, 0)),
})


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("longest", [None, 20, 40])
def test_same_pixels_as_decode_image(name: str, longest: int | None) -> None:
    data = CASES[name]
    expected = decode_image(data, min_side=8, longest=longest)
    img = decode_to_image(data, min_side=8, longest=longest)
    assert img.mode == "RGB"
    np.testing.assert_array_equal(np.asarray(img), expected)


def test_same_checks_as_decode_image() -> None:
    data = CASES["jpeg-orientation-1"]
    for bad, status in ((data[: len(data) // 3], "decode_error"), (b"<html>", "not_image")):
        with pytest.raises(ImageRejected) as exc:
            decode_to_image(bad)
        assert exc.value.status == status
    with pytest.raises(ImageRejected, match="pixels exceeds"):
        decode_to_image(data, max_pixels=100)
