"""Predict throughput and memory: the streamed predict pipeline vs a plain forward pass.

* speed: images/s of ``headstart predict``'s pipeline (read + decode on a bounded thread pool
  overlapping the forward pass, top-k rows, gallery) ÷ images/s of a plain batched forward
  pass over the same images already decoded in memory. Target >= 0.9: decoding hides behind
  the model. Rounds alternate between the two so a busy machine slows both alike.
* memory: peak RSS of the pipeline in a fresh process at N and 10 N images (the same files
  cycled; tiny model so it is quick): flat means the ratio stays near 1.

Real photos (flowers5) when the handed material is present, else generated JPEGs.
Prints one JSON line last.

    .venv/bin/python bench/predict_speed.py [--quick] [--backbone tiny --size 64]
"""
from __future__ import annotations

import argparse
import json
import logging
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from _common import MOBILENET, emit, quiet, sample_dataset

log = logging.getLogger("bench")


def _model(backbone: str, size: int):
    import keras

    from headstart.shared.model.backbones import build_backbone, get_info
    from headstart.shared.model.classifier import assemble

    keras.utils.set_random_seed(0)
    weights = str(MOBILENET) if backbone == "mobilenet_v2" and size == 160 and MOBILENET.is_file() else "none"
    return assemble(build_backbone(backbone, size, weights), get_info(backbone), size, 5).model, weights


def _refs(n: int, data: str | None = None):
    """``n`` image refs cycling the files of ``data`` (default: the sample dataset)."""
    from headstart.shared.data.imagesets import ImageRef
    from headstart.shared.storage.store import open_store

    uri, what = (data, Path(data).name) if data else sample_dataset(40)
    store = open_store(uri)
    keys = sorted(k for k in store.list() if k.lower().endswith((".jpg", ".jpeg", ".png")))
    return [ImageRef(store.uri, keys[i % len(keys)], keys[i % len(keys)].split("/")[0]) for i in range(n)], what


def _pipeline(model, refs, size: int, batch: int, decode=None) -> int:
    """The predict job's loop (decode pool -> forward -> rows, gallery); returns images done.
    ``decode``: the job's decoder, made once per job (its resize traces per image shape)."""
    from headstart.jobs.predict.outputs import Predictions
    from headstart.jobs.predict.workflow import THUMB
    from headstart.shared.data.imagesets import image_decoder
    from headstart.shared.model.calibration import Calibration
    from headstart.shared.model.predict import stream_batches

    labels = ["daisy", "dandelion", "rose", "sunflower", "tulip"]
    results = Predictions(labels, Calibration(temperature=1.5), 3, 0.5, 24, thumb_size=THUMB)
    try:
        decode = decode or image_decoder(size, 0, model=model, batch_resize=True)
        for r, probs, thumbs, skipped in stream_batches(model, refs, decode, batch):
            results.add(r, probs, thumbs, skipped)
    finally:
        results.discard()
    return results.n


def _stages(model, refs, size: int, batch: int) -> dict:
    """CPU milliseconds per image of each stage, one after the other (the profile behind the
    ratio): the store read + decode, the model's resize, a forward pass. Thumbnails and their
    PNGs are made only for the few images the gallery keeps (not per image)."""
    from headstart.shared.data.images import read_image
    from headstart.shared.data.modelinput import resizer
    from headstart.shared.model.features import compiled_call
    from headstart.shared.storage.store import open_store

    store, resize, forward = open_store(refs[0].root), resizer(size, model), compiled_call(model)
    clock, spent = time.process_time, {"read_decode": 0.0, "resize": 0.0, "forward": 0.0}
    resize(read_image(store, refs[0].key, "", target=size))  # warm-up
    arrays = []
    for ref in refs:
        t0 = clock()
        image = read_image(store, ref.key, "", target=size)
        t1 = clock()
        arrays.append(resize(image))
        spent["read_decode"] += t1 - t0
        spent["resize"] += clock() - t1
    x = np.stack(arrays)
    forward(x[:batch])
    t0 = clock()
    for start in range(0, len(x), batch):
        np.asarray(forward(x[start:start + batch]))
    spent["forward"] = clock() - t0
    return {k: round(v * 1000 / len(refs), 2) for k, v in spent.items()}


def _rss_mb() -> float:
    """Current resident set size (Linux /proc), in MiB."""
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmRSS:")) / 1024


