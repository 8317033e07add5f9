"""The IMAGES argument of the explain jobs: a dataset split, a folder, or a list of URIs.

* a dataset (``<label>/*`` or ``train|valid|test/<label>/*``): one split (``--split``) or all,
  split exactly as the model's train run split it (pass its :class:`SplitConfig`);
* a folder of images at its root (no labels);
* a ``.txt`` file with one image path/URI per line, a comma-separated list, or one image.

Images are decoded in chunks, so tens of thousands of images stream through in flat memory.
"""
from __future__ import annotations

import logging
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import numpy as np
from PIL import Image

from pydantic import Field

from headstart.shared.runtime.cpus import usable_cpus
from headstart.shared.data.datasets import SplitConfig, discover
from headstart.shared.runtime.errors import UserError
from headstart.shared.data.images import MAX_PIXELS, Skipped, read_image
from headstart.shared.runtime.specs import JobSpec
from headstart.shared.storage.store import Store, join, open_store, split_uri

log = logging.getLogger(__name__)


class ModelImagesSpec(JobSpec):
    """The inputs every explain job shares: a trained model, the images, an output folder."""

    model: str = Field(description="a published train run (folder or URI holding model.keras)",
                       json_schema_extra={"positional": True})
    images: str = Field(description="a dataset (with --split), a folder of images, a .txt list of "
                        "image URIs, or comma-separated URIs", json_schema_extra={"positional": True})
    out: str = Field(description="output folder or URI")

LIST_SUFFIXES = (".txt", ".lst")


@dataclass(frozen=True)
class ImageRef:
    """One image: where it is (store root + key), its label and split when known."""

    root: str
    key: str
    label: str | None = None
    split: str | None = None

    @property
    def uri(self) -> str:
        return join(self.root, self.key)


@dataclass
class Chunk:
    """Decoded images of consecutive refs: model-input and display-size arrays."""

    refs: list[ImageRef]
    model: np.ndarray    # (n, size, size, 3) float32: the model's own resize of each decoded image
    display: np.ndarray  # (n, d, d, 3) uint8, what overlays are drawn on
    skipped: list[Skipped]


def _pick_split(splits: dict, split: str, uri: str) -> list[str]:
    if split == "all":
        return list(splits)
    if split in splits:
        return [split]
    raise UserError(f"`split` {split!r} is not in dataset {uri!r}; it has {sorted(splits)} "
                    "(or use --split all)")


def _from_dataset(uri: str, split: str, config: SplitConfig) -> list[ImageRef]:
    index = discover(uri, config)
    return [ImageRef(index.uri, item.key, item.label, name)
            for name in _pick_split(index.splits, split, uri) for item in index.splits[name]]


def _from_list(entries: list[str], base: str | None) -> list[ImageRef]:
    refs = []
    for entry in entries:
        if base is not None and "://" not in entry and not entry.startswith("/"):
            entry = join(base, entry)  # relative lines are relative to the list file
        store, name = split_uri(entry)
        refs.append(ImageRef(store.uri, name))
    if not refs:
        raise UserError("the image list is empty: expected one image path or URI per line")
    return refs


