"""``--processes``: one shard fetched by several processes gives the dataset one process gives;
a stop reaches every child and a rerun (with any count) resumes; a child's failure fails the
job with the child's error; the default count follows the list's length and the CPUs."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from headstart.jobs.scrape import workers
from headstart.jobs.scrape.workers import WorkerFailed, processes_for
from headstart.jobs.scrape.spec import ScrapeSpec
from headstart.jobs.scrape.workflow import scrape
from headstart.shared.runtime.errors import UserError
from tests.helpers import dataset, report, spec, write_list

REPO = Path(__file__).resolve().parents[3]
PARTS = Path("_scrape") / "shards" / "00000-of-00001"


def _rows(server, n: int, **query) -> list[tuple[str, str]]:
    qs = "&".join(f"{k}={v}" for k, v in query.items())
    rows = [(server.url(f"/img/p{i}.jpg" + (f"?{qs}" if qs else "")), "abc"[i % 3]) for i in range(n)]
    return rows + [(server.url("/same/x"), "a"), (server.url("/same/y"), "b"), (server.url("/status/404"), "c")]


def _comparable(out: Path) -> list[tuple]:
    return [(r["index"], r["status"], r["split"], r["path"], r["sha"]) for r in report(out)]


def _writers(out: Path) -> set[str]:
    """The run ids (time-pid) of the record parts in the shard's folder."""
    return {p.name.split("-")[2] for p in (out / PARTS).glob("part-*.csv")}


def test_several_processes_give_the_dataset_one_process_gives(image_server, tmp_path: Path) -> None:
    urls = write_list(tmp_path / "u.csv", _rows(image_server, 30))
    one, three = tmp_path / "one", tmp_path / "three"
    scrape(spec(image_server, urls, one, seed=3, processes=1))
    main = sys.modules["__main__"]
    before = (main.__dict__.get("__file__"), main.__dict__.get("__spec__"))
    manifest = scrape(spec(image_server, urls, three, seed=3, processes=3))
    assert (main.__dict__.get("__file__"), main.__dict__.get("__spec__")) == before  # restored
    assert dataset(three) == dataset(one) and len(dataset(one)) == 31  # 30 + one of the two /same
    assert _comparable(three) == _comparable(one)
    assert manifest is not None and manifest["images"] == 31
    assert len(_writers(three)) == 3 and len(_writers(one)) == 1  # every child wrote its own parts
    assert (three / PARTS / "_DONE.json").exists()


def test_children_write_to_s3_through_the_parents_endpoint(image_server, tmp_path, moto_server) -> None:
    """The store endpoint is set after the forkserver may have started: children still use it."""
    urls = write_list(tmp_path / "u.csv", _rows(image_server, 12))
    manifest = scrape(spec(image_server, urls, f"{moto_server.uri}/ds", processes=2, seed=3))
    local = tmp_path / "local"
    scrape(spec(image_server, urls, local, seed=3, processes=1))
    assert manifest is not None and manifest["images"] == len(dataset(local)) == 13
    s3 = moto_server.client()
    listed = s3.list_objects_v2(Bucket=moto_server.bucket, Prefix="prefix/ds/_scrape/shards/")
    writers = {o["Key"].rsplit("/", 1)[1].split("-")[2] for o in listed.get("Contents", [])
               if o["Key"].rsplit("/", 1)[1].startswith("part-")}
    assert len(writers) == 2
    for key in dataset(local):
        got = s3.get_object(Bucket=moto_server.bucket, Key=f"prefix/ds/{key}")["Body"].read()
        assert got == dataset(local)[key]


UNGUARDED = """
import sys
from pathlib import Path
with Path(sys.argv[1]).open("a") as fh:
    fh.write("ran\\n")
from headstart.jobs.scrape.spec import ScrapeSpec
from headstart.jobs.scrape.workflow import scrape
scrape(ScrapeSpec(urls=sys.argv[2], out=sys.argv[3], allow_loopback=[sys.argv[4]], processes=2,
                  decode_workers=0, min_side=16, timeout=5))
"""


