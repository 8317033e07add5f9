"""Validate, optionally shrink and re-encode one downloaded image (CPU work, picklable).

:func:`prepare_image` runs in a worker process or thread away from the network loop. It
sniffs the content (never the extension or ``Content-Type``), refuses decompression bombs
from the header *before* decoding, decodes fully (catching truncation), and returns the bytes
to store plus their hashes. The content id is the SHA-256 of the *downloaded* bytes, so the
same download is stored once however often, and under whichever label, it appears.
"""
from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass

from PIL import Image

from headstart.shared.runtime.config import FromSpec
from headstart.shared.data.images import EXTENSIONS, ImageRejected, inspect_image, resize_longest


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


def _decode(data: bytes, target: int | None) -> Image.Image:
    """Decode fully; when shrinking a JPEG, ``draft`` decodes straight at 1/2, 1/4 or 1/8
    scale (DCT scaling: several times faster) while staying at least the final size."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        img = Image.open(io.BytesIO(data))
        if target is not None and img.format == "JPEG":
            scale = target / max(img.size)
            if scale < 1:
                img.draft("RGB", (max(1, int(img.size[0] * scale)), max(1, int(img.size[1] * scale))))
        img.load()
    return img


def _encode_jpeg(img: Image.Image, quality: int) -> bytes:
    if img.mode != "RGB":
        img = img.convert("RGBA").convert("RGB") if "transparency" in img.info else img.convert("RGB")
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
    try:
        img = _decode(data, opts.resize)
        if opts.resize is not None:
            img = resize_longest(img, opts.resize)
        if opts.resize is not None or opts.reencode:
            out.data, out.ext = _encode_jpeg(img, opts.jpeg_quality), "jpg"
        else:
            out.data, out.ext = data, EXTENSIONS[info.format]
    except Exception as exc:  # noqa: BLE001 - a decoder failing on hostile bytes is one bad URL
        return Prepared("decode_error", f"corrupt or truncated {info.format}: {exc}", sha=sha,
                        format=info.format, width=info.width, height=info.height)
    out.stored_sha256 = sha if out.data is data else hashlib.sha256(out.data).hexdigest()
    return out
