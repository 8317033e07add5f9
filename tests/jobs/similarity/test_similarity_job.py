"""End-to-end tests of ``headstart similarity`` on a tiny trained model, locally and on moto S3."""
from __future__ import annotations

import csv
import json
from pathlib import Path

from headstart.shared.runtime.cli import main
from headstart.shared.storage.store import open_store
from tests.helpers import copy_tree


def _leaky_dataset(shapes_dataset: str, tmp_path: Path) -> tuple[str, str, str]:
    """An ImageNet-layout copy of the shapes data with one training image also in test."""
    src, dst = open_store(shapes_dataset), open_store(tmp_path / "leaky")
    keys = sorted(src.list())
    for n, key in enumerate(keys):
        dst.write_bytes(f"{'test' if n % 4 == 0 else 'train'}/{key}", src.read_bytes(key))
    leaked = next(k for n, k in enumerate(keys) if n % 4 == 1)
    dst.write_bytes(f"test/{leaked.split('/')[0]}/leaked.jpg", src.read_bytes(leaked))
    return dst.uri, f"{dst.uri}/train/{leaked}", f"{dst.uri}/test/{leaked.split('/')[0]}/leaked.jpg"


def test_similarity_finds_leakage_and_duplicates(trained_run: str, shapes_dataset: str, tmp_path: Path) -> None:
    data, original, copy = _leaky_dataset(shapes_dataset, tmp_path)
    out = tmp_path / "sim"
    assert main(["similarity", trained_run, data, "--out", str(out), "--block-rows", "7",
                 "--leakage-threshold", "0.99999", "--duplicate-threshold", "0.99999"]) == 0
    leak = list(csv.DictReader((out / "leakage.csv").open()))
    assert {(r["image_a"], r["image_b"]) for r in leak} >= {(original, copy)} or \
        {(r["image_b"], r["image_a"]) for r in leak} >= {(original, copy)}
    assert all(r["split_a"] != r["split_b"] for r in leak)
    dups = list(csv.DictReader((out / "duplicates.csv").open()))
    assert any({r["image_a"], r["image_b"]} == {original, copy} for r in dups)
    rows = [json.loads(x) for x in (out / "neighbours.jsonl").read_text().splitlines()]
    first = next(r for r in rows if r["image"] == copy)
    assert first["neighbours"][0]["image"] == original
    assert first["neighbours"][0]["similarity"] > 0.9999
    summary = json.loads((out / "summary.json").read_text())
    assert summary["leakage"] >= 1 and summary["images"] == len(rows)
    for name in ("similarity_matrix.png", "embeddings.npz", "report.html", "manifest.json"):
        assert (out / name).is_file()
    assert "Train/test leakage" in (out / "report.html").read_text()


def test_similarity_on_s3(trained_run: str, shapes_dataset: str, moto_server) -> None:
    run = copy_tree(trained_run, f"{moto_server.uri}/run")
    data = copy_tree(shapes_dataset, f"{moto_server.uri}/data")
    out = f"{moto_server.uri}/sim"
    assert main(["similarity", run, data, "--out", out, "--split", "test"]) == 0
    store = open_store(out)
    summary = json.loads(store.read_text("summary.json"))
    assert summary["leakage"] is None and summary["images"] > 0
    assert "similarity_matrix.png" in json.loads(store.read_text("manifest.json"))["files"]
