"""Decode a split's images into the model's input array, in parallel, keeping failures as data.

Each file is read through the store and decoded by the one decode path
(:func:`headstart.shared.data.images.read_image`, shrunk while decoding towards the input
size), then resized by the model's own resize layer (:mod:`headstart.shared.data.modelinput`):
the float32 result is exactly what the saved model feeds its backbone for that file, so
features, scores and probabilities computed from it equal ``model(decoded image)``. Both
steps run in a ``tf.data`` pipeline (parallel map, prefetch). Unusable files are skipped and
returned with their reason, so a run lists every skipped image instead of crashing on the
first bad one. Large splits go to a memory-mapped file so memory stays flat.
"""
from __future__ import annotations

import csv
import io
import logging
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Mapping

import numpy as np

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
    images: np.ndarray          # (n, size, size, 3) float32: the model's resize of each decoded image
    labels: np.ndarray          # (n,) int32
    keys: list[str]
    skipped: list[Skipped] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.keys)




def _decoded(store: Store, items: list[Item], size: int, min_side: int, max_pixels: int,
             workers: int, model: Any = None) -> Iterator[np.ndarray | Skipped]:
    """Decode + resize in a ``tf.data`` pipeline: parallel reads and decodes, in order, prefetched.

    Pillow and the store's I/O release the GIL, so the pipeline's threads overlap both; a
    failure travels beside its (empty) slot and comes back as a :class:`Skipped` record.
    """
    import tensorflow as tf

    from headstart.shared.data.modelinput import model_resize

    failures: dict[int, Skipped] = {}
    empty = np.zeros((1, 1, 3), dtype=np.uint8)
    layer = model_resize(model, size)

    def decode(i: np.int64) -> np.ndarray:
        item = items[int(i)]
        result = read_image(store, item.key, item.label, target=size, max_pixels=max_pixels,
                            min_side=min_side)
        if isinstance(result, Skipped):
            failures[int(i)] = result
            return empty
        return result

    def load(i):
        image = tf.ensure_shape(tf.numpy_function(decode, [i], tf.uint8, stateful=False), [None, None, 3])
        return layer(tf.cast(image, tf.float32)[None])[0]  # the model's own resize, in float

    ds = tf.data.Dataset.range(len(items)).map(
        load, num_parallel_calls=workers, deterministic=True).prefetch(tf.data.AUTOTUNE)
    options = tf.data.Options()
    options.threading.private_threadpool_size = workers  # I/O-bound on remote stores
    for i, array in enumerate(ds.with_options(options).as_numpy_iterator()):
        yield failures.pop(i, None) or array


def load_split(store: Store, name: str, items: list[Item], labels: list[str], size: int,
               min_side: int = 8, max_pixels: int = MAX_PIXELS, workers: int | None = None,
               cache_dir: str | None = None, model: Any = None) -> LoadedSplit:
    """Decode ``items`` into a :class:`LoadedSplit`, skipping unusable files with a reason.

    Images are resized by ``model``'s own resize layer when given (a trained model, whatever
    its settings), else by the standard one every new model is built with."""
    index = {label: i for i, label in enumerate(labels)}
    out = allocate((len(items), size, size, 3), np.float32, cache_dir, "images")
    kept_labels: list[int] = []
    keys: list[str] = []
    skipped: list[Skipped] = []
    workers = workers or min(16, usable_cpus() * 4)
    progress = Progress(len(items), f"decode {name}", "img", log)
    for item, result in zip(items, _decoded(store, items, size, min_side, max_pixels, workers, model)):
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
