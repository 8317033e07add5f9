"""End-to-end tests of ``headstart gradcam`` on a tiny trained model, locally and on moto S3."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from headstart.shared.runtime.cli import main
from headstart.shared.storage.store import open_store
from tests.helpers import copy_tree, failure


def _rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


def _test_keys(run: str) -> set[str]:
    return {line.split(",")[1] for line in Path(run, "splits.csv").read_text().splitlines()
            if line.startswith("test,")}


def test_gradcam_outputs(trained_run: str, shapes_dataset: str, tmp_path: Path) -> None:
    out = tmp_path / "gc"
    assert main(["gradcam", trained_run, shapes_dataset, "--out", str(out), "--overlay-size", "64"]) == 0
    rows = _rows(out)
    assert {r["key"] for r in rows} == _test_keys(trained_run)  # the train run's own test split
    for r in rows:
        assert (out / r["overlay"]).is_file()
        assert r["predicted"] == r["target"] and 0 <= r["probability"] <= 1
        assert {"faithfulness", "drop_top", "drop_random", "peak", "true"} <= set(r)
    heat = np.load(out / "heatmaps.npz")
    assert heat["heatmaps"].shape[0] == len(rows) and list(heat["images"]) == [r["image"] for r in rows]
    manifest = json.loads((out / "manifest.json").read_text())
    assert {"report.html", "results.jsonl", "heatmaps.npz", "summary.json"} <= set(manifest["files"])
    assert any(k.startswith("grids/") for k in manifest["files"])
    assert "Overlays" in (out / "report.html").read_text()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["images"] == len(rows) and "mean_faithfulness" in summary


def test_target_label_method_and_bad_target(trained_run: str, shapes_dataset: str, tmp_path: Path) -> None:
    labels = json.loads(Path(trained_run, "labels.json").read_text())["labels"]
    out = tmp_path / "gc"
    assert main(["gradcam", trained_run, shapes_dataset, "--out", str(out), "--target", labels[1],
                 "--method", "gradcam++", "--no-faithfulness", "--overlay-size", "32"]) == 0
    rows = _rows(out)
    assert {r["target"] for r in rows} == {labels[1]} and "faithfulness" not in rows[0]
    bad = tmp_path / "bad"
    assert main(["gradcam", trained_run, shapes_dataset, "--out", str(bad), "--target", "zebra"]) == 2
    assert "target='zebra'" in failure(bad)["message"]
    assert main(["gradcam", trained_run, shapes_dataset, "--out", str(bad), "--layer", "nope"]) == 2
    assert "layer='nope'" in failure(bad)["message"]
    assert main(["gradcam", trained_run, shapes_dataset, "--out", str(bad), "--method", "scorecam"]) == 2


def test_shards_cover_the_split(trained_run: str, shapes_dataset: str, tmp_path: Path,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "gc"
    common = ["gradcam", trained_run, shapes_dataset, "--out", str(out), "--no-faithfulness",
              "--overlay-size", "32", "--split", "all"]  # 64 images: both shards get some
    assert main([*common, "--shard", "0/2"]) == 0
    monkeypatch.setenv("AWS_BATCH_JOB_ARRAY_INDEX", "1")
    assert main([*common, "--shard-count", "2"]) == 0
    a, b = (_rows(out / f"shard-0000{i}-of-00002") for i in (0, 1))
    keys_a, keys_b = {r["key"] for r in a}, {r["key"] for r in b}
    assert not keys_a & keys_b and keys_a and keys_b
    every = {line.split(",")[1] for line in Path(trained_run, "splits.csv").read_text().splitlines()[1:]}
    assert keys_a | keys_b == every


def test_folder_and_uri_list(trained_run: str, shapes_dataset: str, tmp_path: Path) -> None:
    keys = sorted(_test_keys(trained_run))[:3]
    listing = tmp_path / "images.txt"
    listing.write_text("".join(f"{shapes_dataset}/{k}\n" for k in keys))
    out = tmp_path / "gc"
    assert main(["gradcam", trained_run, str(listing), "--out", str(out), "--overlay-size", "32"]) == 0
    rows = _rows(out)
    assert len(rows) == 3 and all(r["true"] is None for r in rows)
    assert main(["gradcam", trained_run, str(listing), "--out", str(out), "--target", "true"]) == 2
    assert "--target true" in failure(out)["message"]


def test_gradcam_on_s3(trained_run: str, shapes_dataset: str, moto_server) -> None:
    run = copy_tree(trained_run, f"{moto_server.uri}/run")
    data = copy_tree(shapes_dataset, f"{moto_server.uri}/data")
    out = f"{moto_server.uri}/gc"
    assert main(["gradcam", run, data, "--out", out, "--overlay-size", "32"]) == 0
    store = open_store(out)
    manifest = json.loads(store.read_text("manifest.json"))
    rows = [json.loads(x) for x in store.read_text("results.jsonl").splitlines()]
    assert rows and all(r["image"].startswith("s3://") and r["overlay"] in manifest["files"] for r in rows)
