"""Memory of ``scrape-merge`` against the number of images, manifest included.

For each N a finished one-shard scrape of N distinct tiny images (20 labels, parts of 500
records) is written to a temporary folder by a helper process; then, each in a fresh
process, ``finalize`` runs once under tracemalloc (Python heap peak) and once bare (peak RSS
above the RSS just before the merge, from VmHWM). The target is flat: well under 100 B per
extra image. The Python heap is checked from the smallest to the largest N; RSS from the
last two sizes, since it first grows by a fixed amount while SQLite's page caches fill
(4 MB for the merge index, 2 MB for the manifest's file list; full by ~20k images).

    python bench/merge_memory.py --quick      # 2k vs 10k, Python heap only (< 1 min)
    python bench/merge_memory.py              # 2k, 20k, 100k
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import ROOT, emit

TARGET_B_PER_IMAGE = 100


def build(root: Path, n: int, labels: int = 20) -> None:
    """Records + staged objects of a finished one-shard scrape (plain writes: no fsync)."""
    from headstart.jobs.scrape import records

    folder = root / records.shard_dir(0, 1)
    folder.mkdir(parents=True)
    for start in range(0, n, 500):
        with open(folder / f"part-b-{start:08d}.csv", "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, records.FIELDS, extrasaction="ignore", lineterminator="\n")
            writer.writeheader()
            for i in range(start, min(n, start + 500)):
                data = f"img{i}".encode()
                sha = hashlib.sha256(data).hexdigest()
                obj = root / records.object_key(sha, "jpg")
                obj.parent.mkdir(parents=True, exist_ok=True)
                obj.write_bytes(data)
                writer.writerow({"index": i, "url": f"http://example.com/{i}.jpg", "label": f"label{i % labels}",
                                 "status": "ok", "sha": sha, "ext": "jpg", "stored_bytes": len(data),
                                 "stored_sha256": sha, "attempts": 1})
    (folder / records.DONE).write_text("{}")


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(field)


def measure(root: Path, mode: str) -> dict:
    """One merge in this (fresh) process: tracemalloc peak or RSS peak above the start."""
    import logging
    import tracemalloc

    from headstart.jobs.scrape.merge import finalize
    from headstart.jobs.scrape.spec import SplitSettings
    from headstart.shared.storage.store import open_store

    logging.disable(logging.INFO)
    store = open_store(root)
    t0 = time.perf_counter()
    if mode == "tracemalloc":
        tracemalloc.start()
        finalize(store, SplitSettings(), shard_count=1)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return {"tracemalloc_peak": peak, "seconds": round(time.perf_counter() - t0, 2)}
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    base = _status_kb("VmRSS")
    finalize(store, SplitSettings(), shard_count=1)
    return {"rss_growth": (_status_kb("VmHWM") - base) * 1024, "seconds": round(time.perf_counter() - t0, 2)}


def _child(*args: str) -> dict:
    out = subprocess.run([sys.executable, __file__, *args], check=True, capture_output=True, text=True,
                         cwd=ROOT).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="2k vs 10k images, Python heap only (no RSS runs)")
    parser.add_argument("--sizes", type=int, nargs="+", help="image counts (default 2000 20000 100000)")
    parser.add_argument("--_build", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--_measure", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._build:
        build(Path(args._build[0]), int(args._build[1]))
        print("{}")
        return
    if args._measure:
        print(json.dumps(measure(Path(args._measure[0]), args._measure[1])))
        return
    sizes = args.sizes or ([2000, 10000] if args.quick else [2000, 20000, 100000])
    t0, rows = time.perf_counter(), []
    with tempfile.TemporaryDirectory(prefix="bench-merge-") as tmp:
        for n in sizes:
            row: dict = {"images": n}
            modes = ("tracemalloc",) if args.quick else ("tracemalloc", "rss")
            _child("--_build", str(Path(tmp) / f"{n}-{modes[-1]}"), str(n))
            if len(modes) > 1:
                shutil.copytree(Path(tmp) / f"{n}-rss", Path(tmp) / f"{n}-tracemalloc")
            for mode in modes:  # each on a fresh, never-merged copy
                got = _child("--_measure", str(Path(tmp) / f"{n}-{mode}"), mode)
                row.update(got if mode == modes[-1] else {"tracemalloc_peak": got["tracemalloc_peak"]})
            row["manifest_bytes"] = (Path(tmp) / f"{n}-{modes[-1]}" / "manifest.json").stat().st_size
            rows.append(row)
            rss = f"{row['rss_growth'] / 1e6:7.2f} MB" if "rss_growth" in row else "-"
            print(f"{n:>8,d} images: tracemalloc peak {row['tracemalloc_peak'] / 1e6:7.2f} MB, "
                  f"RSS growth {rss}, merge {row['seconds']:.1f} s, "
                  f"manifest {row['manifest_bytes'] / 1e6:.1f} MB", file=sys.stderr, flush=True)

    def slope(a: dict, b: dict, key: str) -> float:
        return round((b[key] - a[key]) / (b["images"] - a["images"]), 1)

    heap = slope(rows[0], rows[-1], "tracemalloc_peak")
    rss_tail = slope(rows[-2], rows[-1], "rss_growth") if len(rows) > 2 and "rss_growth" in rows[0] else None
    checked = [heap] + ([rss_tail] if rss_tail is not None else [])
    emit({"bench": "merge_memory", "rows": rows,
          "heap_bytes_per_extra_image": heap,
          "rss_bytes_per_extra_image_first_to_last": (slope(rows[0], rows[-1], "rss_growth")
                                                      if "rss_growth" in rows[0] else None),
          "rss_bytes_per_extra_image_last_two": rss_tail,
          "target_bytes_per_extra_image": TARGET_B_PER_IMAGE,
          "meets_target": all(v < TARGET_B_PER_IMAGE for v in checked),
          "wall_s": round(time.perf_counter() - t0, 1)})


if __name__ == "__main__":
    main()
