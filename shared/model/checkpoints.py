"""Per-epoch checkpoints in the output store, so a rerun resumes after a spot interruption.

A checkpoint is the trainable model's weights plus the optimizer's variables, written first,
then ``checkpoint/state.json`` pointing at them — the state file is the commit point, so a
crash mid-write leaves the previous checkpoint intact.
"""
from __future__ import annotations

import io
import json
import logging
from typing import Any

import keras
import numpy as np

from headstart.shared.storage.manifest import to_json
from headstart.shared.storage.store import Store

log = logging.getLogger(__name__)

STATE = "checkpoint/state.json"


def _arrays_to_bytes(arrays: list[np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, *arrays)  # uncompressed: a checkpoint per epoch must cost milliseconds
    return buf.getvalue()


def _arrays_from_bytes(data: bytes) -> list[np.ndarray]:
    arrays = np.load(io.BytesIO(data))
    return [arrays[f"arr_{i}"] for i in range(len(arrays.files))]


def weights_to_bytes(model: keras.Model) -> bytes:
    """The model's weights (trainable and not, in layer order) as ``.npz`` bytes."""
    return _arrays_to_bytes(model.get_weights())


def weights_from_bytes(model: keras.Model, data: bytes) -> None:
    values = _arrays_from_bytes(data)
    expected = [tuple(w.shape) for w in model.weights]
    if [tuple(v.shape) for v in values] != expected:
        raise ValueError(f"checkpoint weights do not match the model ({len(values)} arrays vs "
                         f"{len(expected)} weights)")
    model.set_weights(values)


def optimizer_to_bytes(optimizer: keras.optimizers.Optimizer) -> bytes:
    return _arrays_to_bytes([np.asarray(v) for v in optimizer.variables])


def optimizer_from_bytes(optimizer: keras.optimizers.Optimizer, model: keras.Model, data: bytes) -> None:
    """Restore Adam moments and the step count (the optimizer is built first if needed)."""
    if not optimizer.built:
        optimizer.build(model.trainable_variables)
    values = _arrays_from_bytes(data)
    if len(values) != len(optimizer.variables):
        log.warning("optimizer state does not match (%d vs %d variables); starting it fresh",
                    len(values), len(optimizer.variables))
        return
    for var, value in zip(optimizer.variables, values):
        var.assign(value)


class CheckpointStore:
    """Reads and writes training state under ``checkpoint/`` of the run's output store."""

    def __init__(self, store: Store, fingerprint: str) -> None:
        self.store = store
        self.fingerprint = fingerprint

    def load_state(self) -> dict[str, Any] | None:
        if not self.store.exists(STATE):
            return None
        return json.loads(self.store.read_text(STATE))

    def save(self, state: dict[str, Any], model: keras.Model, optimizer, best_changed: bool) -> None:
        """Write weights (+ best weights when improved) and optimizer, then the state file."""
        phase, epoch = state["phase"], state["epoch"]
        prev = self.load_state()
        weights_key = f"checkpoint/{phase}-e{epoch}.weights.npz"
        opt_key = f"checkpoint/{phase}-e{epoch}.optimizer.npz"
        data = weights_to_bytes(model)
        self.store.write_bytes(weights_key, data)
        self.store.write_bytes(opt_key, optimizer_to_bytes(optimizer))
        if best_changed:
            self.store.write_bytes(f"checkpoint/{phase}-best.weights.npz", data)
        state = {**state, "weights": weights_key, "optimizer": opt_key,
                 "best_weights": f"checkpoint/{phase}-best.weights.npz",
                 "fingerprint": self.fingerprint}
        self.store.write_text(STATE, to_json(state))
        if prev and prev.get("weights") not in (None, weights_key):
            self.store.delete(prev["weights"])
            self.store.delete(prev["optimizer"])

    def save_best(self, phase: str, weights: list[np.ndarray]) -> None:
        """Write best weights taken at an earlier, uncommitted epoch (timed checkpoints)."""
        self.store.write_bytes(f"checkpoint/{phase}-best.weights.npz", _arrays_to_bytes(weights))

    def restore(self, state: dict[str, Any], model: keras.Model, optimizer) -> None:
        weights_from_bytes(model, self.store.read_bytes(state["weights"]))
        optimizer_from_bytes(optimizer, model, self.store.read_bytes(state["optimizer"]))

    def restore_best(self, phase: str, model: keras.Model) -> bool:
        key = f"checkpoint/{phase}-best.weights.npz"
        if not self.store.exists(key):
            return False
        weights_from_bytes(model, self.store.read_bytes(key))
        return True

    def clear(self) -> None:
        for key in list(self.store.list("checkpoint")):
            self.store.delete(key)
