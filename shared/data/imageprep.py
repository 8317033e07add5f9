"""Validate, optionally shrink and re-encode one downloaded image (CPU work, picklable).

:func:`prepare_image` runs in a worker process or thread away from the network loop. It
sniffs the content (never the extension or ``Content-Type``), refuses decompression bombs
from the header *before* decoding, decodes fully through the one decode path
(:func:`~headstart.shared.data.images.decode_image`: truncation and JPEG decode bombs caught,
EXIF orientation applied, so re-encoded images are stored upright), and returns the bytes
to store plus their hashes. The content id is the SHA-256 of the *downloaded* bytes, so the
same download is stored once however often, and under whichever label, it appears.
"""
from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass

from PIL import Image

from headstart.shared.runtime.config import FromSpec
from headstart.shared.data.images import EXTENSIONS, ImageRejected, decode_to_image, inspect_image, resize_longest


@dataclass(frozen=True, kw_only=True)
class PrepOptions(FromSpec):
    """Checks and transforms applied to every image. The scrape spec takes its defaults from
    here; jobs build it with ``PrepOptions.from_spec(spec)``."""

    max_pixels: int = 50_000_000
    min_side: int = 32
    resize: int | None = None  # longest side in pixels; None keeps the original size
    reencode: bool = False  # always write JPEG (implied by ``resize``)
    jpeg_quality: int = 90


@dataclass
class Prepared:
    """What to store for one image, or why it was rejected (``status != "ok"``)."""

    status: str
    error: str = ""
    sha: str = ""  # sha256 of the downloaded bytes: the content id
    format: str = ""
    width: int = 0  # of the downloaded image
    height: int = 0
    ext: str = ""
    data: bytes | None = None  # the bytes to store
    stored_sha256: str = ""


def _encode_jpeg(img: Image.Image, quality: int) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def prepare_image(data: bytes, opts: PrepOptions) -> Prepared:
    """Check and transform one download; failures are returned, never raised."""
    sha = hashlib.sha256(data).hexdigest()
    try:
        info = inspect_image(data, max_pixels=opts.max_pixels, min_side=opts.min_side)
    except ImageRejected as exc:
        return Prepared(exc.status, str(exc), sha=sha)
    except Exception as exc:  # noqa: BLE001 - parsers of hostile bytes raise all sorts
        return Prepared("decode_error", f"unreadable header: {type(exc).__name__}: {exc}", sha=sha)
    out = Prepared("ok", sha=sha, format=info.format, width=info.width, height=info.height)
    rewrite = opts.resize is not None or opts.reencode
    try:
        # The one decode path: checks, upright, 8-bit RGB. Kept originals are decoded in full
        # too (scaled, which still reads every coded byte) so truncation is caught here.
        # (As a Pillow image: decode -> resize -> encode never copies through numpy.)
        img = decode_to_image(data, max_pixels=opts.max_pixels, min_side=opts.min_side,
                              longest=opts.resize if rewrite else max(opts.min_side, 64))
        if rewrite:  # upright: the EXIF orientation is in the pixels now
            if opts.resize is not None:
                img = resize_longest(img, opts.resize)
            out.data, out.ext = _encode_jpeg(img, opts.jpeg_quality), "jpg"
        else:  # the original bytes, EXIF tag included: every reader applies it
            out.data, out.ext = data, EXTENSIONS[info.format]
    except ImageRejected as exc:
        return Prepared(exc.status, str(exc), sha=sha, format=info.format, width=info.width,
                        height=info.height)
    except Exception as exc:  # noqa: BLE001 - an encoder failing on hostile input is one bad URL
        return Prepared("decode_error", f"corrupt or truncated {info.format}: {exc}", sha=sha,
                        format=info.format, width=info.width, height=info.height)
    out.stored_sha256 = sha if out.data is data else hashlib.sha256(out.data).hexdigest()
    return out
