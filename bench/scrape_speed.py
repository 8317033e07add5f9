"""Scrape throughput and memory: ``headstart scrape`` vs img2dataset vs the server's ceiling.

A loopback server (stdlib, in this process) serves N distinct JPEGs, for two sets: ``small``
(160x120, below the resize: decoded, checked and re-encoded) and ``640x480`` (shrunk). The
same URL list is fetched by, one after the other in the same run:

* ``ceiling``: plain concurrent GETs (no checks, no decoding, nothing stored): the most the
  server gives; each tool's share of it is printed;
* ``headstart``: ``python -m headstart.shared scrape`` with every check on (SSRF guard with the
  loopback allow-list, request deadline, pixel budget, sniffing, bomb guard, JPEG structure
  check, full decode, dedupe, resumable records, split, manifest), with its default
  ``--processes`` (one fetching process per usable CPU at N >= 1,000; ``--processes`` here
  overrides it);
* ``img2dataset``: the PyPI package in its own venv (``.i2d``, or ``$HEADSTART_I2D_VENV``;
  installed on first use, never a project dependency); null with a reason when it cannot be.

Equivalent output: longest side ``--resize`` (256; smaller images kept at their size), JPEG
``--quality`` (90) on both sides. img2dataset runs with ``--processes_count`` = usable CPUs,
``--thread_count`` = ``--concurrency``, four shards per process, ``--resize_mode
keep_ratio_largest --resize_only_if_bigger True --retries 0 --disallowed_header_directives []``
(it has no SSRF guard or loopback block; the server sends no X-Robots-Tag).

Each tool runs as a subprocess; its peak memory is the largest RSS of its process tree
(sampled from /proc) and ``ru_maxrss`` from ``wait4``. Two or more ``--sizes`` show whether
memory is flat in N. The last line printed is one JSON object. ``--quick`` runs in under a
minute (the 640x480 set, N = 100); the default is both sets at N = 8,000.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import os
import random
import struct
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from PIL import Image

from headstart.shared.runtime.cpus import usable_cpus

REPO = Path(__file__).resolve().parents[1]
# img2dataset pins its own dependency versions: a venv of its own (git-ignored), never the project's.
I2D_VENV = Path(os.environ.get("HEADSTART_I2D_VENV", REPO / ".i2d"))


def base_images(count: int, size: tuple[int, int]) -> list[bytes]:
    """Photo-like JPEGs (smooth gradients + noise, so they compress like photos)."""
    rng = random.Random(0)
    out = []
    for _ in range(count):
        img = Image.radial_gradient("L").resize(size).convert("RGB")
        noise = Image.effect_noise(size, rng.uniform(20, 60)).convert("RGB")
        img = Image.blend(img, noise, 0.5)
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=85)
        out.append(buf.getvalue())
    return out


def unique_jpeg(base: bytes, n: int) -> bytes:
    """``base`` with a JPEG comment segment naming ``n``: valid, and distinct per URL."""
    comment = f"headstart-bench-{n}".encode()
    return base[:2] + b"\xff\xfe" + struct.pack(">H", len(comment) + 2) + comment + base[2:]


def serve(images: list[bytes]) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"

        def log_message(self, *args) -> None:
            pass

        def do_GET(self) -> None:
            n = int(self.path.rsplit("/", 1)[-1].split(".")[0])
            body = unique_jpeg(images[n % len(images)], n)
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    ThreadingHTTPServer.request_queue_size = 1024
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd


def tree_rss(pid: int) -> int:
    """RSS in bytes of ``pid`` and all its descendants."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(entry))
            rss[int(entry)] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, IndexError, ValueError):
            continue
    total, stack = 0, [pid]
    while stack:
        p = stack.pop()
        total += rss.get(p, 0)
        stack += children.get(p, [])
    return total


def measure(cmd: list[str], env: dict | None = None, cwd: Path = REPO) -> dict:
    """Run ``cmd``; wall time, exit code, peak tree RSS and ``ru_maxrss`` (MiB)."""
    start = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    stderr: list[bytes] = []
    reader = threading.Thread(target=lambda: stderr.append(proc.stderr.read()), daemon=True)
    reader.start()
    peak = 0
    while True:
        # wait4 (not Popen.poll) so the kernel hands back this child's own rusage.
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        peak = max(peak, tree_rss(proc.pid))
        time.sleep(0.05)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.monotonic() - start
    reader.join(timeout=5)
    return {"seconds": round(wall, 3), "exit": proc.returncode, "peak_tree_rss_mb": round(peak / 2**20, 1),
            "ru_maxrss_mb": round(usage.ru_maxrss / 1024, 1),
            "stderr_tail": (stderr[0] if stderr else b"").decode(errors="replace")[-600:]}


