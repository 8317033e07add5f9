"""The training recipe: head phase (fast or slow path), optional fine-tuning phase.

Fast path: the frozen base runs once per image (per augmented view) and the head trains on
the cached maps. Slow path: every batch goes through the base, as in the reference
notebook. Both update the same head layers, so the saved model is identical in form.
"""
from __future__ import annotations

import logging
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np

from headstart.shared.model.checkpoints import CheckpointStore
from headstart.shared.model.features import ArrayBatches, augmenter, extract_features
from headstart.shared.model import accelerate
from headstart.shared.model.pooled import pooled_head, stats_extractor
from headstart.shared.data.loading import LoadedSplit
from headstart.shared.model.classifier import Classifier
from headstart.shared.model.training import PhaseConfig, PhaseResult, run_phase
from headstart.shared.runtime.config import FromSpec

log = logging.getLogger(__name__)

# Validation/scoring batches: inference only (BatchNorm frozen), so the size changes nothing
# but the number of calls.
EVAL_BATCH = 256


@dataclass(frozen=True, kw_only=True)
class RecipeConfig(FromSpec):
    """The recipe's knobs, named and defaulted by the train spec: build it with
    ``RecipeConfig.from_spec(spec, class_weights=...)`` (no defaults of its own to drift)."""

    epochs: int
    batch_size: int
    learning_rate: float
    patience: int
    label_smoothing: float
    fast_path: bool
    augment_views: int
    fine_tune_layers: int
    fine_tune_epochs: int
    fine_tune_lr: float
    seed: int
    cache_dir: str | None
    class_weights: list[float] | None  # per label index (the spec holds label -> weight)
    # Cache per-channel pooled statistics instead of spatial maps when the head starts with
    # [Dropout ->] GAP (see headstart.shared.model.pooled); False: the reference head exactly.
    pooled_cache: bool
    accelerate: str  # mixed precision + XLA for the frozen pass: auto (GPU) | on | off
    # "default": the head is chosen by cross-validation on cached features (selection.py);
    # "reference": the reference notebook's head and schedule, exactly as before.
    recipe: str


@dataclass
class RecipeResult:
    history: dict[str, list[float]] = field(default_factory=dict)
    phase_starts: dict[str, int] = field(default_factory=dict)
    phases: dict[str, PhaseResult] = field(default_factory=dict)
    timing: dict[str, float] = field(default_factory=dict)
    # Cached view-0 features per split, valid while the base is untouched (no fine-tuning);
    # the default recipe keeps them pooled, (n, channels).
    features: dict[str, np.ndarray] = field(default_factory=dict)
    selection: Any = None  # selection.Selection of the default recipe (what was chosen and why)
    # The model that scores ``features`` (the head, its pooled-statistics twin, or the
    # default recipe's head after its pooling layer).
    scorer: keras.Model | None = None
    # Out-of-sample (probabilities, labels) for calibration when valid was part of the fit
    # (the default recipe refits on train+valid, so valid probabilities are in-sample).
    held_out: tuple[np.ndarray, np.ndarray] | None = None


def default_batch_size(n_train: int) -> int:
    """32, or smaller for small datasets so an epoch still holds a dozen or more updates
    (measured on flowers5 with 20 images per label: 0.52 test accuracy at 32, 0.57 at 8;
    with all images 32 stays best)."""
    if n_train < 128:
        return 8
    return 16 if n_train < 256 else 32


def _merge(result: RecipeResult, name: str, phase: PhaseResult) -> None:
    result.phase_starts[name] = len(result.history.get("loss", []))
    for k, v in phase.history.items():
        result.history.setdefault(k, []).extend(v)
    result.phases[name] = phase