def test_a_script_without_a_main_guard_runs_once(image_server, tmp_path: Path) -> None:
    """Children are started without re-running the caller's __main__ (multiprocessing would)."""
    urls = write_list(tmp_path / "u.csv", _rows(image_server, 6))
    script, marker, out = tmp_path / "user_script.py", tmp_path / "ran.txt", tmp_path / "o"
    script.write_text(UNGUARDED)
    proc = subprocess.run([sys.executable, str(script), str(marker), urls, str(out), image_server.allow],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert marker.read_text().splitlines() == ["ran"]
    assert (out / "manifest.json").exists() and len(_writers(out)) == 2


def test_decode_workers_given_with_several_processes_decode_in_each(image_server, tmp_path) -> None:
    """--decode-workers is 0 per process unless given; given, each process has its pool."""
    urls = write_list(tmp_path / "u.csv", _rows(image_server, 12))
    one, pooled = tmp_path / "one", tmp_path / "pooled"
    scrape(spec(image_server, urls, one, seed=3, processes=1, resize=40))
    scrape(spec(image_server, urls, pooled, seed=3, processes=2, decode_workers=1, resize=40))
    assert dataset(pooled) == dataset(one) and len(_writers(pooled)) == 2


def test_the_default_count_follows_the_list_length_cpus_and_concurrency(monkeypatch) -> None:
    monkeypatch.setattr(workers, "usable_cpus", lambda: 8)
    assert processes_for(None, workers.PARALLEL_MIN_URLS - 1, 64) == 1  # start-up not worth it
    assert processes_for(None, workers.PARALLEL_MIN_URLS, 64) == 8
    assert processes_for(None, 50_000, 4) == 4  # never more processes than downloads in flight
    assert processes_for(3, 10, 64) == 3  # asked for: even on a short list
    assert processes_for(5, 2, 64) == 2  # but not more than the URLs left
    assert processes_for(4, 0, 64) == 1  # nothing left (a finished shard): one, which does nothing


def test_a_failing_child_fails_the_job_with_its_error(image_server, tmp_path: Path) -> None:
    urls = write_list(tmp_path / "u.csv", _rows(image_server, 8))
    out = tmp_path / "o"
    (out / "_scrape").mkdir(parents=True)
    (out / "_scrape" / "objects").write_text("not a folder")  # every staged image fails
    with pytest.raises(WorkerFailed, match=r"scrape process [01] of 2 failed: NotADirectoryError"):
        scrape(spec(image_server, urls, out, processes=2))
    assert not (out / "manifest.json").exists() and not (out / PARTS / "_DONE.json").exists()


def test_a_bad_allowed_endpoint_is_a_user_error_before_any_child_starts(image_server, tmp_path) -> None:
    urls = write_list(tmp_path / "u.csv", _rows(image_server, 4))
    bad = ScrapeSpec(urls=urls, out=str(tmp_path / "o"), allow_loopback=["example.com:80"], processes=2)
    with pytest.raises(UserError, match="only loopback endpoints"):
        scrape(bad)
    assert image_server.httpd.hits == {}


def _cli(urls: str, out: Path, server, *extra: str) -> list[str]:
    return [sys.executable, "-m", "headstart.shared", "scrape", urls, "--out", str(out),
            "--allow-loopback", server.allow, "--concurrency", "4", "--checkpoint-every", "2",
            "--timeout", "5", *extra]


def _children(pid: int) -> list[int]:
    """Live descendants of ``pid`` (from /proc)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    parents[int(entry)] = int(fh.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    found, stack = [], [pid]
    while stack:
        p = stack.pop()
        kids = [c for c, parent in parents.items() if parent == p]
        found += kids
        stack += kids
    return found


def _running(pids: list[int]) -> list[int]:
    alive = []
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state != "Z":
            alive.append(pid)
    return alive


@pytest.mark.parametrize("how", ["sigterm", "ctrl-c"])
def test_a_stop_reaches_every_child_and_a_rerun_with_another_count_resumes(
        image_server, tmp_path: Path, how: str) -> None:
    urls = write_list(tmp_path / "u.csv", _rows(image_server, 60, delay=0.05))
    out = tmp_path / "o"
    proc = subprocess.Popen(_cli(urls, out, image_server, "--processes", "2"), cwd=REPO,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 30
    while len(_writers(out)) < 2 and time.monotonic() < deadline:  # both children at work
        time.sleep(0.02)
    assert len(_writers(out)) == 2
    kids = _children(proc.pid)
    if how == "sigterm":  # AWS Batch / docker stop: the parent alone
        proc.send_signal(signal.SIGTERM)
    else:  # a terminal's Ctrl-C: SIGINT to the whole process group
        os.killpg(proc.pid, signal.SIGINT)
    assert proc.wait(timeout=30) == 75
    assert json.loads((out / "_FAILURE.json").read_text())["kind"] == "interrupted"
    deadline = time.monotonic() + 10  # the forkserver leaves once its parent has gone
    while _running(kids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _running(kids)
    parts = list((out / PARTS).glob("part-*.csv"))
    rows = sum(1 for p in parts for _ in p.open()) - len(parts)  # less one header each
    assert 0 < rows < 63
    image_server.httpd.hits.clear()
    assert subprocess.run(_cli(urls, out, image_server, "--processes", "3"), cwd=REPO,
                          stderr=subprocess.DEVNULL).returncode == 0
    assert sum(image_server.httpd.hits.values()) <= 63 - rows  # recorded URLs were not fetched again
    clean = tmp_path / "clean"
    scrape(spec(image_server, urls, clean))
    assert dataset(out) == dataset(clean)
    assert _comparable(out) == _comparable(clean)
