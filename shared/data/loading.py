"""Decode a split's images into the model's input, in parallel, keeping failures as data.

Each file is read through the store and decoded by the one decode path
(:func:`headstart.shared.data.images.read_image`, shrunk while decoding towards the input
size), then resized by the model's own resize layer (:mod:`headstart.shared.data.modelinput`):
the float32 result is exactly what the saved model feeds its backbone for that file, so
features, scores and probabilities computed from it equal ``model(decoded image)``.

Two stages, both bounded: :class:`Prefetch` decodes on a thread pool (Pillow and the
store's I/O release the GIL) at most :data:`AHEAD` images ahead of the consumer and needs
no TensorFlow, so a job can start it before TensorFlow is even imported (the train job
has a forked child decode while it imports: ``early``, :mod:`headstart.shared.data.earlydecode`);
the resize runs on runs of equal-shape images, one batched op each. :func:`stream_split`
hands the result on in batches (the train job's backbone pass consumes them as they come,
so memory does not grow with the split);
:func:`load_split` keeps every image (memory-mapped when large) for jobs that need them all.
Unusable files are skipped and returned with their reason, so a run lists every skipped
image instead of crashing on the first bad one.
"""
from __future__ import annotations

import csv
import functools
import io
import logging
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Mapping

import numpy as np

from headstart.shared.runtime.cpus import usable_cpus
from headstart.shared.data.datasets import Item
from headstart.shared.data.images import MAX_PIXELS, Skipped, read_image
from headstart.shared.data.readahead import read_ahead
from headstart.shared.data.scratch import allocate
from headstart.shared.runtime.logs import Progress
from headstart.shared.storage.store import Store

log = logging.getLogger(__name__)

# Decoded images waiting for the consumer, at most (uint8, already shrunk towards the input
# size while decoding: a few hundred kB each). Bounds the decode stage's memory.
AHEAD = 256
# Decoded images resized together, at most (float32 out, size x size x 3 each).
RESIZE_CHUNK = 64
# Decoded bytes in one resize call, at most: past a few MB the antialiased resize loses the
# cache (per 640x480 photo: 2.8 ms in calls of 4-8, 7.4 ms in calls of 64; 320x240: 1.0 ms
# in calls of 8-16, 1.9 ms in 64; measured here), below it the ~1.2 ms call overhead shows.
RESIZE_BYTES = 4 << 20


@dataclass
class LoadedSplit:
    """Decoded images of one split: ``images[i]`` has label index ``labels[i]``.

    A streamed split (:func:`stream_split`) keeps no pixels: ``images`` is empty and
    ``streamed`` is True; keys, labels and skipped files are complete once it was consumed."""

    name: str
    images: np.ndarray          # (n, size, size, 3) float32: the model's resize of each decoded image
    labels: np.ndarray          # (n,) int32
    keys: list[str]
    skipped: list[Skipped] = field(default_factory=list)
    streamed: bool = False

    def __len__(self) -> int:
        return len(self.keys)


def default_workers() -> int:
    """Decode threads: a few per usable CPU (reads from remote stores wait on the network)."""
    return min(16, usable_cpus() * 4)


