"""End-to-end tests of ``headstart train`` on generated data with the tiny backbone."""
from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import yaml

from headstart.shared.runtime.cli import main
from tests.helpers import TINY, failure

OUTPUTS = {"model.keras", "labels.json", "history.json", "training_curves.png", "metrics.json",
           "spec.yaml", "skipped.csv", "splits.csv", "manifest.json", "report.html", "calibration.json",
           "reliability.png"}


def test_outputs_and_manifest(trained_run: str) -> None:
    files = {p.name for p in Path(trained_run).iterdir() if p.is_file()}
    assert files >= OUTPUTS
    manifest = json.loads(Path(trained_run, "manifest.json").read_text())
    assert set(manifest["files"]) == OUTPUTS - {"manifest.json"}
    for name, meta in manifest["files"].items():
        assert Path(trained_run, name).stat().st_size == meta["size"]
    assert not Path(trained_run, "checkpoint").exists(), "no (empty) checkpoint/ folder once published"
    assert Path(trained_run, "training_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_model_loads_without_custom_objects_and_takes_raw_images(trained_run: str) -> None:
    model = keras.models.load_model(Path(trained_run, "model.keras"))
    labels = json.loads(Path(trained_run, "labels.json").read_text())
    raw = np.random.default_rng(0).integers(0, 256, (3, 77, 51, 3)).astype("float32")
    probs = model.predict(raw, verbose=0)
    assert probs.shape == (3, len(labels["labels"]))
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    assert labels["image_size"] == 32 and labels["backbone"] == "tiny"


def test_resolved_spec_saved(trained_run: str) -> None:
    spec = yaml.safe_load(Path(trained_run, "spec.yaml").read_text())
    assert spec["backbone"] == "tiny" and spec["epochs"] == 2 and spec["image_size"] == 32
    assert spec["learning_rate"] == 1e-3 and spec["dropout"] == 0.3


def test_spec_from_env_and_file(shapes_dataset: str, tmp_path: Path, monkeypatch) -> None:
    spec_file = tmp_path / "train.yaml"
    spec_file.write_text(yaml.safe_dump({"backbone": "tiny", "weights": "none", "image_size": 32,
                                         "epochs": 5, "recipe": "reference"}))  # epochs count in the epoch loop
    monkeypatch.setenv("HEADSTART_EPOCHS", "1")
    out = tmp_path / "run"
    assert main(["train", shapes_dataset, "--out", str(out), "--spec", str(spec_file),
                 "--max-per-label", "6"]) == 0
    spec = yaml.safe_load((out / "spec.yaml").read_text())
    assert spec["epochs"] == 1 and spec["max_per_label"] == 6
    history = json.loads((out / "history.json").read_text())["history"]
    assert len(history["loss"]) == 1


def test_rerun_same_spec_is_a_no_op_and_different_spec_needs_overwrite(trained_run: str,
                                                                    shapes_dataset: str, caplog) -> None:
    before = Path(trained_run, "manifest.json").read_text()
    assert main(["train", shapes_dataset, "--out", trained_run, *TINY, "--epochs", "2"]) == 0
    assert Path(trained_run, "manifest.json").read_text() == before
    assert main(["train", shapes_dataset, "--out", trained_run, *TINY, "--epochs", "3"]) == 2
    assert "--overwrite" in failure(trained_run)["message"]
    assert Path(trained_run, "manifest.json").read_text() == before, "published run untouched"
    Path(trained_run, "_FAILURE.json").unlink()


def test_corrupt_files_are_skipped_and_listed(shapes_dataset: str, tmp_path: Path) -> None:
    import shutil

    data = tmp_path / "data"
    shutil.copytree(shapes_dataset, data)
    (data / "circle" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    (data / "square" / "notes.jpg").write_text("<html>not an image</html>")
    (data / "triangle" / "empty.png").write_bytes(b"")
    out = tmp_path / "run"
    assert main(["train", str(data), "--out", str(out), *TINY, "--epochs", "1"]) == 0
    skipped = (out / "skipped.csv").read_text()
    for name, status in (("broken.jpg", "decode_error"), ("notes.jpg", "not_image"), ("empty.png", "empty")):
        line = next(row for row in skipped.splitlines() if name in row)
        assert status in line
    assert json.loads((out / "metrics.json").read_text())["skipped"] == 3
