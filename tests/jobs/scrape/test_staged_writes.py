"""Scraped images are written without one fsync each; the record part that names them is
written only after one filesystem flush (``Store.commit_staged``), so a record never points
at an image that a power cut could lose."""
from __future__ import annotations

import os
from pathlib import Path

from headstart.jobs.scrape.workflow import scrape
from headstart.shared.storage import store as store_mod
from headstart.shared.storage.store import LocalStore
from tests.helpers import spec, write_list


def test_staged_writes_skip_fsync_and_commit_flushes_once(tmp_path: Path, monkeypatch) -> None:
    calls: list[str] = []
    real_fsync = os.fsync
    monkeypatch.setattr(store_mod.os, "fsync", lambda fd: (calls.append("fsync"), real_fsync(fd)))
    monkeypatch.setattr(store_mod, "_sync_filesystem", lambda path: calls.append(f"sync {path}"))
    store = LocalStore(tmp_path)
    store.commit_staged()
    assert calls == []                      # nothing staged: no flush
    store.stage_bytes("a/x.jpg", b"one")
    store.stage_bytes("a/y.jpg", b"two")
    assert calls == [] and store.read_bytes("a/y.jpg") == b"two"
    assert not [p for p in (tmp_path / "a").iterdir() if p.name.endswith(".tmp")]  # still atomic
    store.commit_staged()
    store.commit_staged()
    assert calls == [f"sync {tmp_path}"]    # one flush for both, none for the second call
    store.write_bytes("b.txt", b"durable")
    assert calls[-1] == "fsync"             # plain writes keep their own fsync


def test_sync_filesystem_really_runs(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    store.stage_bytes("k", b"v")
    store.commit_staged()  # syncfs(2) (or sync) on the real filesystem; must not raise
    assert store.read_bytes("k") == b"v"


def test_record_parts_follow_a_flush_of_their_images(image_server, tmp_path: Path, monkeypatch) -> None:
    events: list[str] = []
    real_stage, real_commit = LocalStore.stage_bytes, LocalStore.commit_staged
    real_write_text = LocalStore.write_text

    def stage(self, key, data):
        real_stage(self, key, data)
        events.append("stage")

    def commit(self):
        events.append("commit")
        real_commit(self)

    def write_text(self, key, text):
        if key.rsplit("/", 1)[-1].startswith("part-"):
            events.append("part")
        real_write_text(self, key, text)

    monkeypatch.setattr(LocalStore, "stage_bytes", stage)
    monkeypatch.setattr(LocalStore, "commit_staged", commit)
    monkeypatch.setattr(LocalStore, "write_text", write_text)
    rows = [(image_server.url(f"/img/s{i}.jpg"), "a") for i in range(7)]
    out = tmp_path / "out"
    scrape(spec(image_server, write_list(tmp_path / "u.csv", rows), out, checkpoint_every=3,
                concurrency=1))  # one in flight: events in a fixed order
    assert events.count("stage") == 7 and events.count("part") == 3
    parts = [i for i, e in enumerate(events) if e == "part"]
    assert all(events[i - 1] == "commit" for i in parts)      # a flush right before each part
    staged = [i for i, e in enumerate(events) if e == "stage"]
    for i in staged:  # every image is flushed before the next part names it
        assert "commit" in events[i:min(p for p in parts if p > i)]
    placed = [p for split in ("train", "valid", "test") for p in (out / split).rglob("*.jpg")]
    assert len(placed) == 7
