"""Readers verify the model they load: a swapped, foreign or unsafe model.keras is exit 2
with one line naming the file and the problem (evaluate and gradcam)."""
from __future__ import annotations

import hashlib
import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

from headstart.shared.runtime.cli import main
from tests.helpers import failure


def _copy(trained_run: str, tmp_path: Path) -> Path:
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    return run


def _republish(run: Path, key: str = "model.keras") -> None:
    """Make the manifest agree with the file (as if it had been published like this)."""
    manifest = json.loads((run / "manifest.json").read_text())
    data = (run / key).read_bytes()
    manifest["files"][key] = {**manifest["files"][key], "size": len(data),
                              "sha256": hashlib.sha256(data).hexdigest()}
    (run / "manifest.json").write_text(json.dumps(manifest))


def _one_line(out: Path) -> str:
    message = failure(out)["message"]
    assert "\n" not in message and "Traceback" not in message
    return message


@pytest.mark.parametrize("job", ["evaluate", "gradcam"])
def test_a_model_swapped_after_publishing_is_refused(trained_run, shapes_dataset, tmp_path, job):
    import keras

    run = _copy(trained_run, tmp_path)
    model = keras.models.load_model(run / "model.keras")
    model.set_weights([np.zeros_like(w) for w in model.get_weights()])
    model.save(run / "model.keras")  # the manifest still describes the trained one
    out = tmp_path / "out"
    assert main([job, str(run), shapes_dataset, "--out", str(out)]) == 2
    message = _one_line(out)
    assert "model.keras" in message and "does not match its manifest" in message
    assert not (out / "manifest.json").exists()


def test_edited_labels_are_refused(trained_run, shapes_dataset, tmp_path):
    run = _copy(trained_run, tmp_path)
    labels = json.loads((run / "labels.json").read_text())
    labels["labels"] = list(reversed(labels["labels"]))
    (run / "labels.json").write_text(json.dumps(labels))
    out = tmp_path / "out"
    assert main(["evaluate", str(run), shapes_dataset, "--out", str(out)]) == 2
    assert "labels.json does not match its manifest" in _one_line(out)


def _hdf5(path: Path) -> None:
    path.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 2000)


def _random(path: Path) -> None:
    path.write_bytes(np.random.default_rng(0).bytes(5000))


def _truncated(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _no_config(path: Path) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("something.txt", "not a model")


def _lambda(path: Path) -> None:
    import keras

    inputs = keras.Input((None, None, 3))
    outputs = keras.layers.Lambda(lambda x: x * 0.0 + 1.0)(keras.layers.GlobalAveragePooling2D()(inputs))
    keras.Model(inputs, outputs).save(path)


@pytest.mark.parametrize("damage, expected", [
    (_hdf5, "not a Keras archive"), (_random, "not a Keras archive"),
    (_truncated, "not a Keras archive"), (_no_config, "no config.json"),
    (_lambda, "safe mode"),
])
def test_a_model_file_keras_cannot_safely_load_is_one_line(trained_run, shapes_dataset, tmp_path,
                                                           damage, expected):
    run = _copy(trained_run, tmp_path)
    damage(run / "model.keras")
    _republish(run)
    out = tmp_path / "out"
    assert main(["evaluate", str(run), shapes_dataset, "--out", str(out)]) == 2
    message = _one_line(out)
    assert expected in message and "model.keras" in message
    assert "File not found" not in message
