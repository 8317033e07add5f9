"""Deterministic sharding of work lists for ``--shard I/N`` and AWS Batch array jobs.

A key belongs to shard ``sha256(key) mod N``: stable across processes, machines and list
order, so N array children each take a disjoint share and together cover every key once.
"""
from __future__ import annotations

import hashlib
import os
import re
from typing import Callable, Iterable, Mapping, TypeVar

from pydantic import Field, field_validator

from headstart.shared.runtime.errors import UserError
from headstart.shared.runtime.specs import JobSpec

T = TypeVar("T")
ARRAY_INDEX_ENV = "AWS_BATCH_JOB_ARRAY_INDEX"
_SHARD_RE = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


def parse_shard(value: str) -> tuple[int, int]:
    """``"i/N"`` -> (i, N) with 0 <= i < N; raise :class:`UserError` otherwise."""
    match = _SHARD_RE.match(str(value))
    if not match or not 0 <= int(match[1]) < int(match[2]):
        raise UserError(f"`shard` must be I/N with 0 <= I < N (e.g. 0/4). Received: shard={value!r}")
    return int(match[1]), int(match[2])


def resolve_shard(spec_value: str | None, env: Mapping[str, str] | None = None,
                  count: int | None = None) -> tuple[int, int]:
    """(index, count): ``--shard`` wins; else ``AWS_BATCH_JOB_ARRAY_INDEX`` with ``count``
    (the array size, from ``--shard-count``); else the whole list, (0, 1)."""
    env = os.environ if env is None else env
    if spec_value:
        return parse_shard(spec_value)
    array_index = env.get(ARRAY_INDEX_ENV)
    if array_index is None:
        if count and count > 1:
            raise UserError(f"--shard-count {count} needs a shard index: pass --shard I/N or run "
                            f"as an AWS Batch array job ({ARRAY_INDEX_ENV})")
        return 0, 1
    if not count:
        raise UserError(f"{ARRAY_INDEX_ENV} is set but the number of shards is not: set "
                        "--shard-count (or HEADSTART_SHARD_COUNT) to the array size")
    try:
        return parse_shard(f"{array_index}/{count}")
    except UserError:
        raise UserError(f"{ARRAY_INDEX_ENV}={array_index!r} must be an integer in [0, {count}) "
                        f"for --shard-count {count}") from None


def shard_of(key: str, count: int) -> int:
    """The shard a key belongs to."""
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % count


def select(items: Iterable[T], index: int, count: int, key: Callable[[T], str] = str) -> list[T]:
    """The items of shard ``index`` of ``count``, in their original order."""
    if count == 1:
        return list(items)
    return [item for item in items if shard_of(key(item), count) == index]


def shard_name(index: int, count: int) -> str:
    """The folder name of one shard's outputs, e.g. ``shard-00001-of-00004``."""
    return f"shard-{index:05d}-of-{count:05d}"


_PUBLISHED = re.compile(r"^shard-(\d{5})-of-(\d{5})/manifest\.json$")


def published_shards(keys: Iterable[str], uri: str, what: str = "shards") -> list[str]:
    """The shard folder names (``shard-I-of-N``) whose manifest is among ``keys`` (a store's
    listing, relative to ``uri``): all of one count, every index present; ``[]`` when there
    are none. A mix of counts or a missing index is a :class:`UserError` naming them."""
    found: dict[int, set[int]] = {}
    for key in keys:
        m = _PUBLISHED.match(key)
        if m:
            found.setdefault(int(m[2]), set()).add(int(m[1]))
    if not found:
        return []
    if len(found) > 1:
        raise UserError(f"{uri!r} holds {what} of different counts {sorted(found)}: remove the stale ones")
    (count, indexes), = found.items()
    missing = sorted(set(range(count)) - indexes)
    if missing:
        raise UserError(f"{uri!r} is missing {what} {missing[:10]} of {count}: rerun those array "
                        "children first")
    return [shard_name(i, count) for i in range(count)]


class ShardSpec(JobSpec):
    """``--shard I/N`` and ``--shard-count`` for jobs that fan out as AWS Batch array jobs."""

    shard: str | None = Field(None, description="I/N: process only this deterministic share "
                              "(default: AWS_BATCH_JOB_ARRAY_INDEX/--shard-count)")
    shard_count: int | None = Field(None, ge=1, le=100_000, description="number of shards of an "
                                    "AWS Batch array job (its array size)")

    @field_validator("shard")
    @classmethod
    def _shard(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                parse_shard(value)
            except UserError as exc:
                raise ValueError(str(exc)) from None
        return value


def shard_output(out: str, job: str, shard: str | None, shard_count: int | None):
    """The run output of this process's shard of ``job`` (``OUT/shard-…`` when sharded, else
    ``OUT``), unpublished until its manifest is written; with the shard index and count."""
    from headstart.shared.storage.manifest import RunOutput
    from headstart.shared.storage.store import open_store

    index, count = resolve_shard(shard, count=shard_count)
    root = open_store(out)
    run = RunOutput(root.child(shard_name(index, count)) if count > 1 else root, job)
    run.unpublish()
    return run, index, count
