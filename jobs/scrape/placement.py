"""Move staged images to their place in the dataset and remove what no longer belongs.

Idempotent: an image already in place is left alone, one placed by an earlier merge under
another split is moved, and files of an earlier merge that the new plan does not hold are
deleted, so a re-merge (new seed, new fractions, more shards' records) converges.

Only files a merge of this output placed are ever moved or deleted: their paths are kept in
``_scrape/placed.txt`` (written *before* anything moves, so a crash mid-way still knows them).
Anything else in the split folders is the user's and is left alone (unless ``overwrite``).
"""
from __future__ import annotations

import logging
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterable, Iterator

from headstart.jobs.scrape.mergeindex import MergeIndex
from headstart.jobs.scrape.records import ROOT
from headstart.shared.data.splits import SPLITS
from headstart.shared.storage.store import Store

log = logging.getLogger(__name__)
_IO_THREADS = 32  # object stores reward parallel requests


def _move(store: Store, src: str, dst: str) -> None:
    if not store.exists(src):
        raise RuntimeError(f"staged image {store.uri}/{src} is missing; delete {store.uri}/{ROOT} "
                           "and rerun the scrape to fetch it again")
    store.move(src, dst)


PLACED = f"{ROOT}/placed.txt"
_BATCH = 2000  # moves/deletes submitted at a time: memory stays flat in the number of images


def read_placed(store: Store) -> set[str]:
    """Dataset paths an earlier merge of this output placed (empty when none did)."""
    if not store.exists(PLACED):
        return set()
    return {line for line in store.read_text(PLACED).splitlines() if line}


def _placed_lines(store: Store) -> Iterator[str]:
    if not store.exists(PLACED):
        return
    with store.open(PLACED) as fh:
        for raw in fh:
            if line := raw.decode("utf-8").rstrip("\n"):
                yield line


def _write_placed(store: Store, paths: Iterable[str]) -> None:
    """Stream ``paths`` (sorted) to ``placed.txt`` through a local temporary file."""
    with tempfile.TemporaryDirectory(prefix="headstart-placed-") as tmp:
        path = Path(tmp) / "placed.txt"
        with open(path, "w", encoding="utf-8") as fh:
            for key in paths:
                fh.write(f"{key}\n")
        store.upload_file(PLACED, path)


def _batched(items: Iterable, size: int = _BATCH) -> Iterator[list]:
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def place_images(store: Store, index: MergeIndex, targets: Iterable[tuple[str, str]],
                 overwrite: bool = False) -> int:
    """``targets``: (dataset path, staged key). Afterwards the split folders hold them, and no
    longer hold what earlier merges placed there; other files stay unless ``overwrite``.
    The key sets live in ``index`` (on disk); returns the number of images placed."""
    db = index.db
    db.execute("CREATE TEMP TABLE targets (path TEXT PRIMARY KEY, staged TEXT, name TEXT)")
    db.execute("BEGIN")
    db.executemany("INSERT OR REPLACE INTO targets VALUES (?, ?, ?)",
                   ((path, staged, path.rsplit("/", 1)[-1]) for path, staged in targets))
    db.execute("INSERT OR IGNORE INTO keys SELECT 'target', path FROM targets")
    db.execute("COMMIT")
    index.add_keys("existing", (key for split in SPLITS for key in store.iter_keys(split)))
    index.add_keys("placed", _placed_lines(store))
    # Set algebra in SQL (INSERT ... SELECT), never in Python sets.
    db.execute("BEGIN")
    db.execute("INSERT OR IGNORE INTO keys SELECT 'mine', path FROM keys k WHERE kind = 'existing'"
               + ("" if overwrite else " AND EXISTS (SELECT 1 FROM keys p WHERE p.kind = 'placed' "
                                       "AND p.path = k.path)"))
    db.execute("CREATE TEMP TABLE names (name TEXT PRIMARY KEY, path TEXT)")
    db.execute("INSERT OR REPLACE INTO names SELECT substr(path, length(rtrim(path, replace(path, '/', ''))) + 1), "
               "path FROM keys k WHERE kind = 'mine' AND NOT EXISTS (SELECT 1 FROM targets t WHERE t.path = k.path)")
    db.execute("CREATE TEMP TABLE moves AS SELECT coalesce(n.path, t.staged) AS src, t.path AS dst, "
               "n.path IS NOT NULL AS from_dataset FROM targets t LEFT JOIN names n ON n.name = t.name "
               "WHERE NOT EXISTS (SELECT 1 FROM keys e WHERE e.kind = 'existing' AND e.path = t.path) "
               "ORDER BY t.path")
    db.execute("INSERT OR IGNORE INTO keys SELECT 'moved', src FROM moves WHERE from_dataset")
    db.execute("COMMIT")
    shown = [k for _, k in zip(range(3), index.keys("existing", without=("mine", "target")))]
    if shown:
        log.warning("left files in the dataset folders that no scrape wrote (e.g. %s); training "
                    "on this folder will include them", ", ".join(shown))
    # Before anything moves, so a crash mid-way still knows every file it may have placed.
    _write_placed(store, index.keys_union(("placed", "target")))
    moved = stale = 0
    with ThreadPoolExecutor(_IO_THREADS) as pool:
        last = 0
        while batch := db.execute("SELECT rowid, src, dst FROM moves WHERE rowid > ? ORDER BY rowid "
                                  "LIMIT ?", (last, _BATCH)).fetchall():
            last = batch[-1][0]
            list(pool.map(lambda m: _move(store, m[1], m[2]), batch))
            moved += len(batch)
        for chunk in _batched(index.keys("mine", without=("target", "moved"))):
            list(pool.map(store.delete, chunk))
            stale += len(chunk)
        for chunk in _batched(store.iter_keys(f"{ROOT}/objects")):
            list(pool.map(store.delete, chunk))
    _write_placed(store, index.keys("target"))
    n = index.count("target")
    log.info("placed %d images (%d moved, %d stale removed)", n, moved, stale)
    return n
