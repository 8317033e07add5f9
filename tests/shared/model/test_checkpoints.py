"""Per-epoch checkpoints: weights + Adam state round trip, state.json last, old files pruned."""
from __future__ import annotations

import json
import math

import keras
import numpy as np
import pytest

from headstart.shared.model.checkpoints import (STATE, CheckpointStore, optimizer_from_bytes, optimizer_to_bytes,
                                weights_from_bytes, weights_to_bytes)

RNG = np.random.default_rng(0)
X = RNG.normal(size=(4, 8, 6)).astype("float32")     # 4 batches of 8 samples
Y = RNG.integers(0, 3, size=(4, 8))


def make_model(seed: int) -> keras.Model:
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([
        keras.Input((6,)),
        keras.layers.Dense(8, activation="relu"),
        keras.layers.BatchNormalization(),
        keras.layers.Dense(3, activation="softmax"),
    ])
    # Eager steps: no graph tracing per model keeps these tests fast.
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="sparse_categorical_crossentropy",
                  run_eagerly=True)
    return model


def train(model: keras.Model, batches: range) -> None:
    for i in batches:
        model.train_on_batch(X[i], Y[i])


def assert_same_weights(a: keras.Model, b: keras.Model, atol: float = 1e-6) -> None:
    wa, wb = a.get_weights(), b.get_weights()
    assert len(wa) == len(wb)
    for x, y in zip(wa, wb):
        np.testing.assert_allclose(x, y, atol=atol)


def state(epoch: int, **extra) -> dict:
    return {"phase": "head", "epoch": epoch, "history": {"loss": [1.0] * epoch}, "best": math.inf,
            "best_epoch": 0, "wait": 0, "done": False, **extra}


def test_weights_bytes_round_trip():
    source = make_model(1)
    train(source, range(2))
    target = make_model(2)
    weights_from_bytes(target, weights_to_bytes(source))
    assert_same_weights(source, target, atol=0)


@pytest.mark.filterwarnings("error::UserWarning")
def test_resume_matches_an_uninterrupted_run(store):
    # Uninterrupted: four steps.
    reference = make_model(7)
    train(reference, range(4))

    # Interrupted after three steps, checkpointed, restored into a fresh process-like state.
    first = make_model(7)
    train(first, range(3))
    ckpt = CheckpointStore(store, fingerprint="abc")
    ckpt.save(state(3), first, first.optimizer, best_changed=True)

    resumed = make_model(99)  # different initial weights and a fresh, unbuilt Adam
    loaded = CheckpointStore(store, fingerprint="abc").load_state()
    assert loaded["epoch"] == 3 and loaded["fingerprint"] == "abc"
    CheckpointStore(store, "abc").restore(loaded, resumed, resumed.optimizer)
    assert int(resumed.optimizer.iterations.numpy()) == 3
    assert_same_weights(first, resumed, atol=0)
    train(resumed, range(3, 4))
    assert_same_weights(reference, resumed)


def test_without_optimizer_state_the_next_step_differs():
    """Control for the test above: the Adam moments do matter for the next step."""
    reference = make_model(7)
    train(reference, range(4))
    first = make_model(7)
    train(first, range(3))
    fresh = make_model(99)
    weights_from_bytes(fresh, weights_to_bytes(first))
    train(fresh, range(3, 4))
    assert any(not np.allclose(a, b, atol=1e-6)
               for a, b in zip(reference.get_weights(), fresh.get_weights()))


def test_optimizer_bytes_round_trip_into_built_optimizer():
    source = make_model(3)
    train(source, range(2))
    target = make_model(4)
    train(target, range(1))  # already built, other moments
    optimizer_from_bytes(target.optimizer, target, optimizer_to_bytes(source.optimizer))
    for a, b in zip(source.optimizer.variables, target.optimizer.variables):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_mismatched_optimizer_state_starts_fresh(caplog):
    source = make_model(3)
    train(source, range(1))
    other = keras.Sequential([keras.Input((6,)), keras.layers.Dense(3)])
    other.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse")
    with caplog.at_level("WARNING"):
        optimizer_from_bytes(other.optimizer, other, optimizer_to_bytes(source.optimizer))
    assert "does not match" in caplog.text
    assert int(other.optimizer.iterations.numpy()) == 0


