"""A rerun of train over a damaged checkpoint warns, falls back or restarts, and finishes."""
from __future__ import annotations

import random
from pathlib import Path

import pytest

from headstart.shared.runtime.cli import main
from tests.helpers import sigterm_after_epoch, TINY

ARGS = [*TINY, "--epochs", "3", "--patience", "10", "--recipe", "reference"]  # the epoch loop checkpoints


# The other kinds of damage are covered in tests/shared/model/test_checkpoints_corrupt.py.
@pytest.mark.parametrize("damage", ["garbage-state", "truncated-weights"])
def test_rerun_over_a_damaged_checkpoint_finishes(shapes_dataset, tmp_path: Path, monkeypatch,
                                                  caplog, damage) -> None:
    out = tmp_path / "run"
    sigterm_after_epoch(monkeypatch, 2)  # a spot interruption after epoch 2
    assert main(["train", shapes_dataset, "--out", str(out), *ARGS]) == 75
    monkeypatch.undo()
    ckpt = out / "checkpoint"
    state, weights = ckpt / "state.json", ckpt / "head-e2.weights.npz"
    if damage == "garbage-state":
        state.write_bytes(random.Random(0).randbytes(300))  # fixed garbage: the same run every time
    elif damage == "truncated-state":
        state.write_bytes(state.read_bytes()[:40])
    elif damage == "missing-weights":
        weights.unlink()
    else:
        weights.write_bytes(weights.read_bytes()[:100])
    with caplog.at_level("WARNING"):
        assert main(["train", shapes_dataset, "--out", str(out), *ARGS]) == 0
    assert (out / "manifest.json").is_file()
    assert "falling back to head epoch 1" in caplog.text


def test_a_checkpoint_with_nothing_usable_restarts_training(shapes_dataset, tmp_path: Path, caplog) -> None:
    out = tmp_path / "run"
    (out / "checkpoint").mkdir(parents=True)
    (out / "checkpoint" / "state.json").write_text('{"phase": "head", "epo')
    with caplog.at_level("WARNING"):
        assert main(["train", shapes_dataset, "--out", str(out), *ARGS]) == 0
    assert "no usable checkpoint" in caplog.text and (out / "manifest.json").is_file()
