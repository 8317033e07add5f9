"""Epoch loop shared by both phases: early stopping, per-epoch checkpoints, SIGTERM, logs.

Epochs are loops of compiled train steps, so that after every epoch we can log throughput,
update early stopping and commit a checkpoint; a stop request abandons the epoch at the next
batch and leaves the last committed checkpoint for the rerun to resume from.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np

from headstart.shared.model.checkpoints import CheckpointStore
from headstart.shared.model.features import ArrayBatches
from headstart.shared.runtime.runner import STOP

log = logging.getLogger(__name__)


@dataclass
class PhaseConfig:
    name: str             # "head" or "fine_tune": checkpoint namespace
    epochs: int
    learning_rate: float
    patience: int
    label_smoothing: float = 0.0
    class_weights: list[float] | None = None  # loss weight per label index (training only)


@dataclass
class PhaseResult:
    history: dict[str, list[float]] = field(default_factory=dict)
    best_epoch: int = 0
    stopped_early: bool = False
    seconds: float = 0.0
    images_per_second: float = 0.0


def compile_model(model: keras.Model, learning_rate: float, label_smoothing: float = 0.0) -> None:
    # Sparse labels; label smoothing needs one-hot targets, so it goes through a custom loss.
    loss: Any = "sparse_categorical_crossentropy"
    if label_smoothing:
        loss = _smoothed_loss(label_smoothing)
    # No XLA: compiling takes seconds per shape, while these steps take milliseconds.
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=loss, metrics=["accuracy"],
                  jit_compile=False)


def _smoothed_loss(eps: float):
    cce = keras.losses.CategoricalCrossentropy(label_smoothing=eps)

    def loss(y_true, y_pred):
        n = keras.ops.shape(y_pred)[-1]
        return cce(keras.ops.one_hot(keras.ops.cast(keras.ops.reshape(y_true, (-1,)), "int32"), n), y_pred)

    return loss


def _fresh_state(phase: str) -> dict[str, Any]:
    return {"phase": phase, "epoch": 0, "history": {}, "best": math.inf, "best_epoch": 0, "wait": 0,
            "done": False}


def _log_epoch(cfg: PhaseConfig, epoch: int, logs: dict[str, float], rate: float, note: str) -> None:
    parts = " ".join(f"{k}={v:.4f}" for k, v in sorted(logs.items()))
    log.info("[%s] epoch %d/%d %s %.0f img/s%s", cfg.name, epoch, cfg.epochs, parts, rate, note)


def class_weight_list(weights: dict[str, float] | None, labels: list[str]) -> list[float] | None:
    """Per-index loss weights from a ``label -> weight`` mapping (unlisted labels weigh 1)."""
    if not weights:
        return None
    unknown = sorted(set(weights) - set(labels))
    if unknown:
        from headstart.shared.runtime.errors import UserError

        raise UserError(f"`class_weights` names labels not in the dataset: {unknown}; labels are "
                        f"{labels}. Received: class_weights={weights}")
    return [float(weights.get(label, 1.0)) for label in labels]


def _run_epoch(model: keras.Model, train: ArrayBatches, valid: ArrayBatches | None,
               class_weights: list[float] | None = None) -> dict[str, float]:
    """One pass of compiled train steps, then a validation pass; epoch-mean metrics.

    ``train_on_batch`` reuses one compiled step, so an epoch costs its batches and nothing
    else — on cached features the per-``fit`` setup would otherwise dominate.
    """
    sums: dict[str, float] = {}
    seen = 0
    for i in range(len(train)):
        STOP.check()  # the epoch is abandoned; the last committed checkpoint stays
        x, y = train[i]
        weight = None if class_weights is None else np.asarray(class_weights, "float32")[y]
        logs = model.train_on_batch(x, y, sample_weight=weight, return_dict=True)
        for k, v in logs.items():
            sums[k] = sums.get(k, 0.0) + float(v) * len(y)
        seen += len(y)
    out = {k: v / max(seen, 1) for k, v in sums.items()}
    if valid is not None:
        out.update({f"val_{k}": v for k, v in evaluate_batches(model, valid).items()})
    return out


def evaluate_batches(model: keras.Model, data: ArrayBatches) -> dict[str, float]:
    """Sample-weighted mean loss and accuracy over ``data`` without training."""
    sums, seen = {}, 0
    for i in range(len(data)):
        x, y = data[i]
        logs = model.test_on_batch(x, y, return_dict=True)
        for k, v in logs.items():
            sums[k] = sums.get(k, 0.0) + float(v) * len(y)
        seen += len(y)
    return {k: v / max(seen, 1) for k, v in sums.items()}


def run_phase(model: keras.Model, train: ArrayBatches, valid: ArrayBatches | None,
              cfg: PhaseConfig, ckpt: CheckpointStore, resume: dict[str, Any] | None) -> PhaseResult:
    """Train ``model`` for up to ``cfg.epochs``, resuming from ``resume`` when given."""
    compile_model(model, cfg.learning_rate, cfg.label_smoothing)
    state = _fresh_state(cfg.name)
    if resume and resume.get("phase") == cfg.name:
        state = resume
        ckpt.restore(state, model, model.optimizer)
        log.info("[%s] resuming after epoch %d (best val at epoch %d)", cfg.name, state["epoch"],
                 state["best_epoch"])
    monitor = "val_loss" if valid is not None else "loss"
    started = time.monotonic()
    n_seen = 0
    while not state["done"] and state["epoch"] < cfg.epochs:
        epoch = state["epoch"]
        train.set_epoch(epoch)
        t0 = time.monotonic()
        logs = _run_epoch(model, train, valid, cfg.class_weights)
        rate = len(train.labels) / max(time.monotonic() - t0, 1e-9)
        n_seen += len(train.labels)
        for k, v in logs.items():
            state["history"].setdefault(k, []).append(v)
        state["epoch"] = epoch + 1
        improved = logs[monitor] < state["best"] - 1e-6
        if improved:
            state["best"], state["best_epoch"], state["wait"] = logs[monitor], epoch + 1, 0
        else:
            state["wait"] += 1
        state["done"] = state["wait"] >= cfg.patience or state["epoch"] >= cfg.epochs
        _log_epoch(cfg, epoch + 1, logs, rate, " *" if improved else "")
        ckpt.save(state, model, model.optimizer, best_changed=improved)
    stopped_early = state["epoch"] < cfg.epochs
    best = state["best_epoch"]
    if stopped_early:
        log.info("[%s] early stop: no %s improvement for %d epochs; restoring epoch %d",
                 cfg.name, monitor, cfg.patience, best)
    elif best:  # epochs ran out: say which weights are kept, the last line may show others
        hist = state["history"].get(monitor, [])
        log.info("[%s] %d epochs done; restoring the best epoch %d (%s %.4f%s)", cfg.name,
                 state["epoch"], best, monitor, hist[best - 1] if len(hist) >= best else float("nan"),
                 "" if best == state["epoch"] else f"; the last epoch had {hist[-1]:.4f}")
    ckpt.restore_best(cfg.name, model)
    seconds = time.monotonic() - started
    return PhaseResult(state["history"], state["best_epoch"], stopped_early, seconds,
                       n_seen / seconds if seconds > 0 and n_seen else 0.0)
