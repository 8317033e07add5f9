"""Decode memory is bounded by a pixel budget, not by the number of URLs in flight."""
from __future__ import annotations

import csv
import io
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from PIL import Image

from headstart.jobs.scrape import workers
from headstart.jobs.scrape.budget import BudgetCancelled, PixelBudget, declared_pixels
from headstart.jobs.scrape.workflow import scrape
from tests.helpers import report, spec, write_list
from tests.hostile_server import HostileServer

REPO = Path(__file__).resolve().parents[3]


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _png(side: int, shade: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (side, side), (shade, shade, shade)).save(buf, "PNG")
    return buf.getvalue()


def test_holders_wait_for_pixels_and_oversized_ones_run_alone():
    budget = PixelBudget(100)
    held: list[int] = []
    lock = threading.Lock()

    def work(pixels):
        with budget.hold(pixels) as got:
            with lock:
                held.append(budget.total - budget.free)
            time.sleep(0.05)
        assert got == min(pixels, 100)

    threads = [threading.Thread(target=work, args=(p,)) for p in (60, 60, 30, 30, 500)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert max(held) <= 100 and budget.peak_in_use <= 100 and budget.free == 100


def test_declared_pixels_reads_the_header_only():
    assert declared_pixels(_png(300, 1), max_pixels=10**9) == 90_000
    assert declared_pixels(b"not an image", max_pixels=10**9) == 0


def test_concurrent_large_pngs_decode_within_the_budget(tmp_path, monkeypatch):
    """Eight 1500x1500 PNGs (2.25 Mpx each) with 8 downloads in flight and a 5 Mpx budget:
    at most two decode at once."""
    made: list[PixelBudget] = []

    class Recording(PixelBudget):
        def __init__(self, pixels):
            super().__init__(pixels)
            made.append(self)

    monkeypatch.setattr(workers, "PixelBudget", Recording)
    with HostileServer() as server:
        rows = []
        for i in range(8):
            server.payloads[f"p{i}"] = _png(1500, 10 + i)
            rows.append((server.url(f"/bytes/p{i}"), "big"))
        urls = write_list(tmp_path / "u.csv", rows)
        scrape(spec(server, urls, tmp_path / "o", concurrency=8, decode_budget_mpx=5,
                    timeout=20, resize=64))
    assert [r["status"] for r in report(tmp_path / "o")] == ["ok"] * 8
    (budget,) = made
    assert budget.total == 5_000_000
    assert 2_250_000 <= budget.peak_in_use <= 5_000_000


def test_a_stop_request_ends_a_wait_for_pixels():
    budget = PixelBudget(100)
    stop = threading.Event()
    ran = []
    with budget.hold(100):
        threading.Timer(0.2, stop.set).start()
        start = time.monotonic()
        with pytest.raises(BudgetCancelled), budget.hold(50, cancelled=stop.is_set):
            ran.append(True)
        assert time.monotonic() - start < 0.7
        assert not ran and budget.free == 0  # the cancelled wait took nothing and ran nothing
    assert budget.free == 100
    with budget.hold(100, cancelled=stop.is_set):  # pixels free: a stop does not refuse them
        assert budget.free == 0


def test_sigterm_while_decodes_wait_for_budget_returns_promptly(tmp_path):
    """Six 4000x4000 PNGs (~1.6 s to decode each here) downloaded at once, with a budget that
    fits one: after SIGTERM only the decode under way finishes; the five waiting ones are
    abandoned unrecorded (before: each decoded in turn, 10 s in all)."""
    with HostileServer() as server:
        server.payloads["big"] = _png(4000, 9)
        urls = write_list(tmp_path / "u.csv", [(server.url(f"/bytes/big?n={i}"), "a") for i in range(6)])
        out = tmp_path / "o"
        cmd = [sys.executable, "-m", "headstart.shared", "scrape", urls, "--out", str(out),
               "--allow-loopback", server.allow, "--concurrency", "6", "--decode-workers", "0",
               "--decode-budget-mpx", "1", "--timeout", "30"]
        proc = subprocess.Popen(cmd, cwd=REPO, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while server.hits["/bytes/big"] < 6 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)  # the downloads (56 KB each) are done: one decodes, five wait
        start = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 75
        assert time.monotonic() - start < 3.5
    # Decoding starts as soon as the first download lands, so on a busy machine more than one
    # may finish before the sixth request arrives (measured: 3 while a second suite ran). The
    # promptness above is the check (the waiting ones decoded in turn take >= 1.6 s each);
    # here: some were abandoned, and abandoned ones are not recorded as failures.
    recorded = [r for part in out.glob("_scrape/shards/*/part-*.csv") for r in read_csv(part)]
    assert len(recorded) < 6 and all(r["status"] == "ok" for r in recorded)