CEILING = """
import http.client, sys
from concurrent.futures import ThreadPoolExecutor
port, n, conc = map(int, sys.argv[1:4])
def get(i):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    c.request("GET", f"/img/{i}.jpg")
    body = c.getresponse().read()
    c.close()
    return len(body)
with ThreadPoolExecutor(conc) as pool:
    total = sum(pool.map(get, range(n)))
"""


def run_ceiling(port: int, n: int, concurrency: int) -> dict:
    return measure([sys.executable, "-c", CEILING, str(port), str(n), str(concurrency)])


def run_headstart(urls: Path, out: Path, port: int, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, "-m", "headstart.shared", "scrape", str(urls), "--out", str(out),
           "--allow-loopback", f"127.0.0.1:{port}", "--resize", str(args.resize),
           "--concurrency", str(args.concurrency), "--timeout", "60", "--min-side", "8",
           "--jpeg-quality", str(args.quality)]
    if args.decode_workers is not None:
        cmd += ["--decode-workers", str(args.decode_workers)]
    if args.processes is not None:
        cmd += ["--processes", str(args.processes)]
    result = measure(cmd, env={**os.environ, "HEADSTART_LOG_LEVEL": "WARNING"})
    manifest = out / "manifest.json"
    result["images"] = json.loads(manifest.read_text())["images"] if manifest.exists() else 0
    return result


def install_img2dataset() -> tuple[Path | None, str | None, str | None]:
    """(executable, version, error): a venv of its own, built once and cached."""
    exe = I2D_VENV / "bin" / "img2dataset"
    if not exe.exists():
        try:
            subprocess.run([sys.executable, "-m", "venv", str(I2D_VENV)], check=True, capture_output=True)
            subprocess.run([str(I2D_VENV / "bin" / "pip"), "install", "-q", "img2dataset"], check=True,
                           capture_output=True, timeout=900)
        except (subprocess.SubprocessError, OSError) as exc:
            detail = getattr(exc, "stderr", b"") or b""
            return None, None, f"pip install img2dataset failed: {exc} {detail.decode(errors='replace')[-300:]}"
    version = subprocess.run([str(I2D_VENV / "bin" / "python"), "-c",
                              "import importlib.metadata as m; print(m.version('img2dataset'))"],
                             capture_output=True, text=True).stdout.strip()
    return exe, version or None, None


