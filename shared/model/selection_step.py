"""The default recipe's head phase: cache features, choose the head by CV, swap it in.

Train and valid images are pooled together for the k-fold choice and the refit (the
early-stopping split of the reference recipe is not needed: the number of steps is chosen by
cross-validation), so valid metrics of such a run are in-sample; the test split is untouched.
"""
from __future__ import annotations

import logging
import time

import numpy as np

from headstart.shared.data.loading import LoadedSplit
from headstart.shared.model.classifier import Classifier, with_head
from headstart.shared.model.features import augmenter, extract_features
from headstart.shared.model.selection import (THREADED_ROWS, cross_val_probs, keras_head, pooled, select_head,
                                              threads_for)
from headstart.shared.runtime.cpus import idle_cpus, usable_cpus
from headstart.shared.model.training import PhaseResult
from headstart.shared.model.blas import blas_threads

log = logging.getLogger(__name__)


def selected_head(clf: Classifier, splits: dict[str, LoadedSplit], cfg, result,
                  maps: dict[str, np.ndarray] | None = None) -> None:
    """Fill ``result`` (features, selection, a one-point history) and give ``clf`` the chosen head.

    ``maps``: the split's cached feature maps ``(n, views, h, w, c)`` when the caller already
    ran the base (the train job streams decoding into it); else they are extracted here."""
    if maps is None:
        t0 = time.monotonic()
        maps = plain_features(clf, splits, cfg)
        result.timing["features_s"] = time.monotonic() - t0
    result.features = {k: v[:, 0] for k, v in maps.items() if len(v)}
    fit_on = [s for s in ("train", "valid") if s in maps]
    rows, labels, groups, plain = [], [], [], []
    offset = 0
    for name in fit_on:
        feats = pooled(maps[name])  # (n, views, d)
        n, v = feats.shape[:2]
        rows.append(feats.reshape(n * v, -1))
        labels.append(np.repeat(splits[name].labels, v))
        groups.append(np.repeat(np.arange(n) + offset, v))
        plain.append(np.tile(np.arange(v) == 0, n))
        offset += n
    t1 = time.monotonic()
    n_classes = int(clf.head.output.shape[-1])
    n_rows = sum(len(r) for r in rows)
    idle = idle_cpus(0.1) if n_rows >= THREADED_ROWS else None  # only asked where it may thread
    with blas_threads(threads_for(n_rows, usable_cpus(), idle)):  # the bits do not depend on it
        sel = select_head(np.concatenate(rows), np.concatenate(labels), n_classes, seed=cfg.seed,
                          groups=np.concatenate(groups),
                          eval_rows=np.concatenate(plain), class_weights=cfg.class_weights,
                          label_smoothing=cfg.label_smoothing)
        # Calibration needs probabilities the head has not been fitted on: the chosen
        # configuration's out-of-fold ones from the cross-validation (plain views), else
        # (too few images to cross-validate) those of 2-fold heads of it.
        result.held_out = sel.held_out
        if result.held_out is None:
            keep = np.concatenate(plain)
            x, y = np.concatenate(rows)[keep], np.concatenate(labels)[keep]
            result.held_out = (cross_val_probs(x, y, n_classes, seed=cfg.seed, folds=sel.folds, c=sel.chosen.c,
                                               steps=sel.chosen.steps, kind=sel.chosen.kind,
                                               width=sel.chosen.width), y)
    seconds = time.monotonic() - t1
    with_head(clf, keras_head(sel, n_classes))
    result.selection = sel
    result.timing["selection_s"] = seconds
    result.phase_starts["head"] = 0
    result.history = {"loss": list(sel.history)}
    result.phases["head"] = PhaseResult({"loss": list(sel.history)}, len(sel.history), False, seconds,
                                        offset / seconds if seconds > 0 else 0.0)


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
