"""The whole `headstart train` command against its floor (one decode + one backbone pass).

For each dataset, side by side in one run:

* ``train_s``: wall time of the ``headstart train`` command (a subprocess: imports, model
  build, decode, features, head phase, outputs, everything), default recipe;
* ``floor_s``: decoding every image of every split with the same decoder (``load_split``) plus
  one pass of the same backbone over all of them, timed here;
* ``peer_s``: the seed-style loop (the reference post's recipe written with ``tf.data``): decode
  every epoch, the frozen base on every step, 10 epochs (flowers only; it is the slow one;
  ``--quick``: 3 epochs, the 10-epoch time estimated from the later epochs).

Datasets: flowers5 (all 4,317 photos; ``--quick``: 10 per label) and a generated mixed-size set
(20% 2000x1500, the rest 640x480, made from the flowers photos; full run only). Also reported from the run's
own ``metrics.json``: head phase / backbone pass (target <= 0.1; the head phase's wall on the
critical path, ``head_s``: the train job chooses the head beside the test split's backbone pass,
so ``selection_over_backbone`` gives the choice's own seconds too) and the fixed overhead,
wall - (decode + features) (target <= 5 s on a 10-images-per-label run) with its breakdown
(TensorFlow import, model build, head selection, outputs), and command start -> first decoded
image (target <= 3 s).
Targets: train_s / floor_s <= 1.2 on both sets; peer_s / train_s >= 8.

    .venv/bin/python bench/train_speed.py [--quick]
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import FLOWERS, MOBILENET, emit, quiet

log = logging.getLogger("bench")

BACKBONE, SIZE = "mobilenet_v2", 160


def _weights() -> str:
    return str(MOBILENET) if MOBILENET.is_file() else "none"


def mixed_set(root: Path, n: int, seed: int = 0) -> str:
    """``n`` JPEGs under ``<label>/``: 20% 2000x1500, the rest 640x480, from the flowers photos."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    by_label = [sorted(d.glob("*.jpg")) for d in sorted(FLOWERS.iterdir()) if d.is_dir()]
    by_label = [files for files in by_label if files]
    for i in range(n):  # labels round-robin: every label gets n / labels images
        files = by_label[i % len(by_label)]
        src = files[int(rng.integers(len(files)))]
        size = (2000, 1500) if i % 5 == 0 else (640, 480)
        out = root / src.parent.name / f"{i:05d}.jpg"
        out.parent.mkdir(parents=True, exist_ok=True)
        Image.open(src).convert("RGB").resize(size, Image.BILINEAR).save(out, quality=90)
    return str(root)


def _subset(root: Path, per_label: int) -> str:
    """Symlinks to the first ``per_label`` flowers photos of each label."""
    for label_dir in sorted(p for p in FLOWERS.iterdir() if p.is_dir()):
        dest = root / label_dir.name
        dest.mkdir(parents=True, exist_ok=True)
        for src in sorted(label_dir.glob("*.jpg"))[:per_label]:
            (dest / src.name).symlink_to(src)
    return str(root)


