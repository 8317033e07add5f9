"""The scrape job against a hostile loopback server: stop requests, short bodies."""
from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from headstart.jobs.scrape.workflow import scrape
from tests.helpers import report, write_list
from tests.hostile_server import HostileServer

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def hostile():
    with HostileServer() as server:
        yield server


@pytest.mark.parametrize("processes", ["1", "2"])
def test_sigterm_during_slow_downloads_returns_promptly(hostile, tmp_path: Path, processes: str) -> None:
    """Trickling servers and a long --timeout must not hold a stop request for minutes (nor
    when the parent forwards it to fetching processes)."""
    rows = [(hostile.url(f"/trickle-headers?interval=0.5&n={i}"), "a") for i in range(4)]
    urls = write_list(tmp_path / "u.csv", rows)
    out = tmp_path / "o"
    cmd = [sys.executable, "-m", "headstart.shared", "scrape", urls, "--out", str(out), "--allow-loopback",
           hostile.allow, "--concurrency", "4", "--decode-workers", "0", "--timeout", "120",
           "--retries", "5", "--processes", processes]
    hostile.hits.clear()
    proc = subprocess.Popen(cmd, cwd=REPO, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while hostile.hits["/trickle-headers"] < 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    start = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 75
    assert time.monotonic() - start < 5
    # Nothing was recorded for the abandoned URLs: a rerun fetches them again.
    assert not list(out.glob("_scrape/shards/*/part-*.csv"))


def test_a_short_body_is_recorded_as_connection_error_not_decode_error(hostile, tmp_path: Path) -> None:
    from tests.helpers import spec

    urls = write_list(tmp_path / "u.csv", [(hostile.url("/short-body"), "a")])
    scrape(spec(hostile, urls, tmp_path / "o"))
    (row,) = report(tmp_path / "o")
    assert row["status"] == "connection_error" and row["attempts"] == "3", row


def test_bad_rows_are_reported_and_formula_cells_escaped(image_server, tmp_path: Path) -> None:
    import json

    from tests.helpers import spec

    good = image_server.url("/img/f1.jpg")
    path = tmp_path / "u.csv"
    path.write_text(f"url,label\n{good},cat\n{image_server.url('/img/a')},b.jpg,dog\n"
                    f"\"=HYPERLINK(\"\"http://evil\"\")\",@cat\n")
    before = sum(image_server.httpd.hits.values())
    scrape(spec(image_server, str(path), tmp_path / "o"))
    rows = report(tmp_path / "o")
    assert [r["status"] for r in rows] == ["ok", "bad_row", "bad_url"]
    assert "3 fields" in rows[1]["error"] and rows[1]["label"] == ""
    assert rows[2]["url"].startswith("'=HYPERLINK") and rows[2]["label"] == "'@cat"
    assert sum(image_server.httpd.hits.values()) - before == 1  # the bad row was never fetched
    summary = json.loads((tmp_path / "o" / "scrape_summary.json").read_text())
    assert summary["by_status"]["bad_row"] == 1 and "" not in summary["labels"]