def _read_list(uri: str) -> list[str]:
    store, name = split_uri(uri)
    try:
        text = store.read_text(name)
    except FileNotFoundError:
        raise UserError(f"image list not found: {uri!r}") from None
    return [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")]


def _is_single_file(uri: str) -> bool:
    store, name = split_uri(uri)
    return bool(name) and store.exists(name)


def resolve_images(images: str, split: str = "test", config: SplitConfig = SplitConfig()) -> list[ImageRef]:
    """Expand the IMAGES argument into image references (see the module docstring)."""
    images = images.strip()
    if not images:
        raise UserError("`images` is empty: expected a dataset, a folder, a .txt list or URIs")
    if "," in images:
        return _from_list([p.strip() for p in images.split(",") if p.strip()], None)
    if images.lower().endswith(LIST_SUFFIXES):
        return _from_list(_read_list(images), images.rstrip("/").rpartition("/")[0] or ".")
    store = open_store(images)
    keys = [k for k in store.list() if not k.rsplit("/", 1)[-1].startswith((".", "_"))
            and not k.endswith((".json", ".yaml", ".csv", ".md", ".txt"))]
    if not keys:
        if _is_single_file(images):
            return _from_list([images], None)
        raise UserError(f"no images found at {images!r}: expected a dataset, a folder of images, "
                        "a .txt list of image URIs or a comma-separated list")
    if any("/" in k for k in keys):
        return _from_dataset(images, split, config)
    return [ImageRef(store.uri, k) for k in keys]


def display_picture(array: np.ndarray, size: int) -> np.ndarray:
    """A decoded image as a ``size`` square picture (overlays, thumbnails): never what the model sees."""
    if array.shape[:2] == (size, size):
        return array
    return np.asarray(Image.fromarray(array).resize((size, size), Image.Resampling.BILINEAR))


def _decode(store: Store, ref: ImageRef, model_size: int, display_size: int, resize, min_side: int,
            max_pixels: int, common: dict | None = None) -> tuple[np.ndarray, np.ndarray] | Skipped:
    # The model input is exactly the model's resize of decode_image(target=model_size): the
    # display picture is drawn from the same decode (sides >= model_size), never the reverse.
    array = read_image(store, ref.key, ref.label or "", target=model_size, max_pixels=max_pixels,
                       min_side=min_side, name=ref.uri)
    if isinstance(array, Skipped):
        return array
    display = array if display_size == 0 else display_picture(array, display_size)
    if common is not None and common.setdefault("shape", array.shape) == array.shape:
        return array, display  # the common shape: the model resizes a whole batch of them itself
    return resize(array), display


def image_decoder(model_size: int, display_size: int | None = None, *, model: Any = None,
                  min_side: int = 8, max_pixels: int = MAX_PIXELS, batch_resize: bool = False
                  ) -> Callable[[ImageRef], tuple[np.ndarray, np.ndarray] | Skipped]:
    """``ref -> (model input, display picture) | Skipped``, safe to call from many threads.

    The model input (float32, ``model_size`` square) is ``model``'s own resize layer (the
    standard one without a model) applied to ``decode_image(bytes, target=model_size)``: what
    ``model`` computes from that decoded image. The display picture (``uint8``,
    ``display_size`` square, default ``model_size``) is for overlays and galleries only;
    ``display_size=0`` hands back the decoded image itself (a caller that keeps only a few
    pictures shrinks just those: :func:`display_picture`).

    ``batch_resize`` (for a caller that feeds the full ``model``, which resizes itself): images
    of the first decoded image's shape - the one shape of a uniform dataset - come back
    decoded (``uint8``), not resized, for the model to resize a batch of them in one op
    (resizing one by one costs ~1.2 ms of CPU an image, mostly per-call overhead); any other
    shape is resized here as usual. :func:`headstart.shared.model.predict.stream_batches`
    groups a batch by shape."""
    from headstart.shared.data.modelinput import resizer

    resize = resizer(model_size, model)
    common: dict | None = {} if batch_resize else None
    display = model_size if display_size is None else display_size
    stores: dict[str, Store] = {}

    def decode(ref: ImageRef) -> tuple[np.ndarray, np.ndarray] | Skipped:
        store = stores.get(ref.root)
        if store is None:
            store = stores.setdefault(ref.root, open_store(ref.root))
        return _decode(store, ref, model_size, display, resize, min_side, max_pixels, common)

    return decode


def iter_chunks(refs: list[ImageRef], model_size: int, display_size: int | None = None,
                chunk: int = 256, min_side: int = 8, max_pixels: int = MAX_PIXELS,
                model: Any = None) -> Iterator[Chunk]:
    """Decode ``refs`` in order, ``chunk`` at a time (:func:`image_decoder`); unusable files
    come back as skipped. Without ``display_size`` the display arrays are model-size pictures."""
    decode = image_decoder(model_size, display_size, model=model, min_side=min_side,
                           max_pixels=max_pixels)
    display_size = display_size or model_size
    workers = min(16, usable_cpus() * 4)  # I/O-bound on remote stores
    with ThreadPoolExecutor(workers) as pool:
        for start in range(0, len(refs), chunk):
            part = refs[start:start + chunk]
            results = list(pool.map(decode, part))
            kept = [(r, res) for r, res in zip(part, results) if not isinstance(res, Skipped)]
            skipped = [res for res in results if isinstance(res, Skipped)]
            for s in skipped:
                log.warning("skipping %s: %s (%s)", s.key, s.status, s.reason)
            empty_m = np.zeros((0, model_size, model_size, 3), np.float32)
            empty_d = np.zeros((0, display_size, display_size, 3), np.uint8)
            yield Chunk([r for r, _ in kept],
                        np.stack([m for _, (m, _) in kept]) if kept else empty_m,
                        np.stack([d for _, (_, d) in kept]) if kept else empty_d, skipped)


def slug(ref: ImageRef, taken: set[str]) -> str:
    """A short, readable, unique file stem for an image (used for its overlay PNG)."""
    stem = ref.key.rsplit(".", 1)[0] if "." in ref.key.rsplit("/", 1)[-1] else ref.key
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", stem.replace("/", "__")).strip("._")[-100:] or "image"
    out, n = name, 1
    while out in taken:
        n += 1
        out = f"{name}-{n}"
    taken.add(out)
    return out
