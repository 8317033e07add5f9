"""Does shrinking JPEGs while decoding change predictions? Full-resolution vs scaled decode.

Trains a head on flowers5 with the offline MobileNetV2@160 (``headstart train``), then for
every image of the run's test split compares the saved model on the full-resolution decode
(``decode_image(bytes)``) with the model on the scaled decode every job uses
(``decode_image(bytes, target=160)``: DCT-domain when the source is >= 4x the input, keeping
>= 2x for the model's antialiased resize). Both go through the model's own resize layer, so
the only difference is the decode.

flowers5's photos are all 128x128 (under the input), so the scaled decode never triggers on
them as they are; the ``x8`` and ``x16`` variants re-encode each photo upscaled 8x and 16x
(1024 and 2048 px, phone-photo sizes), shrunk while decoding by 2 and by 4. The comparison set is
the run's test split plus the photos ``--max-per-label`` held out (never seen by the head).
Prints top-1 agreement
(target >= 0.99), max |dp|, accuracy of both and the decode speed-up, one JSON line last.

    .venv/bin/python bench/decode_agreement.py [--quick]
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _common
from _common import ROOT, emit, quiet

log = logging.getLogger("bench")
SIZE = 160
UPSCALES = (8, 16)  # 1024 and 2048 px: shrunk by 2 and 4 while decoding (>= 2x the input kept)


FLOWERS, MOBILENET = _common.FLOWERS, _common.MOBILENET


def _train(out: Path, per_label: int) -> None:
    cmd = [str(Path(sys.executable).parent / "headstart"), "train", str(FLOWERS), "--out", str(out),
           "--backbone", "mobilenet_v2", "--weights", str(MOBILENET), "--image-size", str(SIZE),
           "--max-per-label", str(per_label), "--seed", "7"]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"headstart train failed ({done.returncode}):\n{done.stderr[-2000:]}")


def _held_out(run: Path, limit: int) -> list[tuple[str, str]]:
    """The run's test split plus every flowers5 photo ``--max-per-label`` left out: images the
    head never saw (a larger test set), in a seeded order, at most ``limit``."""
    import random

    with open(run / "splits.csv", newline="") as fh:
        seen = {r["key"] for r in csv.DictReader(fh) if r["split"] in ("train", "valid")}
    rows = [(p.relative_to(FLOWERS).as_posix(), p.parent.name) for p in sorted(FLOWERS.glob("*/*"))
            if p.suffix.lower() in (".jpg", ".jpeg", ".png")]
    rows = [r for r in rows if r[0] not in seen]
    random.Random(7).shuffle(rows)
    return rows[:limit]


def _upscaled(data: bytes, factor: int) -> bytes:
    from PIL import Image

    img = Image.open(io.BytesIO(data)).convert("RGB")
    big = img.resize((img.width * factor, img.height * factor), Image.BICUBIC)
    buf = io.BytesIO()
    big.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def _compare(model, labels: list[str], files: list[tuple[bytes, str]]) -> dict:
    import numpy as np

    from headstart.shared.data.images import MODEL_REDUCING_GAP, decode_image, inspect_image, shrink_factor
    from headstart.shared.data.modelinput import resizer
    from headstart.shared.model.predict import predict_arrays

    import tensorflow as tf

    resize = resizer(SIZE, model)
    decode_image(files[0][0])  # warm-up: imports and first-call costs stay out of the timing
    full, scaled, reference, truth, shrunk = [], [], [], [], 0
    t_full = t_scaled = 0.0
    for data, label in files:
        t0 = time.perf_counter()
        a = decode_image(data)
        t1 = time.perf_counter()
        b = decode_image(data, target=SIZE)
        t2 = time.perf_counter()
        t_full, t_scaled = t_full + t1 - t0, t_scaled + t2 - t1
        info = inspect_image(data)
        shrunk += shrink_factor(info.width, info.height, SIZE, MODEL_REDUCING_GAP) > 1
        full.append(resize(a))
        scaled.append(resize(b))
        # an antialiased view of the full decode: which of the two is the faithful picture?
        reference.append(np.asarray(tf.image.resize(a.astype(np.float32), (SIZE, SIZE), antialias=True)))
        truth.append(labels.index(label))
    p_full = predict_arrays(model, np.stack(full), 32, "full")
    p_scaled = predict_arrays(model, np.stack(scaled), 32, "scaled")
    p_ref = predict_arrays(model, np.stack(reference), 32, "reference")
    y = np.asarray(truth)
    return {"n": len(files), "shrunk_share": round(shrunk / len(files), 4),
            "top1_agreement": round(float((p_full.argmax(1) == p_scaled.argmax(1)).mean()), 4),
            "max_abs_dp": round(float(np.abs(p_full - p_scaled).max()), 4),
            "agreement_full_vs_antialiased": round(float((p_full.argmax(1) == p_ref.argmax(1)).mean()), 4),
            "agreement_scaled_vs_antialiased": round(float((p_scaled.argmax(1) == p_ref.argmax(1)).mean()), 4),
            "accuracy_full": round(float((p_full.argmax(1) == y).mean()), 4),
            "accuracy_scaled": round(float((p_scaled.argmax(1) == y).mean()), 4),
            "decode_speedup": round(t_full / max(t_scaled, 1e-9), 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small run (under a minute)")
    parser.add_argument("--per-label", type=int, help="training images per label (default 100; quick 6)")
    parser.add_argument("--limit", type=int, help="images compared (default 500; quick 40)")
    parser.add_argument("--shared", help="the handed material folder (default: ../shared beside the repo)")
    args = parser.parse_args()
    quiet()
    global FLOWERS, MOBILENET
    if args.shared:
        FLOWERS = Path(args.shared) / "data" / "flowers5"
        MOBILENET = Path(args.shared) / "models" / "mobilenetv2_160_backbone.weights.h5"
    if not (FLOWERS.is_dir() and MOBILENET.is_file()):
        emit({"bench": "decode_agreement", "skipped": "../shared flowers5 / MobileNetV2 weights not found"})
        return
    import keras

    per_label, limit = (6, 40) if args.quick else (100, 500)  # 500: ~10 min on 2 busy cores
    per_label, limit = args.per_label or per_label, args.limit or limit
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-agree-") as tmp:
        run = Path(tmp) / "run"
        _train(run, per_label)
        model = keras.models.load_model(run / "model.keras")
        labels = json.loads((run / "labels.json").read_text())["labels"]
        rows = _held_out(run, limit)
        native = [((FLOWERS / key).read_bytes(), label) for key, label in rows]
        result = {"bench": "decode_agreement", "quick": args.quick, "backbone": "mobilenet_v2@160",
                  "train_per_label": per_label, "target_top1_agreement": 0.99,
                  "native": _compare(model, labels, native),
                  **{f"x{f}": _compare(model, labels, [(_upscaled(d, f), lab) for d, lab in native])
                     for f in UPSCALES}}
    result["meets_target"] = all(result[k]["top1_agreement"] >= 0.99
                                 for k in ("native", *(f"x{f}" for f in UPSCALES)))
    result["wall_s"] = round(time.monotonic() - t0, 1)
    emit(result)


if __name__ == "__main__":
    main()
