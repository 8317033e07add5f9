"""--pooled-cache (default) against --no-pooled-cache (the reference head on spatial maps)."""
from __future__ import annotations

from pathlib import Path

import keras
import numpy as np

from headstart.shared.runtime.cli import main
from tests.helpers import TINY


def test_pooled_cache_equals_spatial_cache_without_dropout(shapes_dataset: str, tmp_path: Path,
                                                           caplog) -> None:
    caplog.set_level("INFO")
    args = ["--recipe", "reference", "--epochs", "3", "--dropout", "0", "--patience", "10"]
    assert main(["train", shapes_dataset, "--out", str(tmp_path / "pooled"), *TINY, *args]) == 0
    assert "caching pooled feature statistics" in caplog.text
    caplog.clear()
    assert main(["train", shapes_dataset, "--out", str(tmp_path / "spatial"), *TINY, *args,
                 "--no-pooled-cache"]) == 0
    assert "caching pooled feature statistics" not in caplog.text
    # Same batches and weights; the only difference is where the mean over positions is taken.
    raw = np.random.default_rng(1).integers(0, 256, (8, 32, 32, 3)).astype("float32")
    pooled = keras.models.load_model(tmp_path / "pooled" / "model.keras").predict(raw, verbose=0)
    spatial = keras.models.load_model(tmp_path / "spatial" / "model.keras").predict(raw, verbose=0)
    np.testing.assert_allclose(pooled, spatial, atol=0.02)
