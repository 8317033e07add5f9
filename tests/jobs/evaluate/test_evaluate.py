"""End-to-end tests of ``headstart evaluate``."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from headstart.shared.runtime.cli import main
from tests.helpers import failure


def test_evaluate_outputs(trained_run: str, shapes_dataset: str, tmp_path: Path) -> None:
    out = tmp_path / "eval"
    assert main(["evaluate", trained_run, shapes_dataset, "--out", str(out)]) == 0
    for name in ("metrics.json", "confusion_matrix.json", "confusion_matrix.png",
                 "confusion_matrix_normalized.png", "per_class.csv", "predictions.csv",
                 "report.html", "manifest.json"):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    cm = json.loads((out / "confusion_matrix.json").read_text())
    counts = np.asarray(cm["counts"])
    assert counts.sum() == metrics["n"]
    assert np.isclose(np.trace(counts) / counts.sum(), metrics["accuracy"])
    assert {r["label"] for r in metrics["per_class"]} == set(cm["labels"])
    assert "top_1" in metrics["top_k"] and "top_3" in metrics["top_k"]
    html = (out / "report.html").read_text()
    assert "Per class" in html and "data:image/png;base64," in html


def test_evaluates_same_test_split_as_training(trained_run: str, shapes_dataset: str, tmp_path: Path) -> None:
    out = tmp_path / "eval"
    assert main(["evaluate", trained_run, shapes_dataset, "--out", str(out)]) == 0
    test_keys = {line.split(",")[1] for line in Path(trained_run, "splits.csv").read_text().splitlines()
                 if line.startswith("test,")}
    evaluated = {line.split(",")[0] for line in (out / "predictions.csv").read_text().splitlines()[1:]}
    assert evaluated == test_keys


def test_worst_misclassifications(trained_run: str, shapes_dataset: str, tmp_path: Path) -> None:
    out = tmp_path / "eval"
    assert main(["evaluate", trained_run, shapes_dataset, "--out", str(out), "--split", "all"]) == 0
    worst = json.loads((out / "worst_misclassified.json").read_text())
    probs = [w["probability"] for w in worst]
    assert probs == sorted(probs, reverse=True)
    assert all(w["true"] != w["predicted"] for w in worst)


def test_unpublished_model_is_refused(shapes_dataset: str, tmp_path: Path) -> None:
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "model.keras").write_bytes(b"partial")
    out = tmp_path / "eval"
    assert main(["evaluate", str(tmp_path / "half"), shapes_dataset, "--out", str(out)]) == 2
    assert "not a published run" in failure(out)["message"]


def test_unknown_labels_are_refused(trained_run: str, shapes_dataset: str, tmp_path: Path) -> None:
    import shutil

    data = tmp_path / "data"
    shutil.copytree(shapes_dataset, data)
    shutil.copytree(data / "circle", data / "hexagon")
    out = tmp_path / "eval"
    assert main(["evaluate", trained_run, str(data), "--out", str(out)]) == 2
    assert "hexagon" in failure(out)["message"]
