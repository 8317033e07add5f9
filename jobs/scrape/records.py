"""The scrape's working state under ``<out>/_scrape/``: per-URL records and staged images.

* ``_scrape/objects/<sha[:2]>/<sha>.<ext>`` — validated images named by the SHA-256 of the
  downloaded bytes (one object per distinct download, whatever its label or shard);
* ``_scrape/shards/<i>-of-<N>/part-*.csv`` — one row per finished URL, written atomically in
  batches *after* the image is staged, so a crash loses at most one unwritten batch;
* ``_scrape/shards/<i>-of-<N>/spec.json`` and ``_DONE.json`` — the settings and completion.

A rerun skips every URL with a record; the merge step turns the records into the dataset.
"""
from __future__ import annotations

import csv
import heapq
import io
import json
import logging
import os
import resource
import tempfile
import time
from contextlib import ExitStack, contextmanager
from typing import Iterator

from headstart.shared.storage.store import Store

log = logging.getLogger(__name__)

ROOT = "_scrape"
FIELDS = ["index", "url", "label", "status", "http_code", "bytes", "width", "height", "format",
          "sha", "ext", "stored_bytes", "stored_sha256", "attempts", "seconds", "final_url", "error"]
DONE = "_DONE.json"
SHARD_SPEC = "spec.json"


def shard_dir(index: int, count: int) -> str:
    return f"{ROOT}/shards/{index:05d}-of-{count:05d}"


def object_key(sha: str, ext: str) -> str:
    return f"{ROOT}/objects/{sha[:2]}/{sha}.{ext}"


class RecordWriter:
    """Buffers finished records and writes them as sorted, atomic part files."""

    def __init__(self, store: Store, folder: str, every: int, max_seconds: float = 30.0) -> None:
        self.store, self.folder, self.every, self.max_seconds = store, folder, every, max_seconds
        self.run_id = time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + f"-{os.getpid()}"
        self.buffer: list[dict] = []
        self.parts = 0
        self._last = time.monotonic()

    def add(self, record: dict) -> None:
        self.buffer.append(record)
        if len(self.buffer) >= self.every or time.monotonic() - self._last > self.max_seconds:
            self.flush()

    def flush(self) -> None:
        self._last = time.monotonic()
        if not self.buffer:
            return
        # The images these records name are on disk before the records say so.
        self.store.commit_staged()
        rows = sorted(self.buffer, key=lambda r: int(r["index"]))
        buf = io.StringIO()
        writer = csv.DictWriter(buf, FIELDS, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        self.store.write_text(f"{self.folder}/part-{self.run_id}-{self.parts:06d}.csv", buf.getvalue())
        self.parts += 1
        self.buffer = []


def part_keys(store: Store, folder: str) -> list[str]:
    return [k for k in store.list(folder) if k.rsplit("/", 1)[-1].startswith("part-")]


def read_part(store: Store, key: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(store.read_text(key))))


def done_indices(store: Store, folder: str, total: int) -> tuple[bytearray, int]:
    """A bitmap (1 bit per URL, so memory stays flat) of indices with a record, and their count."""
    bits = bytearray((total + 7) // 8)
    count = 0
    for key in part_keys(store, folder):
        for row in read_part(store, key):
            i = int(row["index"])
            if 0 <= i < total and not bits[i >> 3] & (1 << (i & 7)):
                bits[i >> 3] |= 1 << (i & 7)
                count += 1
    return bits, count


def is_done(bits: bytearray, index: int) -> bool:
    return bool(bits[index >> 3] & (1 << (index & 7)))


def read_json(store: Store, key: str) -> dict | None:
    try:
        return json.loads(store.read_text(key))
    except FileNotFoundError:
        return None


_FAN_IN = 32  # part files merged at once: memory is ~_FAN_IN read buffers, whatever the count


@contextmanager
def merged_records(store: Store, keys: list[str]) -> Iterator[Iterator[dict]]:
    """All records of ``keys`` in index order (a k-way merge of sorted parts kept on local disk,
    so memory does not grow with the number of URLs); a repeated index is yielded once, from
    the first part that holds it. More than ``_FAN_IN`` parts (a slow scrape writes one every
    30 s) are first merged in groups into sorted local runs, so at most ``_FAN_IN`` files are
    open and buffered at a time."""
    with tempfile.TemporaryDirectory(prefix="headstart-records-") as tmp:
        sources: list[tuple[str, bool]] = [(key, False) for key in keys]  # (key or path, is local)
        level = 0
        while len(sources) > _FAN_IN:
            runs = []
            for g in range(0, len(sources), _FAN_IN):
                path = os.path.join(tmp, f"run-{level}-{g // _FAN_IN:06d}.csv")
                with _open_sources(store, sources[g:g + _FAN_IN]) as rows, \
                        open(path, "w", newline="", encoding="utf-8") as fh:
                    writer = csv.DictWriter(fh, FIELDS, extrasaction="ignore", lineterminator="\n")
                    writer.writeheader()
                    writer.writerows(rows)
                for source, local in sources[g:g + _FAN_IN]:
                    if local:
                        os.unlink(source)  # merged into the next level's run
                runs.append((path, True))
            sources, level = runs, level + 1
        with _open_sources(store, sources) as rows:
            yield rows


@contextmanager
def _open_sources(store: Store, sources: list[tuple[str, bool]]) -> Iterator[Iterator[dict]]:
    _allow_open_files(len(sources) + 64)
    with ExitStack() as stack:  # local copies (S3: downloads) and open files, closed on exit
        paths = [source if local else stack.enter_context(store.local_copy(source))
                 for source, local in sources]
        handles = [stack.enter_context(open(p, newline="", encoding="utf-8")) for p in paths]
        streams = [csv.DictReader(h) for h in handles]
        yield _unique(heapq.merge(*streams, key=lambda r: int(r["index"])))


def _allow_open_files(needed: int) -> None:
    """The merge keeps one file open per part; raise the soft limit towards the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def _unique(rows: Iterator[dict]) -> Iterator[dict]:
    last = None
    for row in rows:
        if row["index"] != last:
            last = row["index"]
            yield row
