"""Hostile inputs against the scrape job: a loopback server that trickles, never ends, lies
about Content-Length, and serves bombs, scan-heavy progressive JPEGs, fake-header JPEGs and
huge-dimension PNGs. Each case runs ``headstart scrape`` in a fresh process and reports the
statuses it recorded, its wall time and its peak RSS; the last line is one JSON object.

    python bench/hostile.py --quick     # < 1 min
    python bench/hostile.py             # 16 PNGs of 7000x7000, 3000-scan JPEG
"""
from __future__ import annotations

import argparse
import io
import json
import resource
import struct
import subprocess
import sys
import tempfile
import time
from collections import Counter
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Iterator

from _common import ROOT, emit

from PIL import Image


def _jpeg_segments(data: bytes) -> list[tuple[int, bytes]]:
    """(marker, bytes) of each JPEG segment; a scan runs to the next non-RST marker."""
    i, out = 2, []
    while i < len(data):
        marker = data[i + 1]
        if marker == 0xD9:
            out.append((marker, data[i:i + 2]))
            break
        end = i + 2 + struct.unpack(">H", data[i + 2:i + 4])[0]
        if marker == 0xDA:
            while not (data[end] == 0xFF and data[end + 1] != 0 and not 0xD0 <= data[end + 1] <= 0xD7):
                end += 1
        out.append((marker, data[i:end]))
        i = end
    return out


def progressive_bomb(side: int, repeats: int) -> bytes:
    """A small progressive JPEG whose last scan repeats ``repeats`` times (each one costs a
    pass over the whole image in the decoder: 45 KB, 1024 px, 3000 scans took 23 s here)."""
    buf = io.BytesIO()
    Image.new("RGB", (side, side), (120, 80, 40)).save(buf, "JPEG", progressive=True, quality=50)
    data = buf.getvalue()
    segments = _jpeg_segments(data)
    last_scan = [s for m, s in segments if m == 0xDA][-1]
    return data[:2] + b"".join((last_scan * repeats if m == 0xD9 else b"") + s for m, s in segments)


def fake_header_jpeg(side: int = 7000) -> bytes:
    """A 64 px JPEG whose frame header claims ``side`` x ``side``, cut to about 1.2 KB."""
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (10, 200, 30)).save(buf, "JPEG", quality=90)
    data = bytearray(buf.getvalue())
    for m, seg in _jpeg_segments(bytes(data)):
        if m in (0xC0, 0xC2):
            at = bytes(data).index(seg) + 5
            data[at:at + 4] = struct.pack(">HH", side, side)
    return bytes(data[:1200])


def huge_png(side: int) -> bytes:
    buf = io.BytesIO()
    img = Image.new("RGB", (side, side), (200, 200, 200))
    img.putpixel((1, 1), (0, 0, 0))
    img.save(buf, "PNG", compress_level=9)
    return buf.getvalue()


def bomb_png() -> bytes:
    sys.path.insert(0, str(ROOT / "tests" / "jobs" / "scrape"))
    from conftest import huge_png as header_only  # noqa: PLC0415 - a header declaring 30000x30000

    return header_only()


def arithmetic_fake_header(side: int = 7000) -> bytes:
    """A 32 px arithmetic-coded JPEG (``jpegtran -arithmetic``) whose header claims ``side``
    square: such files have no short-data floor, and decoded "ok" as a grey picture."""
    import base64

    from tests.shared.data.test_decode_hostile import _ARITHMETIC_PROGRESSIVE_JPEG  # noqa: PLC0415

    data = bytearray(base64.b64decode(_ARITHMETIC_PROGRESSIVE_JPEG))
    sof = bytes(data).index(b"\xff\xca")
    data[sof + 5:sof + 9] = struct.pack(">HH", side, side)
    return bytes(data)


def _png_side(quick: bool) -> int:
    return 2400 if quick else 7000