def run_train(dataset: str, out: Path, extra: list[str]) -> tuple[float, dict]:
    """Wall seconds of the whole ``headstart train`` command and its metrics.json."""
    exe = Path(sys.executable).with_name("headstart")
    cmd = [str(exe), "train", dataset, "--out", str(out), "--backbone", BACKBONE,
           "--image-size", str(SIZE), "--weights", _weights(), *extra]
    t0 = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    wall = time.monotonic() - t0
    if proc.returncode != 0:
        raise SystemExit(f"train failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return wall, json.loads((out / "metrics.json").read_text())


def floor(dataset: str) -> dict:
    """Decode every split with the train job's decoder, then one backbone pass over all."""
    from headstart.jobs.train.spec import TrainSpec
    from headstart.shared.data.datasets import SplitConfig, discover
    from headstart.shared.data.loading import load_split
    from headstart.shared.model.backbones import build_backbone, get_info
    from headstart.shared.model.classifier import assemble
    from headstart.shared.model.features import extract_batch
    from headstart.shared.model.predict import predict_arrays
    from headstart.shared.storage.store import open_store

    spec = TrainSpec(dataset=dataset, out="unused")
    index = discover(dataset, SplitConfig.from_spec(spec))
    store = open_store(dataset)
    t0 = time.monotonic()
    splits = {name: load_split(store, name, items, index.labels, SIZE, spec.min_side, spec.max_pixels)
              for name, items in index.splits.items()}
    decode_s = time.monotonic() - t0
    clf = assemble(build_backbone(BACKBONE, SIZE, _weights()), get_info(BACKBONE), SIZE, len(index.labels))
    first = next(iter(splits.values())).images
    batch = extract_batch(clf.extractor)  # the train job's batch of the frozen pass
    predict_arrays(clf.extractor, first[:batch], batch)  # trace once, not timed
    t0 = time.monotonic()
    for split in splits.values():
        predict_arrays(clf.extractor, split.images, batch, "forward")
    forward_s = time.monotonic() - t0
    return {"decode_s": decode_s, "forward_s": forward_s, "n": sum(len(s) for s in splits.values()),
            "splits": {k: len(v) for k, v in splits.items()}, "labels": index.labels}


def peer(dataset: str, labels: list[str], epochs: int) -> tuple[float, list[float]]:
    """The seed-style loop: tf.data decode each epoch, base + head every step, ``epochs``."""
    import keras
    import tensorflow as tf

    from headstart.shared.model.backbones import build_backbone, get_info
    from headstart.shared.model.classifier import assemble

    t0 = time.monotonic()
    files = sorted(str(p) for p in Path(dataset).rglob("*.jpg"))
    y = [labels.index(Path(f).parent.name) for f in files]

    def load(path, label):
        img = tf.io.decode_jpeg(tf.io.read_file(path), channels=3)
        return tf.image.resize(img, (SIZE, SIZE)), label

    ds = tf.data.Dataset.from_tensor_slices((files, y)).shuffle(len(files), seed=0)
    n_valid = max(1, len(files) * 15 // 100)
    valid = ds.take(n_valid).map(load, num_parallel_calls=tf.data.AUTOTUNE).batch(32)
    train = ds.skip(n_valid).map(load, num_parallel_calls=tf.data.AUTOTUNE).batch(32)
    clf = assemble(build_backbone(BACKBONE, SIZE, _weights()), get_info(BACKBONE), SIZE, len(labels))
    clf.model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy",
                      metrics=["accuracy"])
    epoch_s: list[float] = []

    class Epochs(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.t = time.monotonic()

        def on_epoch_end(self, epoch, logs=None):
            epoch_s.append(time.monotonic() - self.t)

    clf.model.fit(train.prefetch(2), validation_data=valid, epochs=epochs, verbose=0, callbacks=[Epochs()])
    wall = time.monotonic() - t0
    log.info("peer: %d epochs in %.1fs (per epoch %s)", epochs, wall, [round(e, 1) for e in epoch_s])
    return wall, epoch_s


def measure(name: str, dataset: str, with_peer: bool, peer_epochs: int, work: Path) -> dict:
    train_s, metrics = run_train(dataset, work / f"run-{name}", [])
    fl = floor(dataset)
    timing = metrics["timing"]
    floor_s = fl["decode_s"] + fl["forward_s"]
    row = {"dataset": name, "n": fl["n"], "splits": fl["splits"], "train_s": round(train_s, 2),
           "floor_s": round(floor_s, 2), "decode_s": round(fl["decode_s"], 2),
           "forward_s": round(fl["forward_s"], 2), "train_over_floor": round(train_s / floor_s, 3),
           "run_timing": {k: round(v, 2) for k, v in timing.items()},
           # The head phase on the critical path (the wait for a choice made beside the test
           # split's pass), and the choice's own seconds (overlapped, so part of features_s).
           "head_over_backbone": round(timing.get("head_s", 0) / max(timing["features_s"], 1e-9), 3),
           "selection_over_backbone": round(timing.get("selection_s", 0) / max(timing["features_s"], 1e-9), 3),
           "fixed_overhead_s": round(train_s - timing["decode_s"] - timing["features_s"], 2),
           # The rest of the wall, by stage (the run's own stamps; see jobs.train.stage).
           "overhead_breakdown": {k: round(timing.get(k, 0.0), 2) for k in (
               "import_s", "build_s", "selection_s", "outputs_s")},
           # command start -> first decoded image: the process's age at the job start + the stamp
           "first_image_s": (round(timing.get("process_age_s", 0.0) + timing["first_image_s"], 2)
                             if "first_image_s" in timing else None)}
    log.info("%s", row)  # before the peer: the slow one may not finish on a busy machine
    if with_peer:
        wall, epoch_s = peer(dataset, fl["labels"], peer_epochs)
        row["peer_s"], row["peer_epochs"] = round(wall, 2), peer_epochs
        if peer_epochs < 10 and len(epoch_s) >= 2:  # set-up + first epoch + 9 more like the later ones
            later = sum(epoch_s[1:]) / len(epoch_s[1:])
            row["peer_s_10_estimated"] = round(wall + (10 - peer_epochs) * later, 2)
        row["peer_speedup"] = round(row.get("peer_s_10_estimated", row["peer_s"]) / train_s, 2)
        log.info("%s peer: %s", name, {k: v for k, v in row.items() if k.startswith("peer")})
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sets (under a minute on a quiet machine)")
    parser.add_argument("--mixed", type=int, default=1000, help="images in the generated mixed-size set")
    parser.add_argument("--peer-epochs", type=int, default=None,
                        help="default 10 (quick: 3); below 10, the 10-epoch peer time is estimated "
                             "from the later epochs")
    args = parser.parse_args()
    if args.peer_epochs is None:
        args.peer_epochs = 3 if args.quick else 10
    quiet()
    if not FLOWERS.is_dir():
        raise SystemExit(f"needs the handed flowers photos at {FLOWERS}")
    work = Path(tempfile.mkdtemp(prefix="bench-train-"))
    # Quick: the 10-per-label flowers run is both the main row and the fixed-overhead row, and
    # the mixed-size set is left to the full run (each `headstart train` subprocess spends
    # ~8 s importing TensorFlow here: a second one would take quick past a minute).
    flowers = _subset(work / "flowers", 10) if args.quick else str(FLOWERS)
    rows = [measure("flowers5" + ("-10" if args.quick else "-all"), flowers, True, args.peer_epochs, work)]
    if not args.quick:
        rows.append(measure("mixed", mixed_set(work / "mixed", args.mixed), False, args.peer_epochs, work))
    small = measure("flowers5-10", _subset(work / "small", 10), False, 0, work) if not args.quick else rows[0]
    first = [r["first_image_s"] for r in rows + [small] if r["first_image_s"] is not None]
    met = {"train_over_floor": all(r["train_over_floor"] <= 1.2 for r in rows),
           "peer_speedup": rows[0]["peer_speedup"] >= 8,
           "head_over_backbone": rows[0]["head_over_backbone"] <= 0.1,
           "fixed_overhead_s": small["fixed_overhead_s"] <= 5,
           "first_image_s": bool(first) and max(first) <= 3}
    emit({"bench": "train_speed", "quick": args.quick, "backbone": f"{BACKBONE}@{SIZE}", "runs": rows,
          **({"mixed": "full run only (not in --quick)"} if args.quick else {}),
          "train_over_floor": {r["dataset"]: r["train_over_floor"] for r in rows},
          "peer_speedup": rows[0]["peer_speedup"], "head_over_backbone": rows[0]["head_over_backbone"],
          "fixed_overhead_s": small["fixed_overhead_s"], "fixed_overhead_dataset": small["dataset"],
          "overhead_breakdown": small["overhead_breakdown"], "first_image_s": max(first) if first else None,
          "targets": {"train_over_floor": "<= 1.2", "peer_speedup": ">= 8", "head_over_backbone": "<= 0.1",
                      "fixed_overhead_s": "<= 5 (10 images per label)",
                      "first_image_s": "<= 3 (command start -> first decoded image)"}, "met": met})


if __name__ == "__main__":
    main()
