"""Calibration end to end: train fits a temperature on valid; evaluate reports ECE before/after."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from headstart.shared.model.calibration import Calibration
from headstart.shared.runtime.cli import main


def test_train_writes_calibration(trained_run: str) -> None:
    run = Path(trained_run)
    cal = Calibration.from_json((run / "calibration.json").read_text())
    # The default recipe refits on train+valid, so it calibrates on their out-of-fold
    # probabilities (56 images), never on in-sample ones.
    assert cal.fitted_on == "train+valid out-of-fold" and cal.n == 56 and 0.05 <= cal.temperature <= 20
    assert cal.nll_after <= cal.nll_before + 1e-9  # the fit never makes the held-out NLL worse
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["calibration"]["temperature"] == cal.temperature
    files = json.loads((run / "manifest.json").read_text())["files"]
    assert {"calibration.json", "reliability.png"} <= set(files)


def test_evaluate_reports_ece_and_applies_temperature(trained_run: str, shapes_dataset: str,
                                                      tmp_path: Path) -> None:
    out = tmp_path / "ev"
    assert main(["evaluate", trained_run, shapes_dataset, "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    cal = metrics["calibration"]
    assert {"ece_before", "ece_after", "temperature", "reliability_before"} <= set(cal)
    assert 0 <= cal["ece_before"] <= 1 and sum(cal["reliability_after"]["count"]) == metrics["n"]
    assert (out / "reliability.png").read_bytes()[:4] == b"\x89PNG"
    assert "Calibration" in (out / "report.html").read_text()
    t = Calibration.from_json(Path(trained_run, "calibration.json").read_text())
    for row in csv.DictReader((out / "predictions.csv").read_text().splitlines()):
        p = np.array([[float(v) for k, v in row.items() if k.startswith("p_")]])
        assert abs(float(row["confidence"]) - t.apply(p).max()) < 1e-4
