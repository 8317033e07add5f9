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
from concurrent.futures import ThreadPoolExecutor

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


def read_placed(store: Store) -> set[str]:
    """Dataset paths an earlier merge of this output placed (empty when none did)."""
    if not store.exists(PLACED):
        return set()
    return {line for line in store.read_text(PLACED).splitlines() if line}


def _write_placed(store: Store, paths) -> None:
    store.write_text(PLACED, "".join(f"{p}\n" for p in sorted(paths)))


def place_images(store: Store, targets: dict[str, str], overwrite: bool = False) -> None:
    """``targets``: dataset path -> staged key. Afterwards the split folders hold them, and no
    longer hold what earlier merges placed there; other files stay unless ``overwrite``."""
    placed = read_placed(store)
    existing = {key for split in SPLITS for key in store.list(split)}
    mine = existing if overwrite else existing & placed
    foreign = sorted(existing - mine - set(targets))
    if foreign:
        log.warning("left %d files in the dataset folders that no scrape wrote (e.g. %s); "
                    "training on this folder will include them", len(foreign), ", ".join(foreign[:3]))
    _write_placed(store, placed | set(targets))  # before anything moves: a crash keeps them known
    existing = mine | (existing & set(targets))
    by_name = {key.rsplit("/", 1)[-1]: key for key in existing if key not in targets}
    moves = []
    for path, staged in sorted(targets.items()):
        if path not in existing:
            previous = by_name.pop(path.rsplit("/", 1)[-1], None)
            moves.append((previous or staged, path))
    stale = sorted(set(existing) - set(targets) - {src for src, _ in moves})
    with ThreadPoolExecutor(_IO_THREADS) as pool:
        list(pool.map(lambda m: _move(store, *m), moves))
        list(pool.map(store.delete, stale))
        list(pool.map(store.delete, list(store.list(f"{ROOT}/objects"))))
    _write_placed(store, targets)
    log.info("placed %d images (%d moved, %d stale removed)", len(targets), len(moves), len(stale))
