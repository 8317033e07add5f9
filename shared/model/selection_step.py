"""The default recipe's head phase: cache features, choose the head by CV, swap it in.

Train and valid images are pooled together for the k-fold choice and the refit (the
early-stopping split of the reference recipe is not needed: the number of steps is chosen by
cross-validation), so valid metrics of such a run are in-sample; the test split is untouched.

The choice needs only the train and valid maps, so the train job starts it on a thread of its
own (:func:`start_choice`) as soon as those are cached, while the base runs over the test
split; :func:`selected_head` then waits for it. The result is the same either way: the
choice's bits do not depend on its BLAS threads.
"""
from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass

import numpy as np

from headstart.shared.data.loading import LoadedSplit
from headstart.shared.model.classifier import Classifier, after_pooling, with_head
from headstart.shared.model.features import augmenter, extract_features
from headstart.shared.model.selection import (THREADED_ROWS, Selection, cross_val_probs, keras_head, pooled,
                                              select_head, threads_for)
from headstart.shared.runtime.cpus import idle_cpus, usable_cpus
from headstart.shared.model.training import PhaseResult
from headstart.shared.model.blas import blas_threads

log = logging.getLogger(__name__)

FIT_SPLITS = ("train", "valid")  # what the head is chosen and refitted on


@dataclass(kw_only=True)
class Choice:
    """The chosen, refitted head and what calibration and scoring reuse from choosing it."""

    selection: Selection
    held_out: tuple[np.ndarray, np.ndarray]  # out-of-fold (probabilities, labels), plain views
    pooled: dict[str, np.ndarray]  # plain-view pooled features (n, d) of the fit splits
    seconds: float


def choose(maps: dict[str, np.ndarray], labels: dict[str, np.ndarray], n_classes: int, *, seed: int,
           class_weights: list[float] | None, label_smoothing: float,
           threads: int | None = None) -> Choice:
    """Choose and refit the head on the pooled maps ``(n, views, h, w, c)`` of the fit splits
    present in ``maps`` (labels per split in ``labels``). ``threads``: BLAS threads (None: by
    the rows and the CPUs idle now)."""
    t0 = time.monotonic()
    rows, ys, groups, plain, plain_pooled = [], [], [], [], {}
    offset = 0
    for name in (s for s in FIT_SPLITS if s in maps):
        feats = pooled(maps[name])  # (n, views, d)
        n, v = feats.shape[:2]
        plain_pooled[name] = feats[:, 0]
        rows.append(feats.reshape(n * v, -1))
        ys.append(np.repeat(labels[name], v))
        groups.append(np.repeat(np.arange(n) + offset, v))
        plain.append(np.tile(np.arange(v) == 0, n))
        offset += n
    x, y, keep = np.concatenate(rows), np.concatenate(ys), np.concatenate(plain)
    if threads is None:
        idle = idle_cpus(0.1) if len(x) >= THREADED_ROWS else None  # only asked where it may thread
        threads = threads_for(len(x), usable_cpus(), idle)
    with blas_threads(threads):  # the bits do not depend on it
        sel = select_head(x, y, n_classes, seed=seed, groups=np.concatenate(groups), eval_rows=keep,
                          class_weights=class_weights, label_smoothing=label_smoothing)
        # Calibration needs probabilities the head has not been fitted on: the chosen
        # configuration's out-of-fold ones from the cross-validation (plain views), else
        # (too few images to cross-validate) those of 2-fold heads of it.
        held = sel.held_out
        if held is None:
            held = (cross_val_probs(x[keep], y[keep], n_classes, seed=seed, folds=sel.folds, c=sel.chosen.c,
                                    steps=sel.chosen.steps, kind=sel.chosen.kind, width=sel.chosen.width),
                    y[keep])
    return Choice(selection=sel, held_out=held, pooled=plain_pooled, seconds=time.monotonic() - t0)


def start_choice(maps: dict[str, np.ndarray], labels: dict[str, np.ndarray], n_classes: int, *,
                 seed: int, class_weights: list[float] | None, label_smoothing: float) -> Future:
    """:func:`choose` on a thread of its own, with one BLAS thread: the caller's backbone pass
    keeps the cores busy meanwhile (a second BLAS thread would only contend with it). A daemon
    thread: a run stopped meanwhile exits at once instead of finishing a choice it will not use
    (the choice writes nothing)."""
    future: Future = Future()

    def run() -> None:
        if not future.set_running_or_notify_cancel():
            return
        try:
            future.set_result(choose(maps, labels, n_classes, seed=seed, class_weights=class_weights,
                                     label_smoothing=label_smoothing, threads=1))
        except BaseException as exc:  # noqa: BLE001 - raised where the head phase waits for it
            future.set_exception(exc)

    threading.Thread(target=run, name="head-choice", daemon=True).start()
    return future


def selected_head(clf: Classifier, splits: dict[str, LoadedSplit], cfg, result,
                  maps: dict[str, np.ndarray] | None = None, choice: Future | None = None) -> None:
    """Fill ``result`` (pooled features and their scorer, selection, a one-point history) and
    give ``clf`` the chosen head.

    ``maps``: the split's cached feature maps ``(n, views, h, w, c)`` when the caller already
    ran the base (the train job streams decoding into it and keeps them pooled, h = w = 1);
    else they are extracted here. ``choice``: a :func:`start_choice` already running on those
    maps; else chosen here."""
    if maps is None:
        t0 = time.monotonic()
        maps = plain_features(clf, splits, cfg)
        result.timing["features_s"] = time.monotonic() - t0
    n_classes = int(clf.head.output.shape[-1])
    t1 = time.monotonic()
    if choice is None:
        done = choose(maps, {k: splits[k].labels for k in FIT_SPLITS if k in maps}, n_classes, seed=cfg.seed,
                      class_weights=cfg.class_weights, label_smoothing=cfg.label_smoothing)
    else:
        done = choice.result()
    sel = done.selection
    layers = keras_head(sel, n_classes)
    with_head(clf, layers)
    # Scored on pooled features: the head's layers after its global average pooling.
    result.features = {k: done.pooled[k] if k in done.pooled else pooled(v)[:, 0]
                       for k, v in maps.items() if len(v)}
    result.scorer = after_pooling(layers, int(clf.extractor.output.shape[-1]))
    seconds = time.monotonic() - t1  # the head phase on the critical path (the wait, if overlapped)
    result.held_out = done.held_out
    result.selection = sel
    result.timing["selection_s"] = done.seconds
    result.phase_starts["head"] = 0
    result.history = {"loss": list(sel.history)}
    n_fit = sum(len(done.pooled[k]) for k in done.pooled)
    result.phases["head"] = PhaseResult({"loss": list(sel.history)}, len(sel.history), False, seconds,
                                        n_fit / done.seconds if done.seconds > 0 else 0.0)


def plain_features(clf: Classifier, splits: dict[str, LoadedSplit], cfg) -> dict[str, np.ndarray]:
    """The default recipe's features of decoded splits: train with its augmented views."""
    views = 1 + cfg.augment_views
    aug = augmenter(cfg.seed) if cfg.augment_views else None
    maps = {"train": extract_features(clf.extractor, splits["train"].images, cfg.batch_size,
                                      "features train", views, aug, cfg.cache_dir)}
    for name in ("valid", "test"):
        if name in splits and len(splits[name]):
            maps[name] = extract_features(clf.extractor, splits[name].images, cfg.batch_size,
                                          f"features {name}", cache_dir=cfg.cache_dir)
    return maps
