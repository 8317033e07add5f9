"""Decode a split's images into a fixed-size ``uint8`` array, in parallel, keeping failures as data.

Each file is read through the store, sniffed and checked (:mod:`headstart.shared.data.images`), decoded and
resized to the model's input size, in a ``tf.data`` pipeline (parallel map, prefetch). Unusable files are skipped and returned with their reason,
so a run lists every skipped image instead of crashing on the first bad one. Large splits go
to a memory-mapped file so memory stays flat.
"""
from __future__ import annotations

import csv
import io
import logging
import os
import tempfile
from dataclasses import dataclass, field
from typing import Iterable, Iterator

import numpy as np
from PIL import Image

from headstart.shared.runtime.cpus import usable_cpus
from headstart.shared.data.datasets import Item
from headstart.shared.data.images import MAX_PIXELS, ImageRejected, decode_image
from headstart.shared.runtime.logs import Progress
from headstart.shared.storage.store import Store

log = logging.getLogger(__name__)

# Above this many bytes of pixels, decoded images go to a memory-mapped file on local disk.
MEMMAP_BYTES = 2 * 1024**3


@dataclass
class Skipped:
    key: str
    label: str
    status: str
    reason: str


@dataclass
class LoadedSplit:
    """Decoded images of one split: ``images[i]`` has label index ``labels[i]``."""

    name: str
    images: np.ndarray          # (n, size, size, 3) uint8
    labels: np.ndarray          # (n,) int32
    keys: list[str]
    skipped: list[Skipped] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.keys)


def _decode_one(store: Store, item: Item, size: int, min_side: int,
                max_pixels: int) -> np.ndarray | Skipped:
    try:
        data = store.read_bytes(item.key)
    except (OSError, FileNotFoundError) as exc:
        return Skipped(item.key, item.label, "unreadable", str(exc))
    if len(data) == 0:
        return Skipped(item.key, item.label, "empty", "file is empty")
    try:
        array = decode_image(data, max_pixels=max_pixels, min_side=min_side)
    except ImageRejected as exc:
        return Skipped(item.key, item.label, exc.status, str(exc))
    if array.shape[0] != size or array.shape[1] != size:
        array = np.asarray(Image.fromarray(array).resize((size, size), Image.BILINEAR))
    return array


def _allocate(n: int, size: int, cache_dir: str | None) -> np.ndarray:
    nbytes = n * size * size * 3
    if nbytes < MEMMAP_BYTES:
        return np.empty((n, size, size, 3), dtype=np.uint8)
    directory = cache_dir or tempfile.gettempdir()
    os.makedirs(directory, exist_ok=True)
    fd, path = tempfile.mkstemp(prefix="images-", suffix=".npy", dir=directory)
    os.close(fd)
    log.info("decoding %d images (%.1f GiB) into memory-mapped %s", n, nbytes / 1024**3, path)
    return np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(n, size, size, 3))


def _decoded(store: Store, items: list[Item], size: int, min_side: int, max_pixels: int,
             workers: int) -> Iterator[np.ndarray | Skipped]:
    """Decode in a ``tf.data`` pipeline: parallel reads + decodes, in order, prefetched.

    Pillow and the store's I/O release the GIL, so the pipeline's threads overlap both; a
    failure travels beside its (empty) slot and comes back as a :class:`Skipped` record.
    """
    import tensorflow as tf

    failures: dict[int, Skipped] = {}
    empty = np.zeros((size, size, 3), dtype=np.uint8)

    def decode(i: np.int64) -> np.ndarray:
        result = _decode_one(store, items[int(i)], size, min_side, max_pixels)
        if isinstance(result, Skipped):
            failures[int(i)] = result
            return empty
        return result

    ds = tf.data.Dataset.range(len(items)).map(
        lambda i: tf.numpy_function(decode, [i], tf.uint8, stateful=False),
        num_parallel_calls=workers, deterministic=True).prefetch(tf.data.AUTOTUNE)
    options = tf.data.Options()
    options.threading.private_threadpool_size = workers  # I/O-bound on remote stores
    for i, array in enumerate(ds.with_options(options).as_numpy_iterator()):
        yield failures.pop(i, None) or array


def load_split(store: Store, name: str, items: list[Item], labels: list[str], size: int,
               min_side: int = 8, max_pixels: int = MAX_PIXELS, workers: int | None = None,
               cache_dir: str | None = None) -> LoadedSplit:
    """Decode ``items`` into a :class:`LoadedSplit`, skipping unusable files with a reason."""
    index = {label: i for i, label in enumerate(labels)}
    out = _allocate(len(items), size, cache_dir)
    kept_labels: list[int] = []
    keys: list[str] = []
    skipped: list[Skipped] = []
    workers = workers or min(16, usable_cpus() * 4)
    progress = Progress(len(items), f"decode {name}", "img", log)
    for item, result in zip(items, _decoded(store, items, size, min_side, max_pixels, workers)):
        if isinstance(result, Skipped):
            skipped.append(result)
            log.warning("skipping %s: %s (%s)", item.key, result.status, result.reason)
            progress.update(1, failed=1)
            continue
        out[len(keys)] = result
        keys.append(item.key)
        kept_labels.append(index[item.label])
        progress.update(1)
    progress.close()
    return LoadedSplit(name, out[: len(keys)], np.asarray(kept_labels, dtype=np.int32), keys, skipped)


def skipped_csv(splits: Iterable[LoadedSplit]) -> str:
    """One CSV row per skipped file: split, key, label, status, reason."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["split", "key", "label", "status", "reason"])
    for split in splits:
        for s in split.skipped:
            writer.writerow([split.name, s.key, s.label, s.status, s.reason])
    return buf.getvalue()
