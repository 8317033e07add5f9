"""The feature-shard format: written row block by row block, joined back in the dataset's order."""
from __future__ import annotations

import json

import numpy as np
import pytest

from headstart.shared.data.datasets import Item
from headstart.shared.data.images import Skipped
from headstart.shared.model.featureshards import (ShardWriter, find_shards, pooled_stats,
                                                  read_feature_set)
from headstart.shared.runtime.errors import UserError
from headstart.shared.storage.manifest import RunOutput
from headstart.shared.storage.store import open_store

META = {"dataset": "/data/x", "labels": ["a", "b"], "layout": "flat", "backbone": "tiny", "image_size": 32,
        "weights": "none", "preprocess": "unit", "digest": "d" * 32, "valid_fraction": 0.15,
        "test_fraction": 0.15, "seed": 1, "max_per_label": None, "min_per_label": 2, "min_side": 8,
        "max_pixels": 100}


def _write(root: str, count: int, spatial: bool = False, n: int = 12) -> np.ndarray:
    """``n`` rows (train positions 0..n-1, row i's maps all equal to i) over ``count`` shards."""
    maps = np.stack([np.full((2, 2, 3), i, np.float32) for i in range(n)])
    for s in range(count):
        out = RunOutput(open_store(root).child(f"shard-{s:05d}-of-{count:05d}"), "features")
        writer = ShardWriter(out, 3, (2, 2, 3) if spatial else None)
        mine = [i for i in range(n) if i % count == s]
        for i in mine:  # one row per add: block boundaries must not matter
            writer.add([("train", i, Item(f"k{i}.jpg", "ab"[i % 2]))], maps[i:i + 1])
        writer.skip("train", Skipped(f"bad{s}.jpg", "a", "corrupt", "not an image"))
        writer.publish({**META, "shard": s, "shard_count": count})
    return maps


def test_shards_join_in_dataset_order_on_both_stores(store_uri: str) -> None:
    maps = _write(store_uri, 3, spatial=True)
    fs = read_feature_set(store_uri, spatial=True)
    assert [item.key for item in fs.index.splits["train"]] == [f"k{i}.jpg" for i in range(12)]
    assert fs.labels["train"].tolist() == [i % 2 for i in range(12)]
    assert fs.pooled["train"].dtype == np.float16 and fs.pooled["train"].shape == (12, 3)
    assert np.array_equal(fs.pooled["train"][:, 0], np.arange(12, dtype=np.float16))
    assert np.array_equal(fs.spatial["train"], maps.astype(np.float16))
    assert sorted(s.key for s in fs.skipped["train"]) == ["bad0.jpg", "bad1.jpg", "bad2.jpg"]


def test_pooled_stats_are_the_mean_and_mean_of_squares() -> None:
    maps = np.random.default_rng(0).normal(size=(4, 3, 5, 7)).astype(np.float32)
    stats = pooled_stats(maps)
    m16 = maps.astype(np.float16).astype(np.float32)
    assert np.allclose(stats[:, 0], m16.mean(axis=(1, 2))) and np.allclose(stats[:, 1], (m16 ** 2).mean(axis=(1, 2)))


def test_missing_mixed_damaged_and_pooled_only_shards_are_refused(tmp_path) -> None:
    root = str(tmp_path / "f")
    _write(root, 3)
    (tmp_path / "f" / "shard-00001-of-00003" / "manifest.json").unlink()  # a child still running
    with pytest.raises(UserError, match=r"missing feature shard\(s\) \[1\] of 3"):
        find_shards(open_store(root))
    _write(root, 3)
    with pytest.raises(UserError, match="--spatial"):
        read_feature_set(root, spatial=True)
    _write(root, 2)  # a rerun with another shard count beside the old one
    with pytest.raises(UserError, match="different counts"):
        find_shards(open_store(root))
    other = str(tmp_path / "g")
    _write(other, 2)
    shard = tmp_path / "g" / "shard-00001-of-00002"
    (shard / "pooled.npy").write_bytes((shard / "pooled.npy").read_bytes()[:-4])
    with pytest.raises(UserError, match="damaged"):
        read_feature_set(other, spatial=False)
    meta = json.loads((shard / "features.json").read_text())
    (shard / "features.json").write_text(json.dumps({**meta, "image_size": 64}))
    with pytest.raises(UserError, match="disagree on image_size"):
        read_feature_set(other, spatial=False)
    with pytest.raises(UserError, match="no published feature shards"):
        find_shards(open_store(str(tmp_path / "nothing")))
