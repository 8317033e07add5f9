"""Per-epoch checkpoints in the output store, so a rerun resumes after a spot interruption.

A checkpoint is the trainable model's weights plus the optimizer's variables, written first,
then ``checkpoint/state.json`` pointing at them — the state file is the commit point, so a
crash mid-write leaves the previous checkpoint intact.

A damaged checkpoint never blocks a rerun (Batch retries must converge): the previous
epoch's checkpoint is kept too (``state.prev.json`` + its files), :meth:`CheckpointStore.load_state`
checks that a state and every file it names really load, falls back to the previous epoch,
and otherwise warns and returns None (the phase restarts). Restores that still fail restart
the phase instead of raising.
"""
from __future__ import annotations

import io
import json
import logging
import math
from typing import Any

import keras
import numpy as np

from headstart.shared.storage.manifest import to_json
from headstart.shared.storage.store import Store

log = logging.getLogger(__name__)

STATE = "checkpoint/state.json"
PREV_STATE = "checkpoint/state.prev.json"
_REQUIRED = ("phase", "epoch", "history", "best", "best_epoch", "wait", "done", "weights", "optimizer")


class CorruptCheckpoint(Exception):
    """A checkpoint file that is missing, truncated or not what it claims to be."""


def _arrays_to_bytes(arrays: list[np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, *arrays)  # uncompressed: a checkpoint per epoch must cost milliseconds
    return buf.getvalue()


def _arrays_from_bytes(data: bytes) -> list[np.ndarray]:
    """Every array of an ``.npz`` (reading each one checks its CRC); damage -> CorruptCheckpoint."""
    try:
        arrays = np.load(io.BytesIO(data), allow_pickle=False)
        return [arrays[f"arr_{i}"] for i in range(len(arrays.files))]
    except Exception as exc:  # BadZipFile, ValueError, KeyError, EOFError, OSError...
        raise CorruptCheckpoint(f"{type(exc).__name__}: {exc}") from None


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

    def _read_state(self, key: str) -> dict[str, Any]:
        """A state file and the files it names, checked to load; else CorruptCheckpoint."""
        try:
            state = json.loads(self.store.read_text(key))
        except FileNotFoundError:
            raise CorruptCheckpoint(f"{key} is missing") from None
        except (ValueError, UnicodeDecodeError) as exc:
            raise CorruptCheckpoint(f"{key} is not valid JSON ({exc})") from None
        if not isinstance(state, dict) or any(k not in state for k in _REQUIRED):
            missing = [k for k in _REQUIRED if k not in (state if isinstance(state, dict) else {})]
            raise CorruptCheckpoint(f"{key} lacks {missing}")
        needed = [state["weights"], state["optimizer"]]
        # A damaged best-weights file of this phase only costs the "restore best" at its end
        # (restore_best warns); the head a fine-tune phase builds on is needed though.
        if state["phase"] == "fine_tune":
            needed.append("checkpoint/head-best.weights.npz")  # the head it fine-tunes
        for name in needed:
            try:
                _arrays_from_bytes(self.store.read_bytes(name))
            except FileNotFoundError:
                raise CorruptCheckpoint(f"{name} (named by {key}) is missing") from None
            except CorruptCheckpoint as exc:
                raise CorruptCheckpoint(f"{name} (named by {key}) is damaged: {exc}") from None
        return state

    def load_state(self) -> dict[str, Any] | None:
        """The newest checkpoint that really loads: the current one, else the previous epoch's;
        None when there is none (or none usable: warned, and the phase restarts)."""
        if not self.store.exists(STATE) and not self.store.exists(PREV_STATE):
            return None
        problems = []
        for key in (STATE, PREV_STATE):
            try:
                state = self._read_state(key)
            except CorruptCheckpoint as exc:
                problems.append(str(exc))
                continue
            if problems:
                log.warning("checkpoint damaged (%s); falling back to %s epoch %d", problems[0],
                            state["phase"], state["epoch"])
            return state
        log.warning("no usable checkpoint (%s); training starts again", "; ".join(problems))
        return None

    def _state_or_none(self, key: str) -> dict[str, Any] | None:
        try:
            return self._read_state(key)
        except CorruptCheckpoint:
            return None

    def save(self, state: dict[str, Any], model: keras.Model, optimizer, best_changed: bool) -> None:
        """Write weights (+ best weights when improved) and optimizer, then the state file;
        keep the previous epoch's checkpoint as the fallback and drop older ones."""
        phase, epoch = state["phase"], state["epoch"]
        prev = self._state_or_none(STATE)
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
        if prev and prev["weights"] != weights_key:
            self.store.write_text(PREV_STATE, to_json(prev))  # the fallback, before the commit
        else:  # the same epoch saved again (a rerun): the fallback stays what it was
            prev = self._state_or_none(PREV_STATE)
        self.store.write_text(STATE, to_json(state))
        keep = {weights_key, opt_key} | ({prev["weights"], prev["optimizer"]} if prev else set())
        for key in list(self.store.list("checkpoint")):
            if ".weights.npz" in key or ".optimizer.npz" in key:
                if "-e" in key.rsplit("/", 1)[-1] and key not in keep:
                    self.store.delete(key)  # an epoch older than the fallback

    def save_best(self, phase: str, weights: list[np.ndarray]) -> None:
        """Write best weights taken at an earlier, uncommitted epoch (timed checkpoints)."""
        self.store.write_bytes(f"checkpoint/{phase}-best.weights.npz", _arrays_to_bytes(weights))

    def restore(self, state: dict[str, Any], model: keras.Model, optimizer) -> None:
        """Load ``state``'s weights and optimizer; if that fails after all (a file damaged since
        :meth:`load_state`), warn and reset ``state`` in place so its phase starts again."""
        try:
            weights = _arrays_from_bytes(self.store.read_bytes(state["weights"]))
            opt = self.store.read_bytes(state["optimizer"])
            _arrays_from_bytes(opt)
            expected = [tuple(w.shape) for w in model.weights]
            if [tuple(v.shape) for v in weights] != expected:
                raise CorruptCheckpoint(f"{len(weights)} arrays do not match the model's "
                                        f"{len(expected)} weights")
        except (CorruptCheckpoint, FileNotFoundError, KeyError) as exc:
            log.warning("cannot restore the %s checkpoint (%s); restarting the phase",
                        state.get("phase"), exc)
            phase = state.get("phase", "head")
            state.clear()
            state.update({"phase": phase, "epoch": 0, "history": {}, "best": math.inf,
                          "best_epoch": 0, "wait": 0, "done": False})
            return
        model.set_weights(weights)
        optimizer_from_bytes(optimizer, model, opt)

    def restore_best(self, phase: str, model: keras.Model) -> bool:
        """Load the phase's best weights; False (model unchanged) when missing or damaged."""
        key = f"checkpoint/{phase}-best.weights.npz"
        if not self.store.exists(key):
            return False
        try:
            weights_from_bytes(model, self.store.read_bytes(key))
        except (CorruptCheckpoint, ValueError, FileNotFoundError) as exc:
            log.warning("best weights %s are damaged (%s); keeping the last epoch's", key, exc)
            return False
        return True

    def clear(self) -> None:
        for key in list(self.store.list("checkpoint")):
            self.store.delete(key)
