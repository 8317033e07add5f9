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
from dataclasses import dataclass, field
from typing import Iterable, Iterator, Mapping

import numpy as np
from PIL import Image

from headstart.shared.runtime.cpus import usable_cpus
from headstart.shared.data.datasets import Item
from headstart.shared.data.images import MAX_PIXELS, Skipped, read_image
from headstart.shared.data.scratch import allocate
from headstart.shared.runtime.logs import Progress
from headstart.shared.storage.store import Store

log = logging.getLogger(__name__)



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
    array = read_image(store, item.key, item.label, target=size, max_pixels=max_pixels,
                       min_side=min_side)
    if isinstance(array, Skipped):
        return array
    if array.shape[0] != size or array.shape[1] != size:
        array = np.asarray(Image.fromarray(array).resize((size, size), Image.BILINEAR))
    return array


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
    out = allocate((len(items), size, size, 3), np.uint8, cache_dir, "images")
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


SKIPPED_COLUMNS = ("split", "key", "label", "status", "reason")


def skipped_csv(groups: Mapping[str | None, Iterable[Skipped]]) -> str:
    """Every job's ``skipped.csv``: one row per skipped file under :data:`SKIPPED_COLUMNS`,
    ``csv``-quoted (keys and reasons hold commas, quotes and newlines). ``groups`` maps a
    split name (None: the images were not from a dataset split) to its skipped files."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(SKIPPED_COLUMNS)
    for split, skipped in groups.items():
        for s in skipped:
            writer.writerow([split or "", s.key, s.label or "", s.status, s.reason])
    return buf.getvalue()
