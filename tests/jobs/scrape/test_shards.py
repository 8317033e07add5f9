"""Scale-out and resume: shards + merge equal one run; a killed run resumes to the same dataset;
S3 output through moto."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from headstart.jobs.scrape.merge import merge_command
from headstart.jobs.scrape.spec import MergeSpec
from headstart.jobs.scrape.workflow import scrape
from headstart.shared.runtime.errors import UserError
from headstart.shared.storage.store import open_store
from tests.helpers import dataset, report, spec, write_list

REPO = Path(__file__).resolve().parents[3]


def _rows(server, n: int = 24, **query) -> list[tuple[str, str]]:
    qs = "&".join(f"{k}={v}" for k, v in query.items())
    rows = [(server.url(f"/img/s{i}.jpg" + (f"?{qs}" if qs else "")), "abc"[i % 3]) for i in range(n)]
    return rows + [(server.url("/same/x"), "a"), (server.url("/same/y"), "b"), (server.url("/status/404"), "c")]


def _comparable(out: Path) -> list[tuple]:
    return [(r["index"], r["status"], r["split"], r["path"], r["sha"]) for r in report(out)]


def test_sharded_run_plus_merge_equals_the_unsharded_run(image_server, tmp_path: Path) -> None:
    urls = write_list(tmp_path / "u.csv", _rows(image_server))
    whole, sharded = tmp_path / "whole", tmp_path / "sharded"
    scrape(spec(image_server, urls, whole, seed=5, valid_fraction=0.2))
    for i in (2, 0, 1):
        assert scrape(spec(image_server, urls, sharded, shard=f"{i}/3", seed=5, valid_fraction=0.2)) is None
        assert not (sharded / "manifest.json").exists()
    manifest = merge_command(MergeSpec(out=str(sharded)))  # split settings come from the shards
    assert dataset(sharded) == dataset(whole)
    assert _comparable(sharded) == _comparable(whole)
    assert manifest["images"] == json.loads((whole / "manifest.json").read_text())["images"]


def test_merge_refuses_until_every_shard_is_done(image_server, tmp_path: Path) -> None:
    urls = write_list(tmp_path / "u.csv", _rows(image_server, n=6))
    scrape(spec(image_server, urls, tmp_path / "o", shard="0/2"))
    with pytest.raises(UserError, match="1 of 2 shards"):
        merge_command(MergeSpec(out=str(tmp_path / "o")))


def test_remerge_with_another_seed_moves_images_and_converges(image_server, tmp_path: Path) -> None:
    urls = write_list(tmp_path / "u.csv", _rows(image_server))
    out, fresh = tmp_path / "o", tmp_path / "fresh"
    scrape(spec(image_server, urls, out, shard="0/1", seed=1))
    merge_command(MergeSpec(out=str(out), seed=2))
    scrape(spec(image_server, urls, fresh, seed=2))
    assert dataset(out) == dataset(fresh)


def test_a_killed_run_resumes_to_the_same_dataset(image_server, tmp_path: Path) -> None:
    urls = write_list(tmp_path / "u.csv", _rows(image_server, n=60, delay=0.04))
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "headstart.shared", "scrape", urls, "--out", str(out), "--allow-loopback",
           image_server.allow, "--concurrency", "2", "--checkpoint-every", "4", "--decode-workers", "0",
           "--timeout", "2"]
    proc = subprocess.Popen(cmd, cwd=REPO, stderr=subprocess.DEVNULL)
    parts = out / "_scrape" / "shards" / "00000-of-00001"
    deadline = time.monotonic() + 20
    while not list(parts.glob("part-*.csv")) and time.monotonic() < deadline:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "manifest.json").exists()
    done_before = sum(1 for p in parts.glob("part-*.csv") for _ in p.open()) - len(list(parts.glob("part-*.csv")))
    assert 0 < done_before < 63
    image_server.httpd.hits.clear()
    assert subprocess.run(cmd, cwd=REPO, stderr=subprocess.DEVNULL).returncode == 0
    assert sum(image_server.httpd.hits.values()) <= 63 - done_before  # finished URLs were skipped
    clean = tmp_path / "clean"
    scrape(spec(image_server, urls, clean))
    assert dataset(out) == dataset(clean)
    assert _comparable(out) == _comparable(clean)


def test_sigterm_stops_cleanly_with_exit_75_and_resumes(image_server, tmp_path: Path) -> None:
    urls = write_list(tmp_path / "u.csv", _rows(image_server, n=60, delay=0.04))
    out = tmp_path / "o"
    cmd = [sys.executable, "-m", "headstart.shared", "scrape", urls, "--out", str(out), "--allow-loopback",
           image_server.allow, "--concurrency", "2", "--decode-workers", "0"]
    proc = subprocess.Popen(cmd, cwd=REPO, stderr=subprocess.DEVNULL)
    while sum(image_server.httpd.hits.values()) < 6:
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 75
    assert json.loads((out / "_FAILURE.json").read_text())["kind"] == "interrupted"
    assert subprocess.run(cmd, cwd=REPO, stderr=subprocess.DEVNULL).returncode == 0
    assert (out / "manifest.json").exists() and not (out / "_FAILURE.json").exists()


def test_scrape_to_s3(image_server, tmp_path: Path, s3_bucket: str) -> None:
    store = open_store(s3_bucket)
    store.write_text("lists/cat.txt", "\n".join(image_server.url(f"/img/q{i}.jpg") for i in range(4)))
    store.write_text("lists/dog.txt", "\n".join(image_server.url(f"/img/w{i}.png") for i in range(4)))
    manifest = scrape(spec(image_server, f"{s3_bucket}/lists", f"{s3_bucket}/ds", resize=40))
    ds = open_store(f"{s3_bucket}/ds")
    keys = [k for k in ds.list() if k.split("/")[0] in ("train", "valid", "test")]
    assert len(keys) == 8 and manifest["images"] == 8
    assert {k.split("/")[1] for k in keys} == {"cat", "dog"}
    assert ds.exists("manifest.json") and ds.exists("scrape_report.csv")
    assert not list(ds.list("_scrape/objects"))