def cases(quick: bool) -> list[dict]:
    side, count = (_png_side(quick), 6) if quick else (_png_side(quick), 16)
    budget = 12.0 if quick else 64.0  # megapixels: 2 (quick) or 1 image(s) at once
    slow = dict(timeout=1.0 if quick else 5.0, retries=0 if quick else 1)
    trickle = "interval=0.5"
    hang = dict(expect="timeout", **slow)
    out = [
        dict(name="trickle_status", paths=[f"/trickle-status?{trickle}"], **hang),
        dict(name="trickle_headers", paths=[f"/trickle-headers?{trickle}"], **hang),
        dict(name="99_slow_headers", paths=["/many-headers?interval=0.1"], **hang),
        dict(name="trickle_chunk_sizes", paths=[f"/trickle-chunks?{trickle}"], **hang),
        dict(name="never_ending", paths=["/never-ending?interval=0.01"], **hang),
        dict(name="hanging_dns (resolver sleeps 30 s)", paths=["/bytes/arith?dns"], dns_delay=30.0, **hang),
        dict(name="lying_content_length", paths=["/short-body"], timeout=2.0, retries=2,
             expect="connection_error"),
        dict(name="bomb_png_30000x30000", paths=["/bytes/bomb"], expect="too_large"),
        dict(name="progressive_scans", paths=["/bytes/progressive"], expect="too_large"),
        dict(name="progressive_100_scans_of_10.9mpx", paths=["/bytes/scanpixels"], expect="too_large"),
        dict(name="fake_header_jpeg_7000x7000", paths=["/bytes/fakejpeg"], expect="decode_error"),
        dict(name="arithmetic_jpeg_claiming_7000x7000", paths=["/bytes/arith"], expect="decode_error"),
        dict(name=f"huge_png_{count}x{side}px_budget_{budget:g}mpx",
             paths=[f"/bytes/bigpng?n={i}" for i in range(count)], concurrency=count,
             decode_budget_mpx=budget),
        dict(name=f"huge_png_{count}x{side}px_no_budget", paths=[f"/bytes/bigpng?n={i}" for i in range(count)],
             concurrency=count, decode_budget_mpx=10_000),
    ]
    if not quick:  # the slowest file still accepted: 100 scans of 10 Mpx (1e9 scans x pixels)
        out.append(dict(name="progressive_100_scans_of_10mpx_accepted", paths=["/bytes/worstok"], expect="ok"))
    return out


@contextmanager
def _slow_resolver(seconds: float) -> Iterator[None]:
    """Name lookups in this (child) process hang like a black-holed DNS server."""
    import socket

    real = socket.getaddrinfo

    def slow(*args, **kwargs):
        time.sleep(seconds)
        return real(*args, **kwargs)

    socket.getaddrinfo = slow
    try:
        yield
    finally:
        socket.getaddrinfo = real


def run_case(case: dict, allow: str) -> dict:
    """Child process: one scrape, in this process, with decoding in the download threads."""
    sys.path.insert(0, str(ROOT))
    from headstart.jobs.scrape.spec import ScrapeSpec
    from headstart.jobs.scrape.workflow import scrape
    from headstart.shared.runtime.logs import setup_logging

    setup_logging("ERROR")
    base = f"http://{allow}"
    with tempfile.TemporaryDirectory(prefix="bench-hostile-") as tmp:
        urls = Path(tmp) / "urls.csv"
        urls.write_text("url,label\n" + "".join(f"{base}{p},x\n" for p in case["paths"]))
        settings = {k: v for k, v in case.items() if k not in ("name", "paths", "dns_delay", "expect")}

        spec = ScrapeSpec(urls=str(urls), out=str(Path(tmp) / "out"), allow_loopback=[allow],
                          decode_workers=0, min_side=16, backoff=0.05, **{"timeout": 10.0, **settings})
        start = time.monotonic()
        try:
            with _slow_resolver(case["dns_delay"]) if case.get("dns_delay") else nullcontext():
                scrape(spec)
        except Exception as exc:  # noqa: BLE001 - a crash is a result here
            return {"crash": f"{type(exc).__name__}: {exc}"}
        wall = time.monotonic() - start
        import csv

        with open(Path(tmp) / "out" / "scrape_report.csv", newline="") as fh:
            statuses = Counter(row["status"] for row in csv.DictReader(fh))
    return {"statuses": dict(statuses), "wall_s": round(wall, 2), "peak_rss_mb": _peak_rss_mb()}


