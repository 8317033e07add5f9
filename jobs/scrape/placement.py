"""Move staged images to their place in the dataset and remove what no longer belongs.

Idempotent: an image already in place is left alone, one placed by an earlier merge under
another split is moved, and files of an earlier merge that the new plan does not hold are
deleted, so a re-merge (new seed, new fractions, more shards' records) converges.
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


def place_images(store: Store, targets: dict[str, str]) -> None:
    """``targets``: dataset path -> staged key. Afterwards the split folders hold exactly them."""
    existing = {key for split in SPLITS for key in store.list(split)}
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
    log.info("placed %d images (%d moved, %d stale removed)", len(targets), len(moves), len(stale))