def _head_phase_data(clf: Classifier, splits: dict[str, LoadedSplit], cfg: RecipeConfig,
                     result: RecipeResult) -> tuple[keras.Model, ArrayBatches, ArrayBatches | None]:
    train, valid = splits["train"], splits.get("valid")
    aug = augmenter(cfg.seed) if cfg.augment_views else None
    if not cfg.fast_path:
        if cfg.augment_views:
            log.info("slow path: augmentation applied on the fly to every batch")
        tr = ArrayBatches(train.images, train.labels, cfg.batch_size, cfg.seed, augment=aug)
        va = ArrayBatches(valid.images, valid.labels, cfg.batch_size, cfg.seed, shuffle=False) if valid else None
        return clf.model, tr, va
    t0 = time.monotonic()
    views = 1 + cfg.augment_views
    if cfg.augment_views:
        log.info("fast path with augmentation: caching %d augmented view(s) per training image; "
                 "each epoch draws one view per image", cfg.augment_views)
    model, extractor = clf.head, clf.extractor
    fast = accelerate.wanted(cfg.accelerate)
    if fast:
        extractor = accelerate.mixed_extractor(clf.extractor, clf.backbone)
        log.info("frozen backbone pass: mixed precision (float16) + XLA")
    pooled = pooled_head(clf, cfg.seed) if cfg.pooled_cache else None
    if pooled is not None:  # GAP moved into the cache: (2, c) statistics per image
        model, extractor = pooled, stats_extractor(extractor)
        log.info("fast path: caching pooled feature statistics (head starts with GAP)")
    feats = {"train": extract_features(extractor, train.images, cfg.batch_size,
                                       "features train", views, aug, cfg.cache_dir, jit=fast)}
    for name in ("valid", "test"):
        if name in splits and len(splits[name]):
            feats[name] = extract_features(extractor, splits[name].images, cfg.batch_size,
                                           f"features {name}", cache_dir=cfg.cache_dir, jit=fast)
    result.timing["features_s"] = time.monotonic() - t0
    result.features = {k: v[:, 0] for k, v in feats.items()}
    result.scorer = model
    tr = ArrayBatches(feats["train"], train.labels, cfg.batch_size, cfg.seed, has_views=True)
    va = (ArrayBatches(result.features["valid"], valid.labels, max(cfg.batch_size, EVAL_BATCH),
                       cfg.seed, shuffle=False) if valid else None)
    return model, tr, va


def unfreeze_top(backbone: keras.Model, n_layers: int) -> int:
    """Make the top ``n_layers`` weight-bearing layers trainable; BatchNorm stays frozen."""
    backbone.trainable = True
    weighted = [layer for layer in backbone.layers if layer.weights]
    top = {id(layer) for layer in weighted[-n_layers:]} if n_layers else set()
    count = 0
    for layer in backbone.layers:
        trainable = id(layer) in top and not isinstance(layer, keras.layers.BatchNormalization)
        layer.trainable = trainable
        count += int(trainable)
    return count


def fit(clf: Classifier, splits: dict[str, LoadedSplit], cfg: RecipeConfig,
        ckpt: CheckpointStore, maps: dict[str, np.ndarray] | None = None,
        choice: Future | None = None) -> RecipeResult:
    """Run the head phase and, when asked, the fine-tuning phase; resumes from ``ckpt``.

    ``maps``: the default recipe's feature maps per split, when the caller computed them
    (streamed splits hold no pixels; see ``headstart.jobs.train.stage``); ``choice``: its
    head choice already started on them (``selection_step.start_choice``)."""
    result = RecipeResult()
    resume: dict[str, Any] | None = ckpt.load_state()
    if cfg.recipe == "default":
        # Deterministic and seconds long: rerun on resume too, so the head matches the checkpoint.
        from headstart.shared.model.selection_step import selected_head

        selected_head(clf, splits, cfg, result, maps, choice)
    elif resume and resume.get("phase") == "fine_tune":
        log.info("head phase already complete: restoring its best weights")
        ckpt.restore_best("head", clf.head)
        result.phase_starts["head"] = 0
    else:
        model, tr, va = _head_phase_data(clf, splits, cfg, result)
        phase = PhaseConfig(name="head", epochs=cfg.epochs, learning_rate=cfg.learning_rate,
                            patience=cfg.patience, label_smoothing=cfg.label_smoothing,
                            class_weights=cfg.class_weights)
        _merge(result, "head", run_phase(model, tr, va, phase, ckpt, resume))
    if cfg.fine_tune_layers:
        _fine_tune(clf, splits, cfg, ckpt, resume, result)
    return result


def _fine_tune(clf: Classifier, splits: dict[str, LoadedSplit], cfg: RecipeConfig,
               ckpt: CheckpointStore, resume: dict[str, Any] | None, result: RecipeResult) -> None:
    n = unfreeze_top(clf.backbone, cfg.fine_tune_layers)
    log.info("fine-tuning phase: %d base layers unfrozen (BatchNorm kept in inference mode), "
             "lr=%g; images go through the base every step", n, cfg.fine_tune_lr)
    train, valid = splits["train"], splits.get("valid")
    aug = augmenter(cfg.seed + 100) if cfg.augment_views else None
    tr = ArrayBatches(train.images, train.labels, cfg.batch_size, cfg.seed + 1, augment=aug)
    va = ArrayBatches(valid.images, valid.labels, cfg.batch_size, cfg.seed, shuffle=False) if valid else None
    phase = PhaseConfig(name="fine_tune", epochs=cfg.fine_tune_epochs, learning_rate=cfg.fine_tune_lr,
                        patience=cfg.patience, label_smoothing=cfg.label_smoothing,
                        class_weights=cfg.class_weights)
    _merge(result, "fine_tune", run_phase(clf.model, tr, va, phase, ckpt, resume))
    result.features, result.scorer = {}, None  # the base changed: cached features are stale
