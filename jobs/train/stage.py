"""The train job's one pass over its data: decoding streams into the frozen base.

With the default recipe (fast path, no fine-tuning) nothing after the base's one pass needs
pixels, so decoding is not kept: a :class:`~headstart.shared.data.loading.Prefetch` decodes
every split in order (started before TensorFlow is imported, so decoding overlaps the import
and the model build), the model's resize feeds batches to the base as they come, and only
the feature cache (memory-mapped) and the split metadata remain. Memory then stays flat in
the number of images. Every other configuration decodes each split into an array first
(:func:`headstart.shared.data.loading.load_split`): the slow path and fine-tuning feed
pixels to the base every epoch.

:func:`split_features` is the one place features of a split come from; a source of cached
feature shards plugs in beside it (same yielded triples).
"""
from __future__ import annotations

import logging
import os
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np

from headstart.shared.data.datasets import DatasetIndex, class_weight_list
from headstart.shared.data.loading import LoadedSplit, Prefetch, stream_split
from headstart.shared.storage.store import open_store

log = logging.getLogger("headstart.train")


def streams(spec: Any) -> bool:
    """True when the run needs no pixels after the frozen base's one pass (default recipe,
    fast path, no fine-tuning): decoding then streams into that pass."""
    return spec.recipe == "default" and spec.fast_path and not spec.fine_tune_layers


def process_age_s() -> float | None:
    """Seconds since this process started (Linux ``/proc``), or None where unknown: the
    command's own start, before the interpreter and the CLI imports."""
    try:
        with open("/proc/self/stat") as fh:
            start_ticks = float(fh.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as fh:
            uptime = float(fh.read().split()[0])
        return uptime - start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


@dataclass
class Clock:
    """Wall-clock stamps of one run, for ``metrics.json`` ``timing`` (seconds).

    Stamps count from the job's start; ``process_age_s`` is how long the process had run by
    then (interpreter start and CLI imports, for a ``headstart train`` command), so command
    start -> first decoded image is ``process_age_s + first_image_s``."""

    started: float = field(default_factory=time.monotonic)
    started_wall: float = field(default_factory=time.time)
    stages: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        age = process_age_s()
        if age is not None:
            self.stages["process_age_s"] = age

    def add(self, name: str, seconds: float) -> None:
        self.stages[name] = self.stages.get(name, 0.0) + seconds

    def at(self, name: str, wall: float | None) -> None:
        """Record when (``time.time()``) something happened, as seconds after the job started."""
        if wall is not None:
            self.stages[name] = wall - self.started_wall


def import_outputs_in_background() -> None:
    """Import what the outputs need (plots: matplotlib, ~0.3 s here) on a daemon thread while
    the base runs, off the critical path: the command's Keras import leaves matplotlib out
    (``headstart.shared.runtime.quickstart``), and the base's ops leave the interpreter free."""

    def load() -> None:
        try:
            import headstart.jobs.train.outputs  # noqa: F401 - imported for its side effect
        except Exception:  # noqa: BLE001 - imported again where used, which raises it there
            log.debug("background import of the outputs failed", exc_info=True)

    threading.Thread(target=load, name="import-outputs", daemon=True).start()


def start_decode(spec: Any, index: DatasetIndex, size: int) -> Prefetch:
    """Start decoding every split (in :func:`split_features`' order) on a thread pool."""
    items = [item for name in index.splits for item in index.splits[name]]
    return Prefetch(open_store(spec.dataset), items, size, spec.min_side, spec.max_pixels, early=True)


@dataclass
class _Waits:
    """Seconds the consumer spent waiting for the decode stream (the rest was the base)."""

    seconds: float = 0.0

    def timed(self, batches: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
        while True:
            t0 = time.monotonic()
            try:
                batch = next(batches)
            except StopIteration:
                self.seconds += time.monotonic() - t0
                return
            self.seconds += time.monotonic() - t0
            yield batch


def split_features(spec: Any, index: DatasetIndex, clf: Any, source: Prefetch, size: int,
                   waits: _Waits | None = None) -> Iterator[tuple[str, LoadedSplit, np.ndarray]]:
    """(split name, split metadata, pooled features ``(n, views, 1, 1, c)``) per split, in
    ``index`` order, streaming ``source``'s decoded images through ``clf``'s base once.
    Train gets ``1 + augment_views`` views, as the default recipe caches them. The default
    head starts with global average pooling, so only the means of the float16 maps are kept
    (float32): h x w times less cache (25x for MobileNetV2@160), the same bits as pooling them."""
    from headstart.shared.model.features import augmenter, extract_batch, extract_batches

    waits = waits or _Waits()
    store = open_store(spec.dataset)
    batch = extract_batch(clf.extractor, spec.batch_size or 0)
    for name, items in index.splits.items():
        stream = stream_split(store, name, items, index.labels, size, batch, spec.min_side,
                              spec.max_pixels, source=source)
        train = name == "train"
        views = 1 + spec.augment_views if train else 1
        aug = augmenter(spec.seed) if train and spec.augment_views else None
        maps = extract_batches(clf.extractor, waits.timed(iter(stream)), stream.total,
                               spec.batch_size or 0, f"features {name}", views, aug,
                               spec.cache_dir, memmap=True, pool=True)
        yield name, stream.split, maps


def streamed_pass(spec: Any, index: DatasetIndex, clf: Any, source: Prefetch, size: int,
                  clock: Clock) -> tuple[dict[str, LoadedSplit], dict[str, np.ndarray], Future | None]:
    """Every split through :func:`split_features`; times decode waits and the base apart.

    Once the splits the head is fitted on are cached, its choice starts on a thread of its
    own while the base runs over the rest (the test split): the returned future, or None
    when nothing was left to overlap (the recipe then chooses after the pass)."""
    from headstart.shared.model.selection_step import FIT_SPLITS, start_choice

    t0 = time.monotonic()
    waits = _Waits()
    splits: dict[str, LoadedSplit] = {}
    maps: dict[str, np.ndarray] = {}
    fit_on = [name for name in index.splits if name in FIT_SPLITS]
    choice: Future | None = None
    for name, split, feats in split_features(spec, index, clf, source, size, waits):
        splits[name] = split
        if len(feats):
            maps[name] = feats
        if choice is None and set(fit_on) <= set(splits) < set(index.splits) and "train" in maps:
            fit = {k: maps[k] for k in fit_on if k in maps}
            choice = start_choice(fit, {k: splits[k].labels for k in fit}, len(index.labels), seed=spec.seed,
                                  class_weights=class_weight_list(spec.class_weights, index.labels),
                                  label_smoothing=spec.label_smoothing)
    wall = time.monotonic() - t0
    # Overlapped: the base's share is the wall minus the waits for decoded batches.
    clock.add("decode_s", waits.seconds)
    clock.add("features_s", wall - waits.seconds)
    clock.at("first_image_s", source.first_at)
    log.info("decode + features: %d images in %.1fs (%.1fs waiting for decoded images)",
             sum(len(s) for s in splits.values()), wall, waits.seconds)
    return splits, maps, choice
