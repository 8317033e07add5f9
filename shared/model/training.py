"""Epoch loop shared by both phases: early stopping, timed checkpoints, SIGTERM, logs.

An epoch runs its batches in chunks of compiled steps: one call into the graph runs a whole
chunk (up to ``CHUNK_BYTES`` of batches), so on cached features an epoch costs its arithmetic,
not a Python round trip per batch. After every epoch we log throughput, update early stopping
and take an in-memory snapshot; the snapshot is committed to the store at the first epoch, then
at most every ``CHECKPOINT_EVERY_S``, at the phase end and when a stop is requested (a write per
sub-second epoch would cost more than the epoch, and each is an S3 upload in the cloud). A stop
request abandons the epoch at the next chunk and commits the last epoch's snapshot.
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
from headstart.shared.runtime.errors import Interrupted
from headstart.shared.runtime.stop import STOP

log = logging.getLogger(__name__)

CHECKPOINT_EVERY_S = 30.0
CHUNK_BYTES = 32 * 2**20   # batches per compiled call: bounded memory, few calls per epoch
_MANY_STEPS = 2**30        # steps_per_execution: a call runs until its chunk is exhausted


@dataclass(frozen=True, kw_only=True)
class PhaseConfig:
    name: str             # "head" or "fine_tune": checkpoint namespace
    epochs: int
    learning_rate: float
    patience: int
    label_smoothing: float
    class_weights: list[float] | None  # loss weight per label index (training only)


@dataclass
class PhaseResult:
    history: dict[str, list[float]] = field(default_factory=dict)
    best_epoch: int = 0
    stopped_early: bool = False
    seconds: float = 0.0
    images_per_second: float = 0.0


def compile_model(model: keras.Model, learning_rate: float, label_smoothing: float = 0.0) -> None:
    """Adam, (smoothed) sparse cross-entropy and accuracy; steps run many per graph call."""
    # Sparse labels; label smoothing needs one-hot targets, so it goes through a custom loss.
    loss: Any = "sparse_categorical_crossentropy"
    if label_smoothing:
        loss = _smoothed_loss(label_smoothing)
    # No XLA: compiling takes seconds per shape, while these steps take milliseconds.
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=loss, metrics=["accuracy"],
                  jit_compile=False, steps_per_execution=_MANY_STEPS)


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


def _chunks(train: ArrayBatches, class_weights: list[float] | None, first: int):
    """Consecutive same-shape batches from ``first`` on, grouped up to ``CHUNK_BYTES``."""
    weights = None if class_weights is None else np.asarray(class_weights, "float32")
    chunk: list[tuple] = []
    size = 0
    for i in range(first, len(train)):
        x, y = train[i]
        batch = (x, y) if weights is None else (x, y, weights[y])
        if chunk and (size + x.nbytes > CHUNK_BYTES or x.shape != chunk[0][0].shape):
            yield chunk
            chunk, size = [], 0
        chunk.append(batch)
        size += x.nbytes
    if chunk:
        yield chunk


def _run_chunk(model: keras.Model, chunk: list[tuple]) -> None:
    """Run the chunk's train steps in one compiled call (Keras's own multi-step loop)."""
    import tensorflow as tf

    stacked = tuple(np.stack(parts) for parts in zip(*chunk))
    data = tf.data.Dataset.from_tensor_slices(stacked)
    model.train_function(iter(data))


def _run_epoch(model: keras.Model, train: ArrayBatches, valid: ArrayBatches | None,
               class_weights: list[float] | None = None) -> dict[str, float]:
    """One pass of compiled train steps, then a validation pass; epoch-mean metrics.

    The first batch goes through ``train_on_batch`` (which builds the step and resets the
    metrics); the rest run in chunks, the metrics accumulating over the epoch.
    """
    STOP.check()  # the epoch is abandoned; the last epoch's snapshot is committed
    x, y = train[0]
    weight = None if class_weights is None else np.asarray(class_weights, "float32")[y]
    model.train_on_batch(x, y, sample_weight=weight)
    for chunk in _chunks(train, class_weights, 1):
        STOP.check()
        _run_chunk(model, chunk)
    out = {k: float(v) for k, v in model.get_metrics_result().items()}
    if valid is not None:
        out.update({f"val_{k}": v for k, v in evaluate_batches(model, valid).items()})
    return out


def evaluate_batches(model: keras.Model, data: ArrayBatches) -> dict[str, float]:
    """Sample-weighted mean loss and accuracy over ``data`` without training."""
    sums: dict[str, float] = {}
    seen = 0
    for i in range(len(data)):
        x, y = data[i]
        logs = model.test_on_batch(x, y, return_dict=True)
        for k, v in logs.items():
            sums[k] = sums.get(k, 0.0) + float(v) * len(y)
        seen += len(y)
    return {k: v / max(seen, 1) for k, v in sums.items()}


class _Snapshot:
    """Weights and optimizer variables copied at an epoch end (duck-types what
    :meth:`CheckpointStore.save` reads), so a later commit writes that epoch exactly."""

    def __init__(self, model: keras.Model, optimizer, state: dict[str, Any]) -> None:
        self.weights = model.get_weights()
        self.variables = [np.array(v) for v in optimizer.variables]
        self.state = {**state, "history": {k: list(v) for k, v in state["history"].items()}}

    def get_weights(self) -> list[np.ndarray]:
        return self.weights


class _TimedCheckpoints:
    """Commit epoch snapshots at the first epoch, then at most every ``CHECKPOINT_EVERY_S``,
    at the phase end and on a stop request; best weights follow the committed state."""

    def __init__(self, ckpt: CheckpointStore) -> None:
        self.ckpt = ckpt
        self.last = -math.inf
        self.pending: _Snapshot | None = None
        self.best: list[np.ndarray] | None = None  # best weights not yet written

    def epoch_end(self, model: keras.Model, state: dict[str, Any], improved: bool) -> None:
        snap = _Snapshot(model, model.optimizer, state)
        if improved:
            self.best = snap.weights
        self.pending = snap
        if state["done"] or STOP.requested or time.monotonic() - self.last >= CHECKPOINT_EVERY_S:
            self.commit()

    def commit(self) -> None:
        snap, self.pending = self.pending, None
        if snap is None:
            return
        if self.best is not None and self.best is not snap.weights:
            self.ckpt.save_best(snap.state["phase"], self.best)
        self.ckpt.save(snap.state, snap, snap, best_changed=self.best is snap.weights)
        self.best = None
        self.last = time.monotonic()


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
    saver = _TimedCheckpoints(ckpt)
    try:
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
            saver.epoch_end(model, state, improved)
    except Interrupted:
        saver.commit()  # the last finished epoch, so the rerun loses at most the epoch in flight
        raise
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
