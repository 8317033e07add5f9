"""``headstart train --auto``: the chooser, its evidence, the budget, and a rerunnable spec."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from headstart.shared.runtime.cli import main
from tests.helpers import failure

SMALL, LARGE = "tiny@16=none", "tiny@64=none"


@pytest.fixture(scope="module")
def texture_dataset(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Two labels told apart only by a 1-pixel checkerboard: visible at 64px, averaged away
    at 16px (antialiased resize). Both share random brightness and soft blobs."""
    root = tmp_path_factory.mktemp("texture")
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:64, :64]
    for label in ("checker", "flat"):
        (root / label).mkdir()
        for i in range(20):
            cx, cy, r = rng.uniform(10, 54, 3)
            blob = 40.0 * (((xx - cx) ** 2 + (yy - cy) ** 2) < (r / 2 + 8) ** 2)
            img = rng.uniform(70, 150) + blob
            if label == "checker":
                img = img + 50.0 * np.where((xx + yy) % 2 == 0, 1, -1)
            rgb = np.repeat(np.clip(img, 0, 255)[..., None], 3, axis=2).astype(np.uint8)
            Image.fromarray(rgb).save(root / label / f"{i:03d}.png")
    return str(root)


def _auto(dataset: str, out: Path, *extra: str) -> int:
    return main(["train", dataset, "--out", str(out), "--auto", "--epochs", "4", *extra])


@pytest.fixture(scope="module")
def auto_run(texture_dataset: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("auto") / "run"
    missing = "mobilenet_v2@32=/nowhere/mnv2.weights.h5"
    assert _auto(texture_dataset, out, "--candidates", f"{SMALL},{LARGE},{missing}") == 0
    return out


def test_chooses_the_candidate_that_sees_the_cue(auto_run: Path) -> None:
    doc = json.loads((auto_run / "auto.json").read_text())
    rows = {row["name"]: row for row in doc["candidates"]}
    assert rows["tiny@64"]["accuracy"] > rows["tiny@16"]["accuracy"] + 0.2, rows
    assert doc["chosen"]["backbone"] == "tiny" and doc["chosen"]["image_size"] == 64
    assert [r["name"] for r in doc["candidates"]][:2] == ["tiny@16", "tiny@64"], "cheapest first"
    assert {"backbone", "head", "learning_rate", "fine_tune", "class_weights"} <= set(doc["reasons"])
    assert doc["chosen"]["epochs"] == 4, "a value the user set is kept"


def test_missing_weights_are_skipped_with_a_note(auto_run: Path) -> None:
    doc = json.loads((auto_run / "auto.json").read_text())
    row = next(r for r in doc["candidates"] if r["backbone"] == "mobilenet_v2")
    assert row["status"] == "skipped" and "not found" in row["note"]


def test_evidence_is_published(auto_run: Path) -> None:
    manifest = json.loads((auto_run / "manifest.json").read_text())
    assert {"auto.json", "auto_report.html"} <= set(manifest["files"])
    html = (auto_run / "auto_report.html").read_text()
    for needle in ("Candidates", "tiny@16", "tiny@64", "weights unavailable", "Learning-rate range test"):
        assert needle in html
    assert not list(auto_run.glob("checkpoint/*"))


def test_resolved_spec_reruns_without_auto(auto_run: Path, tmp_path: Path) -> None:
    spec = yaml.safe_load((auto_run / "spec.yaml").read_text())
    assert spec["auto"] is False and spec["image_size"] == 64
    rerun = tmp_path / "rerun"
    assert main(["train", "--spec", str(auto_run / "spec.yaml"), "--out", str(rerun)]) == 0
    again = yaml.safe_load((rerun / "spec.yaml").read_text())
    assert {k: v for k, v in again.items() if k != "out"} == {k: v for k, v in spec.items() if k != "out"}
    assert not (rerun / "auto.json").exists()
    first = json.loads((auto_run / "history.json").read_text())["history"]
    second = json.loads((rerun / "history.json").read_text())["history"]
    np.testing.assert_allclose(first["loss"], second["loss"], atol=1e-3)


def test_rerun_of_the_auto_command_is_a_no_op(auto_run: Path, texture_dataset: str) -> None:
    before = (auto_run / "manifest.json").read_text()
    missing = "mobilenet_v2@32=/nowhere/mnv2.weights.h5"
    assert _auto(texture_dataset, auto_run, "--candidates", f"{SMALL},{LARGE},{missing}") == 0
    assert (auto_run / "manifest.json").read_text() == before


def test_budget_stops_the_search(texture_dataset: str, tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert _auto(texture_dataset, out, "--candidates", f"{SMALL},{LARGE}", "--budget", "0.001") == 0
    doc = json.loads((out / "auto.json").read_text())
    status = {r["name"]: (r["status"], r["note"]) for r in doc["candidates"]}
    assert status["tiny@16"][0] == "scored", "the cheapest candidate always runs"
    assert status["tiny@64"][0] == "skipped" and "budget" in status["tiny@64"][1]
    assert doc["chosen"]["fine_tune_layers"] == 0
    assert doc["budget"]["budget_s"] <= 0.06 and "tiny@16" in doc["budget"]["candidates_s"]
    assert any("the search took" in w for w in doc["warnings"]), "an overrun is never silent"
    assert "Budget" in (out / "auto_report.html").read_text()


def test_imbalanced_labels_get_class_weights_and_a_warning(texture_dataset: str, tmp_path: Path,
                                                           caplog) -> None:
    import shutil

    data = tmp_path / "data"
    shutil.copytree(texture_dataset, data)
    for path in sorted((data / "flat").iterdir())[8:]:
        path.unlink()
    out = tmp_path / "run"
    assert _auto(str(data), out, "--candidates", LARGE) == 0
    doc = json.loads((out / "auto.json").read_text())
    weights = doc["chosen"]["class_weights"]
    assert weights["flat"] > weights["checker"]
    assert any("'flat' has only" in w for w in doc["warnings"])
    assert "'flat' has only" in caplog.text
    assert yaml.safe_load((out / "spec.yaml").read_text())["class_weights"] == weights


def test_no_candidate_available_is_a_user_error(texture_dataset: str, tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert _auto(texture_dataset, out, "--candidates", "mobilenet_v2@32=/nowhere/x.weights.h5") == 2
    assert "no candidate backbone could be scored" in failure(out)["message"]


def test_bad_candidate_names_the_value(texture_dataset: str, tmp_path: Path, capsys) -> None:
    assert _auto(texture_dataset, tmp_path / "o", "--candidates", "tiny@big=none") == 2
    assert "tiny@big" in capsys.readouterr().err


def test_class_weights_flag(texture_dataset: str, tmp_path: Path) -> None:
    tiny = ["--backbone", "tiny", "--weights", "none", "--image-size", "32", "--epochs", "1"]
    out = tmp_path / "run"
    assert main(["train", texture_dataset, "--out", str(out), *tiny, "--class-weights", "flat=2"]) == 0
    assert yaml.safe_load((out / "spec.yaml").read_text())["class_weights"] == {"flat": 2.0}
    bad = tmp_path / "bad"
    assert main(["train", texture_dataset, "--out", str(bad), *tiny, "--class-weights", "dog=2"]) == 2
    assert "dog" in failure(bad)["message"]