def _peak_rss_mb() -> float:
    """This process's own high-water RSS (VmHWM; ru_maxrss would carry the parent's peak
    across fork + exec on Linux)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller cases, under a minute")
    parser.add_argument("--case", help=argparse.SUPPRESS)  # child mode: a case as JSON
    parser.add_argument("--allow", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:  # child: one or more cases, in order, in this process
        print(json.dumps([run_case(case, args.allow) for case in json.loads(args.case)]))
        return
    sys.path.insert(0, str(ROOT))
    from tests.hostile_server import HostileServer

    started = time.monotonic()
    with HostileServer() as server:
        side = _png_side(args.quick)
        server.payloads.update(bomb=bomb_png(), fakejpeg=fake_header_jpeg(),
                               progressive=progressive_bomb(512 if args.quick else 1024,
                                                            1000 if args.quick else 3000),
                               bigpng=huge_png(side), arith=arithmetic_fake_header(),
                               scanpixels=progressive_bomb(3300, 90))
        if not args.quick:
            server.payloads["worstok"] = progressive_bomb(3162, 90)
        sizes = {k: len(v) for k, v in server.payloads.items()}
        # The small cases share one process (their peak RSS is the running high-water mark, all
        # near the baseline); each huge-PNG case gets a fresh one, so its peak is its own.
        all_cases = cases(args.quick)
        groups = [[c for c in all_cases if not c["name"].startswith("huge_png")]]
        groups += [[c] for c in all_cases if c["name"].startswith("huge_png")]
        results = []
        for group in groups:
            proc = subprocess.run([sys.executable, __file__, "--case", json.dumps(group), "--allow",
                                   server.allow], capture_output=True, text=True, timeout=900)
            try:
                outcomes = json.loads(proc.stdout.strip().splitlines()[-1])
            except (IndexError, ValueError):
                crash = (proc.stderr.strip().splitlines() or ["no output"])[-1]
                outcomes = [{"crash": crash}] * len(group)
            for case, outcome in zip(group, outcomes):
                results.append({"case": case["name"], **outcome})
                print(f"{case['name']:<34} {json.dumps(outcome.get('statuses', outcome.get('crash'))):<40} "
                      f"{outcome.get('wall_s', '-'):>7}s {outcome.get('peak_rss_mb', '-'):>8} MB", flush=True)
    by = {r["case"]: r for r in results}
    png = [r for r in results if r["case"].startswith("huge_png") and "peak_rss_mb" in r]
    # Decode memory above the process baseline (the smallest case's peak), per megapixel held.
    base = min((r["peak_rss_mb"] for r in results if "peak_rss_mb" in r), default=0.0)
    ratio = (round((png[1]["peak_rss_mb"] - base) / max(png[0]["peak_rss_mb"] - base, 1), 2)
             if len(png) == 2 else None)
    # Targets: each hostile case ends with its expected status, a hang within its attempts'
    # deadlines (+1 s), and the pixel budget lowers decode RSS.
    misses = []
    for case in all_cases:
        got = by.get(case["name"], {})
        if "expect" in case and set(got.get("statuses", {})) != {case["expect"]}:
            misses.append(f"{case['name']}: {got.get('statuses', got.get('crash'))}")
        limit = case.get("timeout", 10.0) * (case.get("retries", 2) + 1) + 1.0 + 0.5 * case.get("retries", 2)
        if case.get("expect") == "timeout" and got.get("wall_s", 1e9) > limit:
            misses.append(f"{case['name']}: {got.get('wall_s')} s > {limit} s")
    if ratio is not None and ratio <= 1:
        misses.append(f"pixel budget did not lower decode RSS (ratio {ratio})")
    emit({"bench": "hostile", "quick": args.quick, "payload_bytes": sizes, "cases": by,
          "targets": "expected status per case; hangs end within timeout x attempts + 1 s; "
                     "budget RSS ratio > 1", "meets_targets": not misses, "misses": misses,
          "baseline_rss_mb": base, "huge_png_decode_rss_ratio_no_budget_over_budget": ratio,
          "seconds": round(time.monotonic() - started, 1)})


if __name__ == "__main__":
    main()
