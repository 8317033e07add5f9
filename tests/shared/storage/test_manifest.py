"""Run outputs publish ``manifest.json`` last; readers trust only published runs."""
from __future__ import annotations

import hashlib
import io
import json
import random

import pytest

from headstart.shared.runtime.errors import UserError
from headstart.shared.storage.manifest import (FAILURE, MANIFEST, FileRecords, RunOutput, is_published,
                                              open_published, read_manifest, to_json, write_manifest_json)
from headstart.shared.storage.store import open_store


class RecordingStore:
    """Wraps a store and records every write, in order."""

    def __init__(self, inner):
        self.inner = inner
        self.writes: list[str] = []

    def write_bytes(self, key, data):
        self.writes.append(key)
        self.inner.write_bytes(key, data)

    def write_text(self, key, text):
        self.write_bytes(key, text.encode("utf-8"))

    def __getattr__(self, name):
        return getattr(self.inner, name)


def test_records_sizes_and_sha256(store):
    out = RunOutput(store, "train")
    out.write_bytes("model.bin", b"\x00" * 10)
    out.write_text("labels.txt", "a\nb\n")
    out.write_json("metrics.json", {"acc": 0.5})
    assert out.files["model.bin"] == {"size": 10, "sha256": hashlib.sha256(b"\x00" * 10).hexdigest()}
    assert out.files["labels.txt"]["size"] == 4
    metrics = store.read_bytes("metrics.json")
    assert json.loads(metrics) == {"acc": 0.5}
    assert out.files["metrics.json"] == {"size": len(metrics),
                                         "sha256": hashlib.sha256(metrics).hexdigest()}
    assert out.uri == store.uri


def test_publish_writes_manifest_last(store):
    rec = RecordingStore(store)
    out = RunOutput(rec, "train")
    out.write_text("b.txt", "b")
    out.write_text("a/c.txt", "c")
    assert not is_published(store)
    manifest = out.publish(classes=3)
    assert rec.writes == ["b.txt", "a/c.txt", MANIFEST]
    assert is_published(store)
    on_disk = json.loads(store.read_text(MANIFEST))
    assert on_disk == manifest
    assert on_disk["job"] == "train"
    assert on_disk["classes"] == 3
    assert list(on_disk["files"]) == ["a/c.txt", "b.txt"]
    assert on_disk["seconds"] >= 0
    assert on_disk["created"].endswith("Z")


def test_read_manifest_roundtrip_and_verify(store):
    out = RunOutput(store, "evaluate")
    out.write_text("report.html", "<html></html>")
    out.publish()
    manifest = read_manifest(store, verify=True)
    assert manifest["files"]["report.html"]["size"] == len("<html></html>")
    opened, manifest2 = open_published(store.uri, verify=True)
    assert opened.uri == store.uri
    assert manifest2 == manifest


def test_unpublished_run_is_user_error(store):
    store.write_text("partial.txt", "x")
    with pytest.raises(UserError, match="not a published run") as info:
        read_manifest(store)
    assert FAILURE not in str(info.value)
    with pytest.raises(UserError):
        open_published(store.uri)


def test_failed_run_mentions_failure_record(store):
    store.write_text(FAILURE, json.dumps({"kind": "crash"}))
    with pytest.raises(UserError, match=FAILURE):
        read_manifest(store)


@pytest.mark.parametrize("tamper", ["change", "truncate", "same_size"])
def test_verify_detects_tampering(store, tamper):
    out = RunOutput(store, "train")
    out.write_text("weights.bin", "0123456789")
    out.write_text("other.txt", "ok")
    out.publish()
    new = {"change": "0123456789-extra", "truncate": "01234", "same_size": "9876543210"}[tamper]
    store.write_text("weights.bin", new)
    read_manifest(store)  # without verify, the manifest alone is trusted
    with pytest.raises(UserError, match="weights.bin"):
        read_manifest(store, verify=True)


def test_verify_detects_missing_file(store):
    out = RunOutput(store, "train")
    out.write_text("weights.bin", "x")
    out.publish()
    store.delete("weights.bin")
    with pytest.raises(UserError, match="weights.bin"):
        read_manifest(store, verify=True)


def test_corrupt_manifest_is_user_error(store):
    store.write_text(MANIFEST, "{not json")
    with pytest.raises(UserError, match=MANIFEST):
        read_manifest(store)


def test_unpublish_removes_manifest_and_failure(store):
    out = RunOutput(store, "train")
    out.write_text("a", "1")
    out.publish()
    store.write_text(FAILURE, "{}")
    RunOutput(store, "train").unpublish()
    assert not store.exists(MANIFEST)
    assert not store.exists(FAILURE)
    assert store.exists("a")
    RunOutput(store, "train").unpublish()  # nothing to remove: fine


def test_child_store_manifest_keys_are_relative(tmp_path):
    run = open_store(tmp_path).child("runs/r1")
    out = RunOutput(run, "train")
    out.write_text("sub/x.txt", "x")
    out.publish()
    assert list(read_manifest(open_store(tmp_path / "runs" / "r1"), verify=True)["files"]) == ["sub/x.txt"]


def _reference(header, files):
    return to_json({**header, "files": dict(sorted(files.items()))})


@pytest.mark.parametrize("n", [0, 1, 7, 60])
def test_streamed_manifest_is_byte_identical_to_json_dumps(n):
    rng = random.Random(n)
    names = ["a", "b/é.jpg", "Z", "train/cat/x.jpg", "train/cat.jpg", "train/cat/😀.png", "a.b", "a/b",
             'q"uote\\.txt', "tab\there"]
    expected = {}
    files = FileRecords(spill_at=5)
    for _ in range(n):
        key = rng.choice(names) + str(rng.randrange(30))
        entry = {"size": rng.randrange(10**9), "sha256": hashlib.sha256(key.encode()).hexdigest()}
        files.add(key, entry["size"], entry["sha256"])
        expected[key] = entry  # recorded twice: the last entry wins, as in a dict
    assert files.spilled == (len(expected) > 5)
    header = {"job": "scrape", "created": "2026-01-01T00:00:00Z", "seconds": 1.5, "labels": ["a", "b"],
              "nested": {"z": [1, {"y": None}], "a": "line\nbreak"}, "empty": {}, "none": [], "ok": True}
    buf = io.StringIO()
    write_manifest_json(buf, header, files)
    assert buf.getvalue() == _reference(header, expected)
    assert dict(files) == expected and len(files) == len(expected) and list(files) == sorted(expected)
    files.close()


def test_large_run_spills_to_disk_and_publishes_the_same_manifest(store):
    out = RunOutput(store, "scrape")
    out.files.spill_at = 50
    for i in range(300):
        out.record(f"train/l{i % 3}/{i:04d}.jpg", i, f"{i:064x}")
    out.write_text("scrape_report.csv", "x\n")
    assert out.files.spilled
    manifest = out.publish(images=300)
    on_disk = json.loads(store.read_text(MANIFEST))
    assert on_disk == manifest and len(on_disk["files"]) == 301
    assert on_disk["files"]["train/l1/0004.jpg"] == {"size": 4, "sha256": f"{4:064x}"}
    assert store.read_text(MANIFEST) == to_json(on_disk)  # the format readers already parse
    out.files.close()
