"""--recipe default (head chosen by CV, recorded) vs --recipe reference (the notebook's head)."""
from __future__ import annotations

import json
from pathlib import Path

import yaml

from headstart.shared.runtime.cli import main
from tests.helpers import TINY


def test_default_recipe_records_its_choice(shapes_dataset: str, tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert main(["train", shapes_dataset, "--out", str(out), *TINY, "--seed", "3"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    sel = metrics["selection"]
    assert metrics["recipe"] == "default" and sel["summary"] and "fold" in sel["reason"]
    assert sel["candidates"] and sel["chosen"]["kind"] in ("linear", "mlp")
    text = (out / "spec.yaml").read_text()
    assert "# selection" in text and yaml.safe_load(text)["recipe"] == "default"
    import keras

    model = keras.models.load_model(out / "model.keras")
    assert model.get_layer("head_pool") is not None and model.layers[-1].name == "predictions"
    # deterministic for a seed: a second run chooses and fits the same head
    again = tmp_path / "again"
    assert main(["train", shapes_dataset, "--out", str(again), *TINY, "--seed", "3"]) == 0
    assert json.loads((again / "metrics.json").read_text())["selection"] == sel
    assert json.loads((again / "metrics.json").read_text())["splits"]["test"] == metrics["splits"]["test"]


def test_reference_recipe_is_the_epoch_loop(shapes_dataset: str, tmp_path: Path) -> None:
    out = tmp_path / "ref"
    assert main(["train", shapes_dataset, "--out", str(out), *TINY, "--recipe", "reference", "--epochs", "2"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["recipe"] == "reference" and "selection" not in metrics
    history = json.loads((out / "history.json").read_text())["history"]
    assert len(history["val_loss"]) == 2
    assert "# selection" not in (out / "spec.yaml").read_text()


def test_unknown_recipe_is_refused(shapes_dataset: str, tmp_path: Path) -> None:
    assert main(["train", shapes_dataset, "--out", str(tmp_path / "x"), *TINY, "--recipe", "fancy"]) == 2
