"""End-to-end tests of ``headstart predict`` / ``predict-merge`` on the tiny trained model."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from headstart.shared.runtime.cli import main
from headstart.shared.storage.store import open_store
from tests.helpers import copy_tree, failure


def _rows(out: Path | str) -> list[dict]:
    text = open_store(str(out)).read_text("predictions.csv")
    return list(csv.DictReader(text.splitlines()))


def _split_keys(run: str, split: str) -> set[str]:
    return {line.split(",")[1] for line in Path(run, "splits.csv").read_text().splitlines()
            if line.startswith(f"{split},")}


def test_predict_matches_evaluate(trained_run: str, shapes_dataset: str, tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    ev, pr = tmp_path / "ev", tmp_path / "pr"
    assert main(["evaluate", trained_run, shapes_dataset, "--out", str(ev)]) == 0
    capsys.readouterr()
    assert main(["predict", trained_run, shapes_dataset, "--out", str(pr), "--split", "test",
                 "--top-k", "4", "--batch-size", "3", "--workers", "2"]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]  # the job's own summary line
    assert line.startswith(f"predict: predictions of {len(_split_keys(trained_run, 'test'))} images + report -> ")
    assert "accuracy" in line and f"open {pr}" in line and "report.html" in line
    expected = {r["key"]: r for r in csv.DictReader((ev / "predictions.csv").read_text().splitlines())}
    rows = _rows(pr)
    assert {r["key"] for r in rows} == set(expected) == _split_keys(trained_run, "test")
    labels = json.loads(Path(trained_run, "labels.json").read_text())["labels"]
    worst = 0.0
    for r in rows:
        e = expected[r["key"]]
        assert r["predicted"] == e["predicted"] == r["label_1"] and r["true"] == e["true"]
        for i in range(1, 5):
            worst = max(worst, abs(float(r[f"prob_{i}"]) - float(e[f"p_{r[f'label_{i}']}"])))
        assert [float(r[f"prob_{i}"]) for i in range(1, 5)] == sorted(
            (float(r[f"prob_{i}"]) for i in range(1, 5)), reverse=True)
        assert {r[f"label_{i}"] for i in range(1, 5)} == set(labels)
    assert worst <= 1e-5
    summary = json.loads((pr / "summary.json").read_text())
    assert summary["images"] == len(rows) and sum(summary["counts"].values()) == len(rows)
    assert summary["accuracy"] == pytest.approx(json.loads((ev / "metrics.json").read_text())["accuracy"])
    manifest = json.loads((pr / "manifest.json").read_text())
    assert {"predictions.csv", "summary.json", "skipped.csv", "report.html", "gallery.json"} <= set(manifest["files"])
    html = (pr / "report.html").read_text()
    assert "least confident first" in html and "data:image/png;base64" in html


def test_confidence_calibration_tta_and_gallery_order(trained_run: str, shapes_dataset: str,
                                                      tmp_path: Path) -> None:
    run = tmp_path / "run"
    copy_tree(trained_run, str(run))
    (run / "calibration.json").write_text(json.dumps({"method": "temperature", "temperature": 4.0}))
    out = tmp_path / "pr"
    assert main(["predict", str(run), shapes_dataset, "--out", str(out), "--min-confidence", "0.9",
                 "--top-k", "1", "--gallery-per-label", "2"]) == 0
    rows = _rows(out)
    assert "label_2" not in rows[0]
    for r in rows:  # T=4 softens: calibrated confidence below the raw top-1 probability
        assert float(r["confidence"]) < float(r["probability"])
        assert r["low_confidence"] == str(int(float(r["confidence"]) < 0.9))
    gallery = json.loads((out / "gallery.json").read_text())
    by_label: dict[str, list[float]] = {}
    for tile in gallery:
        by_label.setdefault(tile["label"], []).append(tile["confidence"])
    for label, confs in by_label.items():
        assert len(confs) <= 2 and confs == sorted(confs)
        least = sorted(float(r["confidence"]) for r in rows if r["predicted"] == label)[:len(confs)]
        assert np.allclose(confs, least, atol=1e-6)  # the least confident ones are shown
    raw = tmp_path / "raw"
    assert main(["predict", str(run), shapes_dataset, "--out", str(raw), "--no-calibrate", "--tta"]) == 0
    plain = {r["key"]: r for r in _rows(raw)}
    assert all(r["confidence"] == r["probability"] for r in plain.values())
    assert json.loads((raw / "summary.json").read_text())["tta"] is True


def test_skips_bad_files_and_bad_input(trained_run: str, shapes_dataset: str, tmp_path: Path) -> None:
    folder = tmp_path / "imgs"
    folder.mkdir()
    src = sorted(Path(shapes_dataset).rglob("*.jpg"))[:3]
    for i, p in enumerate(src):
        (folder / f"ok{i}.jpg").write_bytes(p.read_bytes())
    (folder / "broken.jpg").write_bytes(src[0].read_bytes()[:200])
    (folder / "notes.bin").write_bytes(b"not an image")
    out = tmp_path / "pr"
    assert main(["predict", trained_run, str(folder), "--out", str(out)]) == 0
    rows = _rows(out)
    assert sorted(r["key"] for r in rows) == ["ok0.jpg", "ok1.jpg", "ok2.jpg"] and rows[0]["true"] == ""
    skipped = list(csv.DictReader((out / "skipped.csv").read_text().splitlines()))
    assert {Path(s["key"]).name for s in skipped} == {"broken.jpg", "notes.bin"}
    assert "accuracy" not in json.loads((out / "summary.json").read_text())
    bad = tmp_path / "bad"
    assert main(["predict", trained_run, str(folder), "--out", str(bad), "--min-confidence", "1.5"]) == 2
    assert main(["predict", trained_run, str(tmp_path / "nothing"), "--out", str(bad)]) == 2
    assert "no images found" in failure(bad)["message"]
    assert main(["predict", shapes_dataset, str(folder), "--out", str(bad)]) == 2
    blocker = tmp_path / "a-file"
    blocker.write_text("x")  # --out under a file: refused by the pre-flight, before the model loads
    assert main(["predict", trained_run, str(folder), "--out", str(blocker / "out")]) == 2


def test_shards_and_merge(trained_run: str, shapes_dataset: str, tmp_path: Path,
                          monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "pr"
    common = ["predict", trained_run, shapes_dataset, "--out", str(out)]
    assert main([*common, "--shard", "0/2"]) == 0
    assert main(["predict-merge", "--out", str(out)]) == 2
    assert "missing shard(s) [1]" in failure(out)["message"]
    monkeypatch.setenv("AWS_BATCH_JOB_ARRAY_INDEX", "1")
    assert main([*common, "--shard-count", "2"]) == 0
    a, b = (_rows(out / f"shard-0000{i}-of-00002") for i in (0, 1))
    assert a and b and not {r["key"] for r in a} & {r["key"] for r in b}
    capsys.readouterr()
    assert main(["predict-merge", "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith(
        "predict-merge: predictions of ")
    merged = _rows(out)
    assert [r["key"] for r in merged] == [r["key"] for r in a + b]
    assert {r["key"] for r in merged} == {ln.split(",")[1] for ln in
                                         Path(trained_run, "splits.csv").read_text().splitlines()[1:]}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["images"] == len(merged) and summary["shards"] == 2
    assert json.loads((out / "manifest.json").read_text())["merged_shards"] == 2


def test_predict_on_s3(trained_run: str, shapes_dataset: str, moto_server, tmp_path: Path) -> None:
    run = copy_tree(trained_run, f"{moto_server.uri}/run")
    keys = sorted(_split_keys(trained_run, "test"))[:4]
    data = copy_tree(shapes_dataset, f"{moto_server.uri}/data")
    listing = tmp_path / "list.txt"
    listing.write_text("".join(f"{data}/{k}\n" for k in keys))
    out = f"{moto_server.uri}/pr"
    assert main(["predict", run, str(listing), "--out", out]) == 0
    rows = _rows(out)
    assert len(rows) == 4 and all(r["image"].startswith("s3://") for r in rows)
    assert "predictions.csv" in json.loads(open_store(out).read_text("manifest.json"))["files"]
