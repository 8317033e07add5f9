"""The features path at scale: rates measured here, then the cost model of the README.

Measured in one run on this machine:

* ``decode_per_core``: images/s of the one decode path (``read_image`` + the model's resize)
  on one thread, over real photos (flowers5; generated shapes without the handed material);
* ``features_img_s``: ``headstart features`` end to end on one shard (decode threads + the
  frozen MobileNetV2@160 pass on the CPU), and the forward pass alone (``forward_img_s``);
* ``train_from_shards_s``: ``headstart train --features`` (merge of 8 shards + head +
  outputs) at three dataset sizes, on synthetic pooled shards with the real backbone's
  digest; its CPU seconds are fitted as ``a + b * n`` (the cores here are shared by other
  work, so CPU time is the better estimate of an idle machine's wall time).

The model (printed as ``model``): a shard's rate is ``min(GPU forward, decode_per_core x
vCPUs)``; wall = ``startup + N / (k x rate) + train(N)``; cost = ``k x (startup + N / (k x
rate)) x gpu_price + train(N) x gpu_price``. The GPU forward rate, the vCPUs, start-up and
prices are assumptions (ASSUMED below), not measurements.

    HEADSTART_SHARED=/work/shared nice -n 10 .venv/bin/python bench/features_scale.py [--quick]
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import _common
import numpy as np

# Assumptions of the cost model (not measured here: no GPU, no AWS). g5.xlarge: 1 A10G, 4 vCPUs.
ASSUMED = {
    "gpu_instance": "g5.xlarge (1x A10G, 4 vCPU), us-east-1 on-demand",
    "gpu_price_per_h": 1.006,
    "vcpus_per_shard": 4,
    "gpu_forward_img_s": 2000.0,   # ResNet50@224 mixed precision on an A10G, batch 64 (assumed)
    "startup_s": 180.0,            # Batch placement + image pull + TF import + backbone build (assumed)
}
SHARD_COUNTS = (1, 2, 4, 8, 16, 32, 64)


def _decode_rate(dataset: str, n: int) -> float:
    from headstart.shared.data.datasets import SplitConfig, discover
    from headstart.shared.data.images import read_image
    from headstart.shared.data.modelinput import resizer
    from headstart.shared.storage.store import open_store

    index = discover(dataset, SplitConfig(max_per_label=max(2, n // 5)))
    items = [it for items in index.splits.values() for it in items][:n]
    store, resize = open_store(dataset), resizer(160)
    resize(np.zeros((8, 8, 3), np.uint8))  # trace once, outside the timing
    t0 = time.process_time()  # one thread: CPU time is what an idle core would take
    for it in items:
        resize(read_image(store, it.key, it.label, target=160))
    return len(items) / (time.process_time() - t0)


def _features_run(dataset: str, per_label: int, net: dict, out: str) -> dict:
    from headstart.shared.runtime.cli import main

    t0, c0 = time.perf_counter(), time.process_time()
    assert main(["features", dataset, "--out", out, *net["flags"], "--max-per-label", str(per_label),
                 "--batch-size", "64"]) == 0
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    meta = json.loads(Path(out, "features.json").read_text())
    return {"images": meta["rows"], "wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
            "pass_img_s": meta["images_per_s"], "digest": meta["digest"]}


def _synthetic_shards(root: str, dataset: str, n: int, net: dict, digest: str, shards: int = 8) -> str:
    """``shards`` feature shards of ``n`` rows (5 labels, the backbone's channels, 70/15/15 split)."""
    from headstart.shared.model.featureshards import ShardWriter
    from headstart.shared.data.datasets import Item
    from headstart.shared.data.modelinput import preprocessing_tag
    from headstart.shared.storage.manifest import RunOutput
    from headstart.shared.storage.store import open_store

    rng = np.random.default_rng(n)
    labels = ["daisy", "dandelion", "roses", "sunflowers", "tulips"]
    c = net["channels"]
    centres = rng.normal(0, 1, (5, c)).astype(np.float32)
    splits = rng.choice(["train", "valid", "test"], size=n, p=[0.7, 0.15, 0.15])
    position = dict.fromkeys(("train", "valid", "test"), 0)
    out = f"{root}/shards-{n}"
    meta = {"dataset": open_store(dataset).uri, "labels": labels, "layout": "flat",
            "backbone": net["backbone"], "image_size": net["size"], "weights": net["weights"],
            "preprocess": net["preprocess"], "resize": preprocessing_tag(),  # what the features job records
            "digest": digest, "fingerprint": "synthetic", "shard_count": shards, "valid_fraction": 0.15,
            "test_fraction": 0.15, "seed": 1337, "max_per_label": None, "min_per_label": 2,
            "min_side": 8, "max_pixels": 89478485}
    writers = [ShardWriter(RunOutput(open_store(f"{out}/shard-{i:05d}-of-{shards:05d}"), "features"), c, None)
               for i in range(shards)]
    for start in range(0, n, 4096):
        stop = min(n, start + 4096)
        y = rng.integers(0, 5, stop - start)
        maps = (np.maximum(centres[y] * 0.5 + rng.normal(0, 1, (stop - start, c)), 0)).astype(np.float32)
        rows = []
        for j, i in enumerate(range(start, stop)):
            s = splits[i]
            rows.append((s, position[s], Item(f"{labels[y[j]]}/{i}.jpg", labels[y[j]])))
            position[s] += 1
        for k, writer in enumerate(writers):
            take = [j for j in range(stop - start) if (start + j) % shards == k]
            writer.add([rows[j] for j in take], maps[take][:, None, None, :])
    for i, w in enumerate(writers):
        w.publish({**meta, "shard": i})
    return out


def _train_from_shards(dataset: str, shards: str, net: dict, out: str) -> dict:
    """Wall and CPU seconds of ``train --features`` in this process, and its own timing split."""
    from headstart.shared.runtime.cli import main

    t0, c0 = time.perf_counter(), time.process_time()
    assert main(["train", dataset, "--out", out, *net["flags"], "--features", shards]) == 0
    timing = json.loads(Path(out, "metrics.json").read_text())["timing"]
    return {"wall_s": round(time.perf_counter() - t0, 2), "cpu_s": round(time.process_time() - c0, 2),
            "merge_s": round(timing.get("shards_s", timing.get("decode_s", 0.0)), 2),
            "head_s": round(timing.get("head_s", 0.0), 2)}


def model(rate_here: dict, fit: tuple[float, float]) -> dict:
    """Wall time and cost vs shard count at 100k and 1M images (see the module docstring)."""
    a, b = fit
    rate = min(ASSUMED["gpu_forward_img_s"], rate_here["decode_per_core"] * ASSUMED["vcpus_per_shard"])
    price = ASSUMED["gpu_price_per_h"] / 3600
    rows = {}
    for n in (100_000, 1_000_000):
        train = a + b * n
        rows[str(n)] = [{"shards": k, "wall_min": round((ASSUMED["startup_s"] + n / (k * rate) + train) / 60, 1),
                         "cost_usd": round((k * (ASSUMED["startup_s"] + n / (k * rate)) + train) * price, 2)}
                        for k in SHARD_COUNTS]
    return {"shard_img_s": round(rate, 1), "train_fit_s": [round(a, 2), round(b * 1e3, 4)], "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (under a minute)")
    args = parser.parse_args()
    _common.quiet()
    t_start = time.perf_counter()
    dataset, what = _common.sample_dataset(per_label=20)
    weights = str(_common.MOBILENET) if _common.MOBILENET.is_file() else "none"
    # --quick: the tiny backbone (a smoke run of every step; its rates mean nothing for the model)
    net = ({"backbone": "tiny", "size": 64, "weights": "none", "preprocess": "unit", "channels": 64}
           if args.quick else {"backbone": "mobilenet_v2", "size": 160, "weights": weights,
                               "preprocess": "tf", "channels": 1280})
    net["flags"] = ["--backbone", net["backbone"], "--image-size", str(net["size"]), "--weights", net["weights"]]
    sizes = (500, 1000) if args.quick else (5000, 20_000, 50_000)
    per_label = 4 if args.quick else 100
    tmp = tempfile.mkdtemp(prefix="bench-features-")
    here: dict = {"decode_per_core": round(_decode_rate(dataset, 20 if args.quick else 100), 1)}
    run = _features_run(dataset, per_label, net, f"{tmp}/feat")
    here.update(features_img_s=round(run["images"] / run["wall_s"], 2), forward_img_s=run["pass_img_s"],
                features_images=run["images"], features_wall_s=run["wall_s"], features_cpu_s=run["cpu_s"],
                features_img_per_cpu_s=round(run["images"] / run["cpu_s"], 2))
    train = {}
    for n in sizes:
        shards = _synthetic_shards(tmp, dataset, n, net, run["digest"])
        train[str(n)] = _train_from_shards(dataset, shards, net, f"{tmp}/run-{n}")
    # CPU seconds, not wall: this machine's cores are shared, so wall time is mostly waiting.
    xs, ys = np.asarray(sizes, float), np.asarray([train[str(n)]["cpu_s"] for n in sizes])
    b, a = np.polyfit(xs, ys, 1)
    here["train_slope_clamped"] = bool(b < 0)
    b = max(float(b), 0.0)
    result = {"bench": "features_scale", "quick": args.quick, "data": what, "backbone": net["backbone"],
              "measured_here": here,
              "train_from_shards_s": train, "assumed": ASSUMED, "model": model(here, (float(a), float(b))),
              "wall_s": round(time.perf_counter() - t_start, 1),
              "targets": {"quick_under_s": 60}, "note": "a model: the GPU rate, start-up and prices are assumptions"}
    _common.emit(result)


if __name__ == "__main__":
    main()