class Prefetch:
    """Decode ``items`` in order on a thread pool, at most ``ahead`` images ahead of the reader.

    Starts decoding at construction (no TensorFlow needed). Read the results in order with
    :meth:`take`; :meth:`close` cancels what is still queued.
    """

    def __init__(self, store: Store, items: list[Item], size: int, min_side: int = 8,
                 max_pixels: int = MAX_PIXELS, workers: int | None = None, ahead: int = AHEAD,
                 early: bool = False) -> None:
        self.items, self.size, self.min_side, self.max_pixels = items, size, min_side, max_pixels
        self.store, self.ahead = store, ahead
        self.first_at: float | None = None  # time.time() when the first image was decoded
        self._early: Any = None
        if early:  # a forked child decodes until the first take (see data.earlydecode)
            from headstart.shared.data import earlydecode

            if earlydecode.usable(store):
                self._early = earlydecode.EarlyDecode(store, items, size, min_side, max_pixels)
        self._pool = ThreadPoolExecutor(workers or default_workers(), thread_name_prefix="decode")
        self._queue: deque[Future] = deque()
        self._next = self._read = 0
        if self._early is None:
            self._fill()

    def _decode(self, i: int, item: Item) -> np.ndarray | Skipped:
        result = self._early.get(i) if self._early is not None else None
        if result is None:
            result = read_image(self.store, item.key, item.label, target=self.size,
                                max_pixels=self.max_pixels, min_side=self.min_side)
        if self.first_at is None:
            self.first_at = time.time()
        return result

    def _fill(self) -> None:
        while self._next < len(self.items) and len(self._queue) < self.ahead:
            self._queue.append(self._pool.submit(self._decode, self._next, self.items[self._next]))
            self._next += 1

    def _start(self) -> None:
        """At the first take: stop the early child, keep what it decoded, decode on here."""
        if self._early is not None and not self._queue and self._next == 0:
            done = self._early.stop()
            self.first_at = self._early.first_at
            log.info("early decode: %d of %d images decoded while TensorFlow loaded", done, len(self.items))
            self._fill()

    def take(self, n: int) -> Iterator[np.ndarray | Skipped]:
        """The next ``n`` results, in item order."""
        self._start()
        for _ in range(n):
            if not self._queue:
                raise IndexError("Prefetch.take past the last item")
            result = self._queue.popleft().result()
            self._read += 1
            self._fill()
            yield result

    def close(self) -> None:
        """Stop decoding: queued items are dropped, running ones finish in the background."""
        for fut in self._queue:
            fut.cancel()
        self._queue.clear()
        if self._early is not None:  # running decodes may still read the map: wait for them
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._early.close()
        else:
            self._pool.shutdown(wait=False, cancel_futures=True)


@functools.lru_cache(maxsize=8)
def _standard_resize(size: int) -> Any:
    """One batch resizer per input size for new models (every split of a run shares it: a
    graph function made per split is traced again each time, and TensorFlow warns of it)."""
    from headstart.shared.data.modelinput import batch_resizer

    return batch_resizer(size)


