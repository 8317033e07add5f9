"""The merge's memory is flat in the number of images, and its on-disk split is the library's."""
from __future__ import annotations

import csv
import hashlib
import io
import random
import tracemalloc

from headstart.jobs.scrape import placement, records
from headstart.jobs.scrape.merge import finalize
from headstart.jobs.scrape.mergeindex import MergeIndex
from headstart.jobs.scrape.spec import SplitSettings
from headstart.shared.data.splits import stratified_split
from headstart.shared.storage import manifest
from headstart.shared.storage.store import open_store


def _scraped(root, n: int, labels: int = 7):
    """A finished one-shard scrape of ``n`` distinct tiny images, as records + staged objects."""
    store = open_store(str(root))
    folder = records.shard_dir(0, 1)
    rows = []
    for i in range(n):
        data = f"img{i}".encode()
        sha = hashlib.sha256(data).hexdigest()
        store.write_bytes(records.object_key(sha, "jpg"), data)
        rows.append({"index": i, "url": f"http://example.com/{i}.jpg", "label": f"l{i % labels}",
                     "status": "ok", "sha": sha, "ext": "jpg", "stored_bytes": len(data),
                     "stored_sha256": sha, "attempts": 1})
    for start in range(0, n, 500):
        buf = io.StringIO()
        writer = csv.DictWriter(buf, records.FIELDS, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows[start:start + 500])
        store.write_text(f"{folder}/part-t-{start:08d}.csv", buf.getvalue())
    store.write_text(f"{folder}/{records.DONE}", "{}")
    return store


def _peak(store) -> int:
    tracemalloc.start()
    try:
        finalize(store, SplitSettings(), shard_count=1)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_merge_memory_does_not_grow_with_images(tmp_path, monkeypatch):
    """Measured with tracemalloc, the manifest's own per-file entries left out (they are the
    manifest): ~540 bytes per extra image remain, LocalStore.list's sorted listing of the split
    folders (S3 listings stream). Before the on-disk index: 2.8 KB per image with the manifest
    (20k images: 55 MB peak then, 26 MB now with the manifest, 5.9 MB without)."""
    monkeypatch.setattr(manifest.RunOutput, "record", lambda self, key, size, digest: None)
    monkeypatch.setattr(placement, "_BATCH", 100)  # both sizes fill the move/delete batches
    warm, small, large = (_scraped(tmp_path / n, k) for n, k in (("w", 50), ("s", 500), ("l", 2500)))
    _peak(warm)  # imports and caches
    growth = _peak(large) - _peak(small)  # both first merges: every image moves into place
    assert growth < 2000 * 900, f"{growth / 2000:.0f} bytes per extra image"
    assert len(list(large.list("train"))) + len(list(large.list("valid"))) + len(list(large.list("test"))) == 2500


def test_index_splits_exactly_like_the_library():
    rng = random.Random(3)
    rows, by_label = [], {}
    for i in range(600):
        label = rng.choice("abcde")
        sha = hashlib.sha256(str(rng.randrange(500)).encode()).hexdigest()  # duplicates + conflicts
        rows.append({"index": i, "status": "ok", "sha": sha, "label": label, "ext": "jpg",
                     "stored_bytes": 1, "stored_sha256": sha})
    for drop in (False, True):
        first: dict[str, str] = {}
        labels: dict[str, set] = {}
        for row in rows:
            first.setdefault(row["sha"], row["label"])
            labels.setdefault(row["sha"], set()).add(row["label"])
        by_label = {}
        for sha, label in first.items():
            if not (drop and len(labels[sha]) > 1):
                by_label.setdefault(label, []).append(sha)
        expected = {sha: split for keys in stratified_split(by_label, 0.2, 0.1, 11).values()
                    for sha, split in keys.items()}
        with MergeIndex() as index:
            index.add_images(iter(rows), seed=11)
            index.assign_splits(0.2, 0.1, drop_conflicts=drop)
            got = {sha: split for split, _, sha, *_ in index.placed_images()}
        assert got == expected