def _rss_child(n: int, backbone: str, size: int, batch: int, data: str | None) -> None:
    """Run the pipeline over ``n`` images, sampling RSS every 20 ms: the peak *during* the
    pipeline, and its growth over the RSS once the model is loaded and warm."""
    import threading

    quiet()
    model, _ = _model(backbone, size)
    refs, _ = _refs(n, data)
    from headstart.shared.data.imagesets import image_decoder

    decode = image_decoder(size, 0, model=model, batch_resize=True)  # as the predict job's
    _pipeline(model, refs[:batch], size, batch, decode)  # warm: traced, pools started
    base, peak, stop = _rss_mb(), [0.0], threading.Event()

    def sample() -> None:
        while not stop.wait(0.02):
            peak[0] = max(peak[0], _rss_mb())
    watcher = threading.Thread(target=sample, daemon=True)
    watcher.start()
    done = _pipeline(model, refs, size, batch, decode)
    stop.set()
    watcher.join()
    peak[0] = max(peak[0], _rss_mb())
    print(json.dumps({"n": done, "base_rss_mb": base, "peak_rss_mb": peak[0],
                      "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def _peak_rss(n: int, backbone: str, size: int, batch: int, data: str | None) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--rss-child", str(n), "--backbone", backbone,
           "--size", str(size), "--batch", str(batch)] + (["--data", data] if data else [])
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
    return json.loads(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer images, 2 rounds (under a minute)")
    parser.add_argument("--backbone", default="mobilenet_v2", help="default: mobilenet_v2 (a tiny "
                        "model's forward pass is too cheap for the ratio to mean anything)")
    parser.add_argument("--size", type=int, default=160, help="default: 160")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--images", type=int, default=None, help="images in the speed rounds")
    parser.add_argument("--rss-images", type=int, default=None, help="N of the N vs 10 N memory runs")
    parser.add_argument("--data", default=None, help="image folder/dataset (default: flowers5 "
                        "beside the repo, else generated shapes)")
    parser.add_argument("--rss-child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    backbone, size = args.backbone, args.size
    if args.rss_child is not None:
        return _rss_child(args.rss_child, "tiny", 32, args.batch, args.data)
    quiet()
    from headstart.shared.data.imagesets import image_decoder
    from headstart.shared.model.features import compiled_call

    n = args.images or (64 if args.quick else 256)
    rss_n = args.rss_images or (100 if args.quick else 1000)
    model, weights = _model(backbone, size)
    refs, what = _refs(n, args.data)
    # The plain pass: images decoded and resized beforehand, in memory; the pipeline decodes
    # as the predict job does (a uniform set's images resized by the model, a batch at a time).
    images = np.stack([image_decoder(size, 0, model=model)(r)[0] for r in refs]).astype(np.float32)
    decode = image_decoder(size, 0, model=model, batch_resize=True)
    forward = compiled_call(model)

    def plain() -> int:
        for start in range(0, n, args.batch):
            np.asarray(forward(images[start:start + args.batch]))
        return n

    plain(), _pipeline(model, refs, size, args.batch, decode)  # warm-up: traces (per image shape), pools
    best = {"forward": 0.0, "predict": 0.0}
    for _ in range(2 if args.quick else 3):
        for name, fn in (("forward", plain), ("predict", lambda: _pipeline(model, refs, size, args.batch, decode))):
            t0 = time.perf_counter()
            done = fn()
            best[name] = max(best[name], done / (time.perf_counter() - t0))
    stages = _stages(model, refs, size, args.batch)
    small, large = (_peak_rss(k, "tiny", 32, args.batch, args.data) for k in (rss_n, 10 * rss_n))
    emit({"bench": "predict_speed", "backbone": backbone, "size": size, "weights": weights,
          "images": n, "data": what, "batch": args.batch,
          "forward_img_s": round(best["forward"], 1), "predict_img_s": round(best["predict"], 1),
          "predict_vs_forward": round(best["predict"] / best["forward"], 3), "target_predict_vs_forward": 0.9,
          "cpu_ms_per_image": stages,
          "rss_images": [small["n"], large["n"]],
          "peak_rss_mb": [round(small["peak_rss_mb"], 1), round(large["peak_rss_mb"], 1)],
          "rss_growth_mb": [round(small["peak_rss_mb"] - small["base_rss_mb"], 1),
                            round(large["peak_rss_mb"] - large["base_rss_mb"], 1)],
          "rss_large_vs_small": round(large["peak_rss_mb"] / small["peak_rss_mb"], 3),
          "quick": args.quick})


if __name__ == "__main__":
    main()