def _resized(source: Iterator[np.ndarray | Skipped], size: int, model: Any = None,
             chunk: int = RESIZE_CHUNK) -> Iterator[np.ndarray | Skipped]:
    """The model's own resize of each decoded image, in order; a failure passes through.

    Up to ``chunk`` images are read at a time and every run of equal-shape images in them
    (all of a uniform dataset's) is resized in batches of up to :data:`RESIZE_BYTES`: one op
    call for several images, where one call an image cost ~1.2 ms of per-call overhead each
    and, on flowers5 (4,317 photos), most of the time the train job waited for decoded
    images. Resizing is per image, so a batch's rows are the single-image results."""
    from headstart.shared.data.modelinput import batch_resizer

    run = _standard_resize(size) if model is None else batch_resizer(size, model)

    def flush(pending: list) -> Iterator[np.ndarray | Skipped]:
        i = 0
        while i < len(pending):
            if isinstance(pending[i], Skipped):
                yield pending[i]
                i += 1
                continue
            j, most = i + 1, i + max(1, RESIZE_BYTES // pending[i].nbytes)
            while j < min(len(pending), most) and not isinstance(pending[j], Skipped) \
                    and pending[j].shape == pending[i].shape:
                j += 1
            yield from run(np.stack(pending[i:j]))
            i = j

    pending: list = []
    for result in source:
        pending.append(result)
        if len(pending) == chunk:
            yield from flush(pending)
            pending = []
    yield from flush(pending)


def _kept(store: Store, name: str, items: list[Item], labels: list[str], size: int, min_side: int,
          max_pixels: int, workers: int | None, model: Any, source: Prefetch | None,
          split: LoadedSplit) -> Iterator[np.ndarray]:
    """Usable images of ``items`` in order; keys, labels and skipped files go into ``split``."""
    index = {label: i for i, label in enumerate(labels)}
    workers = workers or default_workers()
    own = source is None
    prefetch = source or Prefetch(store, items, size, min_side, max_pixels, workers)
    kept_labels: list[int] = []
    progress = Progress(len(items), f"decode {name}", "img", log)
    try:
        results = _resized(prefetch.take(len(items)), size, model)
        for item, result in zip(items, results):
            if isinstance(result, Skipped):
                split.skipped.append(result)
                log.warning("skipping %s: %s (%s)", item.key, result.status, result.reason)
                progress.update(1, failed=1)
                continue
            split.keys.append(item.key)
            kept_labels.append(index[item.label])
            progress.update(1)
            yield result
    finally:
        split.labels = np.asarray(kept_labels, dtype=np.int32)
        if own:
            prefetch.close()
    progress.close()


def load_split(store: Store, name: str, items: list[Item], labels: list[str], size: int,
               min_side: int = 8, max_pixels: int = MAX_PIXELS, workers: int | None = None,
               cache_dir: str | None = None, model: Any = None,
               source: Prefetch | None = None) -> LoadedSplit:
    """Decode ``items`` into a :class:`LoadedSplit`, skipping unusable files with a reason.

    Images are resized by ``model``'s own resize layer when given (a trained model, whatever
    its settings), else by the standard one every new model is built with. ``source``: a
    :class:`Prefetch` already decoding these items (next in its order)."""
    out = allocate((len(items), size, size, 3), np.float32, cache_dir, "images")
    split = LoadedSplit(name, out[:0], np.zeros(0, np.int32), [])
    for i, image in enumerate(_kept(store, name, items, labels, size, min_side, max_pixels,
                                    workers, model, source, split)):
        out[i] = image
    split.images = out[: len(split.keys)]
    return split


@dataclass
class SplitStream:
    """One pass over a split's usable images in float32 batches of ``batch`` (the last may be
    shorter); :attr:`split` holds the keys, labels and skipped files (complete at the end)."""

    split: LoadedSplit
    total: int                      # items of the split (an upper bound on the usable images)
    batches: Iterator[np.ndarray]

    def __iter__(self) -> Iterator[np.ndarray]:
        return self.batches


def stream_split(store: Store, name: str, items: list[Item], labels: list[str], size: int,
                 batch: int, min_side: int = 8, max_pixels: int = MAX_PIXELS,
                 workers: int | None = None, model: Any = None,
                 source: Prefetch | None = None) -> SplitStream:
    """Like :func:`load_split`, but hands the images on in batches instead of keeping them:
    at most about :data:`AHEAD` + :data:`RESIZE_CHUNK` + ``batch`` images are held at once."""
    size_bytes = size * size * 3
    split = LoadedSplit(name, np.zeros((0, size, size, 3), np.float32), np.zeros(0, np.int32), [],
                        streamed=True)

    def batches() -> Iterator[np.ndarray]:
        buf = np.empty((batch, size, size, 3), np.float32)
        n = 0
        for image in _kept(store, name, items, labels, size, min_side, max_pixels, workers, model,
                           source, split):
            buf[n] = image
            n += 1
            if n == batch:
                yield buf.copy()  # the consumer may keep it (e.g. an async backbone call)
                n = 0
        if n:
            yield buf[:n].copy()

    log.debug("streaming %s: %d images, batches of %d (%.1f MB each)", name, len(items), batch,
              batch * size_bytes * 4 / 1e6)
    # Resized on a thread of its own, two batches ahead: the resize overlaps the consumer's
    # backbone calls (mixed-size set: 4.0 s of the consumer's waits were the resize).
    return SplitStream(split, len(items), read_ahead(batches(), 2, f"stream-{name}"))


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
