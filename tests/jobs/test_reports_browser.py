"""Every report, fetched with ``headstart results --to DIR`` and opened in headless Chromium:
no broken image, no link to a file left behind, the expected sections, no horizontal overflow.

Set ``REPORT_SCREENS=/some/dir`` to also save a screenshot of each report there.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from headstart.shared.runtime.cli import main
from tests.docs import browser

pytestmark = pytest.mark.skipif(browser.chromium() is None,
                                reason="chromium not installed (apt-get install -y chromium)")

REQUIRED = {
    "train": ["Summary", "Training curves", "Per split", "Configuration"],
    "evaluate": ["Summary", "Training", "Per class", "Confusion matrix", "Worst misclassifications",
                 "Similarity", "Configuration"],
    "gradcam": ["Summary", "Faithfulness", "Overlays", "Configuration"],
    "similarity": ["Summary", "Similarity matrix", "Near-duplicates", "Train/test leakage", "Configuration"],
    "auto": ["Choice", "Candidates", "Budget", "Learning-rate range test"],
}


@pytest.fixture(scope="module")
def runs(trained_run: str, shapes_dataset: str, tmp_path_factory) -> dict[str, Path]:
    """One run of each job, and where `headstart results --to` put its report."""
    root = tmp_path_factory.mktemp("runs")
    ok = [
        main(["evaluate", trained_run, shapes_dataset, "--out", str(root / "evaluate"),
              "--split", "all", "--worst", "6"]),
        main(["gradcam", trained_run, shapes_dataset, "--out", str(root / "gradcam"), "--split", "all",
              "--overlay-size", "64", "--faithfulness-steps", "2", "--random-maps", "2"]),
        main(["similarity", trained_run, shapes_dataset, "--out", str(root / "similarity"),
              "--duplicate-threshold", "0.9", "--leakage-threshold", "0.9"]),
        main(["train", shapes_dataset, "--out", str(root / "auto"), "--auto", "--budget", "2",
              "--candidates", "tiny@16=none,tiny@32=none", "--epochs", "2"]),
    ]
    assert ok == [0, 0, 0, 0]
    folders = {"train": Path(trained_run), **{n: root / n for n in ("evaluate", "gradcam", "similarity")},
               "auto": root / "auto"}
    fetched = tmp_path_factory.mktemp("fetched")
    reports = {}
    for name, folder in folders.items():
        assert main(["results", str(folder), "--to", str(fetched / name)]) == 0
        reports[name] = fetched / name / ("auto_report.html" if name == "auto" else "report.html")
        assert reports[name].is_file(), f"headstart results did not fetch the {name} report"
    reports["gradcam_run"] = root / "gradcam"
    return reports


@pytest.mark.parametrize("name", sorted(REQUIRED))
def test_report_renders_self_contained(runs: dict[str, Path], name: str) -> None:
    report = runs[name]
    assert {p.name for p in report.parent.iterdir()} <= {"auto_report.html", "metrics.json",
                                                            "report.html"}
    found = browser.check(report)
    assert found["images"] > 0
    assert browser.problems(found, REQUIRED[name]) == []
    screens = os.environ.get("REPORT_SCREENS")
    if screens:
        browser.screenshot(report, Path(screens) / f"{name}.png")


def test_similarity_pairs_have_thumbnails(runs: dict[str, Path]) -> None:
    html = runs["similarity"].read_text()
    for section in ("Near-duplicates", "Train/test leakage"):
        body = html.split(f">{section}</h2>", 1)[1].split("<h2", 1)[0]
        rows = body.count("<tr>") - 1  # minus the header
        assert rows > 0, f"the test needs pairs in {section}"
        assert body.count("<div class='pair'>") == rows
        assert len(re.findall(r"<div class='pair'><img[^>]+><img", body)) == rows  # both images


def test_wrong_predictions_are_marked(runs: dict[str, Path]) -> None:
    assert runs["evaluate"].read_text().count('class="tile wrong"') >= 1  # every worst error
    gradcam = runs["gradcam"].read_text()
    rows = [json.loads(line) for line in (runs["gradcam_run"] / "results.jsonl").read_text().splitlines()]
    shown = rows[:gradcam.count('class="tile')]
    assert shown, "the gallery shows overlays"
    wrong = sum(r["true"] != r["predicted"] for r in shown)
    assert gradcam.count('class="tile wrong"') == wrong
    assert gradcam.count('class="tile right"') == len(shown) - wrong
    assert gradcam.count("wrong · ") == wrong


def test_no_internal_fields_or_duplicates(runs: dict[str, Path]) -> None:
    gradcam = runs["gradcam"].read_text()
    assert "shard 0" not in gradcam and "mean_faithfulness" not in gradcam and "-0.000" not in gradcam
    assert ">Class " not in gradcam  # the per-class sheets repeated every overlay
    assert re.search(r"The maps (beat|do not clearly beat) ", gradcam)