def test_state_json_is_written_last(store, monkeypatch):
    model = make_model(1)
    train(model, range(1))
    writes: list[str] = []
    real = store.write_bytes

    def recording(key, data):
        writes.append(key)
        real(key, data)

    monkeypatch.setattr(store, "write_bytes", recording)
    CheckpointStore(store, "fp").save(state(1), model, model.optimizer, best_changed=True)
    assert writes[-1] == STATE
    assert set(writes[:-1]) == {"checkpoint/head-e1.weights.npz", "checkpoint/head-e1.optimizer.npz",
                                "checkpoint/head-best.weights.npz"}


def test_a_failed_weights_write_keeps_the_previous_checkpoint(store, monkeypatch):
    model = make_model(1)
    train(model, range(1))
    ckpt = CheckpointStore(store, "fp")
    ckpt.save(state(1), model, model.optimizer, best_changed=True)
    real = store.write_bytes

    def failing(key, data):
        if key.endswith(".optimizer.npz"):
            raise OSError("disk full")
        real(key, data)

    monkeypatch.setattr(store, "write_bytes", failing)
    with pytest.raises(OSError):
        ckpt.save(state(2), model, model.optimizer, best_changed=False)
    current = ckpt.load_state()
    assert current["epoch"] == 1
    assert store.exists(current["weights"]) and store.exists(current["optimizer"])


def test_old_epoch_files_are_removed_and_best_kept(store):
    """The current and the previous epoch (the fallback) are kept; older epochs go."""
    model = make_model(1)
    ckpt = CheckpointStore(store, "fp")
    train(model, range(1))
    ckpt.save(state(1), model, model.optimizer, best_changed=True)
    best_after_1 = store.read_bytes("checkpoint/head-best.weights.npz")
    train(model, range(1, 2))
    ckpt.save(state(2), model, model.optimizer, best_changed=False)
    assert sorted(store.list("checkpoint")) == [
        "checkpoint/head-best.weights.npz", "checkpoint/head-e1.optimizer.npz",
        "checkpoint/head-e1.weights.npz", "checkpoint/head-e2.optimizer.npz",
        "checkpoint/head-e2.weights.npz", "checkpoint/state.json", "checkpoint/state.prev.json"]
    assert store.read_bytes("checkpoint/head-best.weights.npz") == best_after_1
    train(model, range(2, 3))
    ckpt.save(state(3), model, model.optimizer, best_changed=True)
    after_3 = [
        "checkpoint/head-best.weights.npz", "checkpoint/head-e2.optimizer.npz",
        "checkpoint/head-e2.weights.npz", "checkpoint/head-e3.optimizer.npz",
        "checkpoint/head-e3.weights.npz", "checkpoint/state.json", "checkpoint/state.prev.json"]
    assert sorted(store.list("checkpoint")) == after_3
    # Saving the same epoch again (a rerun) keeps its files and its fallback.
    ckpt.save(state(3), model, model.optimizer, best_changed=False)
    assert sorted(store.list("checkpoint")) == after_3
    assert json.loads(store.read_text("checkpoint/state.prev.json"))["epoch"] == 2


def test_state_contents_round_trip(store):
    model = make_model(1)
    train(model, range(1))
    ckpt = CheckpointStore(store, "fingerprint-1")
    assert ckpt.load_state() is None
    ckpt.save(state(1, best_epoch=1), model, model.optimizer, best_changed=True)
    loaded = ckpt.load_state()
    assert loaded == {**state(1, best_epoch=1), "weights": "checkpoint/head-e1.weights.npz",
                      "optimizer": "checkpoint/head-e1.optimizer.npz",
                      "best_weights": "checkpoint/head-best.weights.npz", "fingerprint": "fingerprint-1"}
    assert loaded["best"] == math.inf
    json.loads(store.read_text(STATE))


def test_restore_best_and_clear(store):
    model = make_model(1)
    ckpt = CheckpointStore(store, "fp")
    assert ckpt.restore_best("head", model) is False
    train(model, range(1))
    ckpt.save(state(1), model, model.optimizer, best_changed=True)
    snapshot = model.get_weights()
    train(model, range(1, 3))
    ckpt.save(state(2), model, model.optimizer, best_changed=False)
    assert ckpt.restore_best("head", model) is True
    for a, b in zip(snapshot, model.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert ckpt.restore_best("fine_tune", model) is False
    ckpt.clear()
    assert list(store.list("checkpoint")) == []
    assert ckpt.load_state() is None
