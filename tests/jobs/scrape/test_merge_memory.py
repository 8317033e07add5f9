"""The merge's memory is flat in the number of images, and its on-disk split is the library's."""
from __future__ import annotations

import csv
import hashlib
import io
import random
import tracemalloc

from headstart.jobs.scrape import mergeindex, placement, records
from headstart.jobs.scrape.merge import finalize
from headstart.jobs.scrape.mergeindex import MergeIndex
from headstart.jobs.scrape.spec import SplitSettings
from headstart.shared.data.splits import stratified_split
from headstart.shared.storage import manifest
from headstart.shared.storage.store import open_store


def _scraped(root, n: int, labels: int = 7):
    """A finished one-shard scrape of ``n`` distinct tiny images, as records (parts of 100)
    + staged objects."""
    store = open_store(str(root))
    folder = records.shard_dir(0, 1)
    rows = []
    for i in range(n):
        data = f"img{i}".encode()
        sha = hashlib.sha256(data).hexdigest()
        obj = root / records.object_key(sha, "jpg")  # plain writes (no fsync): a faster setup
        obj.parent.mkdir(parents=True, exist_ok=True)
        obj.write_bytes(data)
        rows.append({"index": i, "url": f"http://example.com/{i}.jpg", "label": f"l{i % labels}",
                     "status": "ok", "sha": sha, "ext": "jpg", "stored_bytes": len(data),
                     "stored_sha256": sha, "attempts": 1})
    for start in range(0, n, 100):
        buf = io.StringIO()
        writer = csv.DictWriter(buf, records.FIELDS, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows[start:start + 100])
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
    """Measured with tracemalloc, manifest included: the merge's working set, the manifest's
    file list and the listings of the split and staging folders all live on local disk or
    stream. Before: ~1.3 KB per extra image with the manifest (the manifest dict, its JSON
    built in memory, LocalStore.list's sorted listing); now a few bytes (bench/merge_memory.py
    measures RSS too, 2k vs 20k)."""
    # Both sizes fill every bounded buffer: move/delete batches, streamed query batches,
    # pending manifest rows; and both spill the manifest's file list to disk.
    monkeypatch.setattr(placement, "_BATCH", 100)
    monkeypatch.setattr(records, "_FAN_IN", 4)  # 5 and 25 parts: both merged in levels
    monkeypatch.setattr(mergeindex, "_FETCH", 100)
    monkeypatch.setattr(manifest.FileRecords, "_FLUSH", 100)
    monkeypatch.setattr(manifest.FileRecords, "_FETCH", 100)
    monkeypatch.setattr(manifest.FileRecords, "__init__",
                        _spilling_at(manifest.FileRecords.__init__, 200))  # both sizes spill to disk
    warm, small, large = (_scraped(tmp_path / n, k) for n, k in (("w", 500), ("s", 500), ("l", 2500)))
    _peak(warm)  # imports and caches
    growth = _peak(large) - _peak(small)  # both first merges: every image moves into place
    assert growth < 2000 * 60, f"{growth / 2000:.0f} bytes per extra image"
    published = manifest.read_manifest(large, verify=True)  # readers are unchanged
    dataset = [k for split in ("train", "valid", "test") for k in large.list(split)]
    assert len(dataset) == 2500 and set(published["files"]) == {*dataset, "scrape_report.csv",
                                                                "scrape_summary.json"}
    assert large.read_text(manifest.MANIFEST) == manifest.to_json(published)


def _spilling_at(init, spill_at: int):
    def patched(self, spill_at_: int = spill_at) -> None:
        init(self, spill_at=spill_at_)
    return patched


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


def test_records_merge_in_levels_like_one_merge(tmp_path, monkeypatch):
    """More parts than the fan-in: merged through sorted local runs, same rows, the first
    part's copy of a repeated index kept (a rerun may record a URL again)."""
    store = open_store(str(tmp_path))
    rng = random.Random(5)
    keys, first = [], {}
    for p in range(23):
        idx = sorted(rng.sample(range(400), 30))
        buf = io.StringIO()
        writer = csv.DictWriter(buf, records.FIELDS, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows({"index": i, "url": f"u{i}", "label": f"p{p}", "status": "ok"} for i in idx)
        keys.append(f"parts/part-{p:03d}.csv")
        store.write_text(keys[-1], buf.getvalue())
        for i in idx:
            first.setdefault(i, f"p{p}")
    for fan_in in (4, 2, 64):
        monkeypatch.setattr(records, "_FAN_IN", fan_in)
        with records.merged_records(store, keys) as rows:
            got = [(int(r["index"]), r["label"], r["url"]) for r in rows]
        assert got == [(i, first[i], f"u{i}") for i in sorted(first)]