def i2d_shard_size(n: int) -> int:
    """URLs per img2dataset shard: four shards per process, at least 100 URLs each."""
    return max(100, -(-n // (4 * usable_cpus())))


def run_img2dataset(exe: Path, urls: Path, out: Path, n: int, args: argparse.Namespace) -> dict:
    cmd = [str(exe), "--url_list", str(urls), "--input_format", "csv", "--url_col", "url",
           "--output_folder", str(out), "--output_format", "files", "--image_size", str(args.resize),
           "--resize_mode", "keep_ratio_largest", "--resize_only_if_bigger", "True",
           "--encode_quality", str(args.quality), "--encode_format", "jpg",
           "--processes_count", str(usable_cpus()), "--thread_count", str(args.concurrency),
           "--timeout", "60", "--retries", "0", "--enable_wandb", "False", "--distributor", "multiprocessing",
           # Its best layout here: several shards per process (one shard of 10,000 left one
           # of two processes idle and measured it at half speed).
           "--number_sample_per_shard", str(i2d_shard_size(n)),
           # No X-Robots-Tag opt-out checks (the loopback server sends none either way); it
           # has no SSRF guard and no loopback block to switch off.
           "--disallowed_header_directives", "[]"]
    result = measure(cmd, env={**os.environ, "WANDB_MODE": "disabled"})
    stats = [json.loads(p.read_text()) for p in out.glob("*_stats.json")]
    result["images"] = sum(s.get("successes", 0) for s in stats)
    return result


def bench_one(n: int, images: list[bytes], i2d: Path | None, args: argparse.Namespace, tmp: Path) -> dict:
    httpd = serve(images)
    port = httpd.server_address[1]
    tmp.mkdir(parents=True, exist_ok=True)
    urls = tmp / f"urls-{n}.csv"
    with open(urls, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["url", "label"])
        writer.writerows((f"http://127.0.0.1:{port}/img/{i}.jpg", f"label{i % 4}") for i in range(n))
    row: dict = {"n": n}
    try:
        tools = [("ceiling", lambda: run_ceiling(port, n, args.concurrency)),
                 ("headstart", lambda: run_headstart(urls, tmp / f"hs-{n}", port, args))]
        if i2d is not None:
            tools.append(("img2dataset", lambda: run_img2dataset(i2d, urls, tmp / f"i2d-{n}", n, args)))
        for name, fn in tools:
            result = fn()
            ok = result.get("images", n) if name != "ceiling" else (n if result["exit"] == 0 else 0)
            row[name] = {"images_per_s": round(ok / result["seconds"], 1), **result}
            if result["exit"] == 0:
                row[name].pop("stderr_tail")
    finally:
        httpd.shutdown()
        httpd.server_close()
    return row


SETS = {"small": (160, 120), "640x480": (640, 480)}  # small: below --resize, re-encoded only
TARGET = 2.0  # headstart images/s >= 2x img2dataset's, on every set


def _summary(runs: list[dict], set_name: str, images: list[bytes]) -> dict:
    """Figures of one image set; ratios at its largest N, where start-up costs weigh least."""
    last = runs[-1]
    rate = {t: last[t]["images_per_s"] for t in ("ceiling", "headstart", "img2dataset") if t in last}
    out = {"set": set_name, "size": "x".join(map(str, SETS[set_name])),
           "avg_image_kb": round(sum(map(len, images)) / len(images) / 1024, 1),
           "runs": [{"n": r["n"], **{f"{t}_{k}": r[t][k] for t in ("ceiling", "headstart", "img2dataset")
                                     if t in r for k in ("images_per_s", "peak_tree_rss_mb", "exit")}}
                    for r in runs],
           "headstart_share_of_ceiling": round(rate["headstart"] / rate["ceiling"], 3),
           "img2dataset_share_of_ceiling": (round(rate["img2dataset"] / rate["ceiling"], 3)
                                            if "img2dataset" in rate else None),
           "headstart_vs_img2dataset": (round(rate["headstart"] / rate["img2dataset"], 3)
                                        if rate.get("img2dataset") else None),
           "headstart_memory_growth_mb": round(last["headstart"]["peak_tree_rss_mb"]
                                               - runs[0]["headstart"]["peak_tree_rss_mb"], 1)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="640x480 set, N = 100: under a minute")
    parser.add_argument("--sizes", default=None, help="comma-separated N values per set (default "
                        "8000; quick 100); two or more also show memory growth in N")
    parser.add_argument("--sets", default=None, help=f"image sets, of {sorted(SETS)} (default both; "
                        "quick: 640x480 only, as img2dataset's start-up is most of a quick run)")
    parser.add_argument("--resize", type=int, default=256)
    parser.add_argument("--quality", type=int, default=90, help="JPEG quality, both tools")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--decode-workers", type=int, default=None)
    parser.add_argument("--processes", type=int, default=None,
                        help="headstart's --processes (default: its own choice)")
    parser.add_argument("--no-img2dataset", action="store_true")
    args = parser.parse_args()
    sizes = [int(v) for v in (args.sizes or ("100" if args.quick else "8000")).split(",")]
    names = (args.sets or ("640x480" if args.quick else "small,640x480")).split(",")
    if bad := [n for n in names if n not in SETS]:
        parser.error(f"--sets: unknown set {bad[0]!r}; expected some of {sorted(SETS)}")
    i2d, version, error = (None, None, "skipped (--no-img2dataset)") if args.no_img2dataset else install_img2dataset()
    sets = []
    with tempfile.TemporaryDirectory(prefix="bench-scrape-") as tmp:
        for name in names:
            images = base_images(16, SETS[name])
            runs = [bench_one(n, images, i2d, args, Path(tmp) / name) for n in sizes]
            for r in runs:
                for tool in ("headstart", "img2dataset"):
                    if tool in r and r[tool]["exit"] != 0:
                        print(f"{name} {tool} n={r['n']} failed: {r[tool].get('stderr_tail')}", file=sys.stderr)
            sets.append(_summary(runs, name, images))
            print(json.dumps(sets[-1]), file=sys.stderr, flush=True)  # each set as it finishes
    ratios = [s["headstart_vs_img2dataset"] for s in sets]
    print(json.dumps({
        "bench": "scrape_speed", "quick": args.quick, "cpus": usable_cpus(), "resize": args.resize,
        "jpeg_quality": args.quality, "concurrency": args.concurrency, "processes": args.processes,
        "img2dataset_version": version, "img2dataset_error": error, "sets": sets,
        "headstart_vs_img2dataset": min(ratios) if all(r is not None for r in ratios) else None,
        "targets": {"headstart_vs_img2dataset": f">= {TARGET} on every set"},
        "met": {"headstart_vs_img2dataset": all(r is not None and r >= TARGET for r in ratios)},
    }))


if __name__ == "__main__":
    main()
