"""Checkpoints, SIGTERM (exit 75) and resuming an interrupted run."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np

from headstart.shared.runtime.cli import main
from tests.helpers import sigterm_after_epoch, TINY, failure

ARGS = [*TINY, "--recipe", "reference", "--epochs", "4", "--patience", "10", "--dropout", "0"]  # the epoch loop


def _weights(run: Path) -> list[np.ndarray]:
    return keras.models.load_model(run / "model.keras").get_weights()


def test_sigterm_then_rerun_resumes_and_matches_uninterrupted(shapes_dataset: str, tmp_path: Path,
                                                              monkeypatch) -> None:
    straight = tmp_path / "straight"
    assert main(["train", shapes_dataset, "--out", str(straight), *ARGS]) == 0

    resumed = tmp_path / "resumed"
    sigterm_after_epoch(monkeypatch, 2)  # a spot interruption after epoch 2
    assert main(["train", shapes_dataset, "--out", str(resumed), *ARGS]) == 75
    assert failure(resumed)["kind"] == "interrupted"
    assert not (resumed / "manifest.json").exists()
    state = json.loads((resumed / "checkpoint" / "state.json").read_text())
    assert state["epoch"] == 2

    monkeypatch.undo()
    assert main(["train", shapes_dataset, "--out", str(resumed), *ARGS]) == 0
    assert not (resumed / "_FAILURE.json").exists()
    history = json.loads((resumed / "history.json").read_text())["history"]
    assert len(history["loss"]) == 4
    # Same data order per epoch, restored Adam state, no dropout: the resumed run ends where
    # the uninterrupted one does (up to float noise).
    for a, b in zip(_weights(straight), _weights(resumed)):
        np.testing.assert_allclose(a, b, atol=1e-4)


def test_real_sigterm_to_subprocess_exits_75(shapes_dataset: str, tmp_path: Path) -> None:
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "headstart.shared", "train", shapes_dataset, "--out", str(out), *TINY,
           "--recipe", "reference", "--epochs", "500", "--patience", "500"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    state = out / "checkpoint" / "state.json"
    deadline = time.monotonic() + 120
    while not state.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert state.exists(), proc.stderr.read() if proc.poll() is not None else "no checkpoint in time"
    proc.send_signal(signal.SIGTERM)
    code = proc.wait(timeout=60)
    stderr = proc.stderr.read()
    assert code == 75, stderr
    assert "rerun the same command to resume" in stderr
    assert failure(out)["kind"] == "interrupted"
    assert not (out / "manifest.json").exists()
