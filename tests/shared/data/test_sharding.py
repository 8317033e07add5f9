"""Deterministic sharding: --shard I/N and AWS Batch array indexes."""
from __future__ import annotations

import pytest

from headstart.shared.runtime.errors import UserError
from headstart.shared.data.sharding import parse_shard, resolve_shard, select, shard_name


def test_parse_and_resolve() -> None:
    assert parse_shard(" 1 / 4 ") == (1, 4)
    for bad in ("4/4", "-1/2", "a/b", "1"):
        with pytest.raises(UserError, match="shard="):
            parse_shard(bad)
    assert resolve_shard(None, {}) == (0, 1)
    assert resolve_shard("2/3", {"AWS_BATCH_JOB_ARRAY_INDEX": "0"}, 5) == (2, 3)  # flag wins
    assert resolve_shard(None, {"AWS_BATCH_JOB_ARRAY_INDEX": "3"}, 5) == (3, 5)
    with pytest.raises(UserError, match="shard-count"):
        resolve_shard(None, {"AWS_BATCH_JOB_ARRAY_INDEX": "3"})
    with pytest.raises(UserError, match="AWS_BATCH_JOB_ARRAY_INDEX='7'"):
        resolve_shard(None, {"AWS_BATCH_JOB_ARRAY_INDEX": "7"}, 5)
    with pytest.raises(UserError, match="needs a shard index"):
        resolve_shard(None, {}, 4)
    assert shard_name(1, 4) == "shard-00001-of-00004"


def test_shards_are_disjoint_complete_and_order_independent() -> None:
    keys = [f"s3://b/img/{i}.jpg" for i in range(500)]
    parts = [select(keys, i, 4) for i in range(4)]
    assert sorted(k for p in parts for k in p) == sorted(keys)
    assert sum(len(p) for p in parts) == len(keys) and all(len(p) > 80 for p in parts)
    assert set(select(list(reversed(keys)), 2, 4)) == set(parts[2])


def test_published_shards_need_one_count_and_every_index():
    from headstart.shared.data.sharding import published_shards

    keys = ["shard-00001-of-00002/manifest.json", "shard-00000-of-00002/manifest.json",
            "shard-00000-of-00002/rows.csv", "old/shard-00000-of-00009/manifest.json"]
    assert published_shards(keys, "s3://b/f") == ["shard-00000-of-00002", "shard-00001-of-00002"]
    assert published_shards(["manifest.json"], "s3://b/f") == []
    with pytest.raises(UserError, match=r"missing shards \[1\] of 2"):
        published_shards(keys[1:], "s3://b/f")
    with pytest.raises(UserError, match=r"different counts \[2, 3\]"):
        published_shards(keys + ["shard-00000-of-00003/manifest.json"], "s3://b/f")
