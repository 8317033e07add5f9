"""Decode memory is bounded by a pixel budget, not by the number of URLs in flight."""
from __future__ import annotations

import io
import threading
import time

from PIL import Image

from headstart.jobs.scrape import workflow
from headstart.jobs.scrape.budget import PixelBudget, declared_pixels
from headstart.jobs.scrape.workflow import scrape
from tests.helpers import report, spec, write_list
from tests.hostile_server import HostileServer


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

    monkeypatch.setattr(workflow, "PixelBudget", Recording)
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
