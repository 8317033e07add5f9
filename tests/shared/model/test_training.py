"""The epoch loop: chunked compiled steps match per-batch steps; checkpoints are timed."""
from __future__ import annotations

import json

import keras
import numpy as np
import pytest

from headstart.shared.model import training
from headstart.shared.model.checkpoints import STATE, CheckpointStore
from headstart.shared.model.features import ArrayBatches
from headstart.shared.model.training import PhaseConfig, run_phase
from headstart.shared.runtime.errors import Interrupted
from headstart.shared.runtime.stop import STOP
from headstart.shared.storage.store import open_store

RNG = np.random.default_rng(0)
X = RNG.normal(size=(40, 6)).astype("float32")
Y = (X[:, 0] > 0).astype("int64") + (X[:, 1] > 0)


def _model(seed: int = 1) -> keras.Model:
    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.Input((6,)), keras.layers.Dense(8, activation="relu"),
                             keras.layers.BatchNormalization(), keras.layers.Dense(3, activation="softmax")])


def _phase(epochs: int, patience: int = 100, class_weights=None) -> PhaseConfig:
    return PhaseConfig(name="head", epochs=epochs, learning_rate=1e-2, patience=patience,
                       label_smoothing=0.0, class_weights=class_weights)


def _run(tmp_path, epochs: int = 4, model=None, sub: str = "ck", class_weights=None):
    model = model or _model()
    train = ArrayBatches(X, Y, batch_size=8, seed=3)
    valid = ArrayBatches(X[:16], Y[:16], batch_size=16, seed=3, shuffle=False)
    ckpt = CheckpointStore(open_store(str(tmp_path / sub)), "fp")
    phase = _phase(epochs, class_weights=class_weights)
    return model, run_phase(model, train, valid, phase, ckpt, ckpt.load_state()), ckpt


@pytest.mark.parametrize("class_weights", [None, [1.0, 3.0, 0.5]])
def test_chunked_epochs_equal_one_step_per_batch(tmp_path, monkeypatch, class_weights):
    chunked, result, _ = _run(tmp_path, sub="a", class_weights=class_weights)
    monkeypatch.setattr(training, "CHUNK_BYTES", 1)  # every batch its own compiled call
    single, result_single, _ = _run(tmp_path, sub="b", class_weights=class_weights)
    for a, b in zip(chunked.get_weights(), single.get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-5)
    np.testing.assert_allclose(result.history["loss"], result_single.history["loss"], rtol=1e-4)
    # Epoch means over all 40 samples, as the history reports them.
    assert len(result.history["loss"]) == 4 and 0 <= result.history["accuracy"][-1] <= 1


def _count_state_writes(monkeypatch) -> list[int]:
    epochs: list[int] = []
    real = CheckpointStore.save

    def recording(self, state, model, optimizer, best_changed):
        epochs.append(state["epoch"])
        real(self, state, model, optimizer, best_changed)

    monkeypatch.setattr(CheckpointStore, "save", recording)
    return epochs


def test_checkpoints_at_first_epoch_and_phase_end_not_every_epoch(tmp_path, monkeypatch):
    writes = _count_state_writes(monkeypatch)
    _run(tmp_path, epochs=5)
    assert writes == [1, 5]
    writes.clear()
    monkeypatch.setattr(training, "CHECKPOINT_EVERY_S", 0.0)
    _run(tmp_path, epochs=3, sub="every")
    assert writes == [1, 2, 3]


def test_best_weights_of_an_uncommitted_epoch_are_kept(tmp_path, monkeypatch):
    # val loss improves at some epochs that are never committed on their own: the best
    # weights restored at the phase end must still be those of the best epoch.
    snapshots = {}
    model = _model()
    real_end = training._TimedCheckpoints.epoch_end

    def end(self, m, state, improved):
        snapshots[state["epoch"]] = m.get_weights()
        real_end(self, m, state, improved)

    monkeypatch.setattr(training._TimedCheckpoints, "epoch_end", end)
    model, result, ckpt = _run(tmp_path, epochs=6, model=model)
    best = result.best_epoch
    assert best > 1
    for a, b in zip(model.get_weights(), snapshots[best]):
        np.testing.assert_array_equal(a, b)


def test_a_stop_mid_epoch_commits_the_last_finished_epoch(tmp_path, monkeypatch):
    writes = _count_state_writes(monkeypatch)
    real_epoch = training._run_epoch

    def stop_in_4th(model, train, *args):
        if len(writes) and train.order is not None and stop_in_4th.calls == 3:
            STOP._event.set()  # what SIGTERM does in a cooperative job, mid-epoch
        stop_in_4th.calls += 1
        return real_epoch(model, train, *args)

    stop_in_4th.calls = 0
    monkeypatch.setattr(training, "_run_epoch", stop_in_4th)
    try:
        with pytest.raises(Interrupted):
            _run(tmp_path, epochs=8)
    finally:
        STOP.reset()
    state = json.loads((tmp_path / "ck" / STATE).read_text())
    assert writes == [1, 3]  # epoch 1 on schedule; epoch 3 committed by the stop in epoch 4
    assert state["epoch"] == 3 and len(state["history"]["loss"]) == 3

    # Resuming finishes the run where an uninterrupted one ends (same batches, Adam restored).
    monkeypatch.setattr(training, "_run_epoch", real_epoch)
    resumed, result, _ = _run(tmp_path, epochs=8, model=_model(5))
    straight, _, _ = _run(tmp_path, epochs=8, sub="straight")
    assert len(result.history["loss"]) == 8
    for a, b in zip(resumed.get_weights(), straight.get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-4)
