"""Peak memory of the train job's decode + backbone stage at a small and a large dataset.

The train job streams decoded images into the frozen base (``jobs.train.stage``): only the
feature cache (memory-mapped) grows with the dataset, so the process's anonymous resident
memory (``RssAnon``: heap, TensorFlow, buffers; the memory-mapped cache is file-backed and
excluded) must stay flat. Side by side in one process, on generated JPEGs (320x240 photos
shrunk while decoding, the ``tiny`` backbone at 64 px so the run is about memory, not FLOPs):

* ``streamed``: :func:`headstart.jobs.train.stage.split_features` at N small and N large;
* ``keep_all`` (full run only): the keep-every-image path (``load_split`` then
  ``extract_features``), what the slow path and fine-tuning do, to show what flat means.

Target: streamed peak RssAnon at the large N <= 1.1x the small N's (and the growth in MB).

    .venv/bin/python bench/decode_memory.py [--quick]     # quick: 1k vs 5k; full: 1k vs 20k
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
import threading
import time
from pathlib import Path
from types import SimpleNamespace

from _common import emit, quiet

SIZE = 64
UNIQUE = 64  # distinct generated photos; the dataset's files are hard links to them


def _rss_anon_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) / 1024
    return 0.0


class PeakSampler:
    """Samples RssAnon every few milliseconds; :meth:`peak` since the last :meth:`reset`."""

    def __init__(self, every: float = 0.005) -> None:
        self.every, self._peak = every, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._peak = max(self._peak, _rss_anon_mb())
            time.sleep(self.every)

    def reset(self) -> None:
        self._peak = _rss_anon_mb()

    def peak(self) -> float:
        return max(self._peak, _rss_anon_mb())

    def stop(self) -> None:
        self._stop.set()


def make_dataset(root: Path, n: int, pool: list[Path]) -> str:
    """``n`` JPEG files in 5 label folders (imagenet layout off: the train job splits them)."""
    for i in range(n):
        dest = root / f"label{i % 5}" / f"{i:06d}.jpg"
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.hardlink_to(pool[i % len(pool)])
    return str(root)


def photo_pool(root: Path) -> list[Path]:
    """A few distinct 320x240 JPEGs with photo-like structure (gradients plus noise)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    y, x = np.mgrid[0:240, 0:320]
    out = []
    for k in range(UNIQUE):
        base = np.stack([(x * (k + 1)) % 256, (y * (k + 3)) % 256, (x + y + 16 * k) % 256], -1)
        img = np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)
        path = root / f"p{k}.jpg"
        Image.fromarray(img).save(path, quality=85)
        out.append(path)
    return out


def _clf():
    from headstart.shared.model.backbones import build_backbone, get_info
    from headstart.shared.model.classifier import assemble

    return assemble(build_backbone("tiny", SIZE, "none"), get_info("tiny"), SIZE, 5)


def _spec(dataset: str, cache_dir: str):
    return SimpleNamespace(dataset=dataset, batch_size=None, min_side=8, max_pixels=10**8,
                           augment_views=0, seed=0, cache_dir=cache_dir)


def _index(dataset: str):
    from headstart.jobs.train.spec import TrainSpec
    from headstart.shared.data.datasets import SplitConfig, discover

    return discover(dataset, SplitConfig.from_spec(TrainSpec(dataset=dataset, out="unused")))


def streamed(dataset: str, clf, cache_dir: str) -> int:
    from headstart.jobs.train.stage import split_features, start_decode

    spec, index = _spec(dataset, cache_dir), _index(dataset)
    source = start_decode(spec, index, SIZE)
    try:
        return sum(len(split) for _, split, _ in split_features(spec, index, clf, source, SIZE))
    finally:
        source.close()


def keep_all(dataset: str, clf, cache_dir: str) -> int:
    from headstart.shared.data.loading import load_split
    from headstart.shared.model.features import extract_features
    from headstart.shared.storage.store import open_store

    index, store, n = _index(dataset), open_store(dataset), 0
    splits = {name: load_split(store, name, items, index.labels, SIZE)
              for name, items in index.splits.items()}
    for split in splits.values():
        n += len(extract_features(clf.extractor, split.images, 32, "features", cache_dir=cache_dir))
    return n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1k vs 5k images, streamed only")
    parser.add_argument("--small", type=int, default=1000)
    parser.add_argument("--large", type=int, default=None, help="default 20000 (quick: 5000)")
    args = parser.parse_args()
    quiet()
    large = args.large or (5000 if args.quick else 20000)
    work = Path(tempfile.mkdtemp(prefix="bench-decode-memory-"))
    pool = photo_pool(work / "pool")
    sets = {n: make_dataset(work / f"n{n}", n, pool) for n in (args.small, large)}
    sampler = PeakSampler()
    clf = _clf()
    streamed(make_dataset(work / "warm", 50, pool), clf, str(work))  # trace and allocate once
    rows: dict[str, dict] = {}
    for mode, fn in [("streamed", streamed)] + ([] if args.quick else [("keep_all", keep_all)]):
        for n, dataset in sets.items():
            sampler.reset()
            t0 = time.monotonic()
            kept = fn(dataset, clf, str(work))
            rows.setdefault(mode, {})[str(n)] = {"images": kept, "peak_rss_anon_mb": round(sampler.peak(), 1),
                                                 "seconds": round(time.monotonic() - t0, 2)}
    sampler.stop()
    shutil.rmtree(work, ignore_errors=True)
    doc: dict = {"bench": "decode_memory", "quick": args.quick, "backbone": f"tiny@{SIZE}",
                 "small": args.small, "large": large, "runs": rows,
                 "targets": {"streamed_ratio": "<= 1.1 (peak RssAnon large / small)"}}
    for mode, r in rows.items():
        a, b = r[str(args.small)]["peak_rss_anon_mb"], r[str(large)]["peak_rss_anon_mb"]
        doc[f"{mode}_ratio"] = round(b / a, 3)
        doc[f"{mode}_growth_mb"] = round(b - a, 1)
    doc["met"] = {"streamed_ratio": doc["streamed_ratio"] <= 1.1}
    emit(doc)


if __name__ == "__main__":
    main()
