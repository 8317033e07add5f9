"""The fast path (cached features) against the slow path (base every step); augmentation;
fine-tuning; a dataset and outputs on S3."""
from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np

from headstart.shared.runtime.cli import main
from tests.helpers import TINY


def _run(dataset: str, out: Path, *extra: str) -> dict:
    # These check the epoch loop's fast/slow paths and phases: the reference recipe.
    assert main(["train", dataset, "--out", str(out), *TINY, "--recipe", "reference", *extra]) == 0
    return json.loads((out / "metrics.json").read_text())


def test_fast_path_equals_slow_path_without_dropout(shapes_dataset: str, tmp_path: Path) -> None:
    # Same seed, same batches, no dropout: the only difference is the float16 feature cache,
    # so both paths must land on (nearly) the same head.
    args = ["--epochs", "3", "--dropout", "0", "--patience", "10"]
    _run(shapes_dataset, tmp_path / "fast", *args)
    _run(shapes_dataset, tmp_path / "slow", *args, "--no-fast-path")
    raw = np.random.default_rng(1).integers(0, 256, (8, 32, 32, 3)).astype("float32")
    fast = keras.models.load_model(tmp_path / "fast" / "model.keras").predict(raw, verbose=0)
    slow = keras.models.load_model(tmp_path / "slow" / "model.keras").predict(raw, verbose=0)
    np.testing.assert_allclose(fast, slow, atol=0.02)


def test_fast_path_matches_slow_path_accuracy(shapes_dataset: str, tmp_path: Path) -> None:
    args = ["--epochs", "8", "--seed", "3"]
    fast = _run(shapes_dataset, tmp_path / "fast", *args)
    slow = _run(shapes_dataset, tmp_path / "slow", *args, "--no-fast-path")
    assert fast["path"] == "fast" and slow["path"] == "slow"
    for split in ("valid", "test"):
        assert abs(fast["splits"][split]["accuracy"] - slow["splits"][split]["accuracy"]) <= 0.25


def test_augmented_views_are_cached_and_logged(shapes_dataset: str, tmp_path: Path, caplog) -> None:
    caplog.set_level("INFO")
    _run(shapes_dataset, tmp_path / "aug", "--epochs", "2", "--augment-views", "2")
    assert "caching 2 augmented view(s) per training image" in caplog.text
    assert "features train: 144/144" in caplog.text  # 48 train images x (1 plain + 2 augmented)


def test_fine_tune_phase(shapes_dataset: str, tmp_path: Path, caplog) -> None:
    caplog.set_level("INFO")
    metrics = _run(shapes_dataset, tmp_path / "ft", "--epochs", "2", "--fine-tune-layers", "2",
                   "--fine-tune-epochs", "2")
    assert set(metrics["best_epoch"]) == {"head", "fine_tune"}
    assert "BatchNorm kept in inference mode" in caplog.text
    history = json.loads((tmp_path / "ft" / "history.json").read_text())
    assert history["phase_starts"] == {"head": 0, "fine_tune": 2}


def test_dataset_and_outputs_on_s3(shapes_dataset: str, s3_bucket: str, tmp_path: Path) -> None:
    from headstart.shared.storage.store import open_store

    data = open_store(f"{s3_bucket}/data")
    for path in Path(shapes_dataset).rglob("*.jpg"):
        data.upload_file(path.relative_to(shapes_dataset).as_posix(), path)
    run, ev = f"{s3_bucket}/run", f"{s3_bucket}/eval"
    assert main(["train", data.uri, "--out", run, *TINY, "--epochs", "1"]) == 0
    assert main(["evaluate", run, data.uri, "--out", ev]) == 0
    run_store, ev_store = open_store(run), open_store(ev)
    assert run_store.exists("manifest.json") and run_store.exists("model.keras")
    assert not list(run_store.list("checkpoint"))
    assert "Confusion matrix" in ev_store.read_text("report.html")
    assert json.loads(ev_store.read_text("metrics.json"))["n"] > 0
