"""A damaged checkpoint never blocks a rerun: fall back to the previous epoch or restart."""
from __future__ import annotations

import math

import pytest

from headstart.shared.model.checkpoints import PREV_STATE, STATE, CheckpointStore
from headstart.shared.storage.store import open_store
from tests.shared.model.test_checkpoints import assert_same_weights, make_model, state, train


@pytest.fixture
def two_epochs(tmp_path):
    """A local store holding checkpoints after epochs 1 and 2 (2 current, 1 the fallback)."""
    store = open_store(str(tmp_path / "run"))
    model = make_model(1)
    ckpt = CheckpointStore(store, "fp")
    train(model, range(1))
    ckpt.save(state(1), model, model.optimizer, best_changed=True)
    after_1 = make_model(5)
    after_1.set_weights(model.get_weights())
    train(model, range(1, 2))
    ckpt.save(state(2), model, model.optimizer, best_changed=False)
    return store, ckpt, after_1


def _garbage(store, key):
    store.write_bytes(key, b"\x00garbage\xff" * 10)


def _truncate(store, key):
    data = store.read_bytes(key)
    store.write_bytes(key, data[: len(data) // 2])


@pytest.mark.parametrize("damage", [
    lambda s: _garbage(s, STATE),
    lambda s: _truncate(s, STATE),
    lambda s: s.write_text(STATE, '{"phase": "head"}'),
    lambda s: _garbage(s, "checkpoint/head-e2.weights.npz"),
    lambda s: _truncate(s, "checkpoint/head-e2.weights.npz"),
    lambda s: s.delete("checkpoint/head-e2.weights.npz"),
    lambda s: _truncate(s, "checkpoint/head-e2.optimizer.npz"),
], ids=["garbage-state", "truncated-state", "incomplete-state", "garbage-weights",
        "truncated-weights", "missing-weights", "truncated-optimizer"])
def test_a_damaged_current_checkpoint_falls_back_to_the_previous_epoch(two_epochs, damage, caplog):
    store, ckpt, after_1 = two_epochs
    damage(store)
    with caplog.at_level("WARNING"):
        loaded = ckpt.load_state()
    assert loaded is not None and loaded["epoch"] == 1
    assert "falling back to head epoch 1" in caplog.text
    resumed = make_model(9)
    ckpt.restore(loaded, resumed, resumed.optimizer)
    assert_same_weights(after_1, resumed, atol=0)
    assert int(resumed.optimizer.iterations.numpy()) == 1


def test_nothing_usable_warns_and_restarts(two_epochs, caplog):
    store, ckpt, _ = two_epochs
    _garbage(store, STATE)
    _truncate(store, PREV_STATE)
    with caplog.at_level("WARNING"):
        assert ckpt.load_state() is None
    assert "no usable checkpoint" in caplog.text


def test_damaged_best_weights_keep_the_last_epoch(two_epochs, caplog):
    store, ckpt, _ = two_epochs
    _garbage(store, "checkpoint/head-best.weights.npz")
    assert ckpt.load_state()["epoch"] == 2  # training can still resume
    model = make_model(3)
    with caplog.at_level("WARNING"):
        assert ckpt.restore_best("head", model) is False
    assert "damaged" in caplog.text
    assert_same_weights(make_model(3), model, atol=0)


def test_a_fine_tune_checkpoint_needs_the_head_it_builds_on(two_epochs, caplog):
    store, ckpt, _ = two_epochs
    model = make_model(1)
    ckpt.save(state(1, phase="fine_tune"), model, model.optimizer, best_changed=True)
    assert ckpt.load_state()["phase"] == "fine_tune"
    _truncate(store, "checkpoint/head-best.weights.npz")
    with caplog.at_level("WARNING"):
        assert ckpt.load_state()["phase"] == "head"  # the fallback: the head phase's epoch 2
    assert "head-best.weights.npz" in caplog.text


def test_a_restore_that_fails_after_all_restarts_the_phase(two_epochs, caplog):
    store, ckpt, _ = two_epochs
    loaded = ckpt.load_state()
    _garbage(store, loaded["weights"])  # damaged between load_state and restore
    model = make_model(4)
    with caplog.at_level("WARNING"):
        ckpt.restore(loaded, model, model.optimizer)
    assert loaded == {"phase": "head", "epoch": 0, "history": {}, "best": math.inf,
                      "best_epoch": 0, "wait": 0, "done": False}
    assert "restarting the phase" in caplog.text


def test_saving_after_a_fallback_heals_the_checkpoint(two_epochs):
    store, ckpt, _ = two_epochs
    _garbage(store, STATE)
    loaded = ckpt.load_state()
    model = make_model(2)
    ckpt.restore(loaded, model, model.optimizer)
    train(model, range(1, 2))
    ckpt.save(state(2), model, model.optimizer, best_changed=False)
    assert ckpt.load_state()["epoch"] == 2
    assert CheckpointStore(store, "fp")._read_state(PREV_STATE)["epoch"] == 1
