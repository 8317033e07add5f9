"""Does shrinking JPEGs while decoding change predictions? Full-resolution vs scaled decode.

Trains a head on flowers5 with the offline MobileNetV2@160 (``headstart train``), then for
every image of the run's test split compares the saved model on the full-resolution decode
(``decode_image(bytes)``) with the model on the scaled decode every job uses
(``decode_image(bytes, target=160)``: DCT-domain when the source is >= 2x the input). Both go
through the model's own resize layer, so the only difference is the decode.

flowers5's photos are mostly ~320x240 (under 2x the input on the short side), so the scaled
decode rarely triggers on them as they are; the ``x4`` variant re-encodes each test photo
upscaled 4x (~1280x960, a phone-photo size), where it always does. Prints top-1 agreement
(target >= 0.99), max |dp|, accuracy of both and the decode speed-up, one JSON line last.

    .venv/bin/python bench/decode_agreement.py [--quick]
"""
from __future__ import annotations

import argparse
import csv
import io
import logging
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import FLOWERS, MOBILENET, ROOT, emit, have_material, quiet

log = logging.getLogger("bench")
SIZE = 160


def _train(out: Path, per_label: int) -> None:
    cmd = [str(Path(sys.executable).parent / "headstart"), "train", str(FLOWERS), "--out", str(out),
           "--backbone", "mobilenet_v2", "--weights", str(MOBILENET), "--image-size", str(SIZE),
           "--max-per-label", str(per_label), "--seed", "7"]
    subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)


def _test_keys(run: Path, limit: int) -> list[tuple[str, str]]:
    with open(run / "splits.csv", newline="") as fh:
        rows = [(r["key"], r["label"]) for r in csv.DictReader(fh) if r["split"] == "test"]
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

    from headstart.shared.data.images import decode_image, shrink_factor, inspect_image
    from headstart.shared.data.modelinput import resizer
    from headstart.shared.model.predict import predict_arrays

    resize = resizer(SIZE, model)
    full, scaled, truth, shrunk = [], [], [], 0
    t_full = t_scaled = 0.0
    for data, label in files:
        t0 = time.perf_counter()
        a = decode_image(data)
        t1 = time.perf_counter()
        b = decode_image(data, target=SIZE)
        t2 = time.perf_counter()
        t_full, t_scaled = t_full + t1 - t0, t_scaled + t2 - t1
        info = inspect_image(data)
        shrunk += shrink_factor(info.width, info.height, SIZE) > 1
        full.append(resize(a))
        scaled.append(resize(b))
        truth.append(labels.index(label))
    p_full = predict_arrays(model, np.stack(full), 32, "full")
    p_scaled = predict_arrays(model, np.stack(scaled), 32, "scaled")
    y = np.asarray(truth)
    return {"n": len(files), "shrunk_share": round(shrunk / len(files), 4),
            "top1_agreement": round(float((p_full.argmax(1) == p_scaled.argmax(1)).mean()), 4),
            "max_abs_dp": round(float(np.abs(p_full - p_scaled).max()), 4),
            "accuracy_full": round(float((p_full.argmax(1) == y).mean()), 4),
            "accuracy_scaled": round(float((p_scaled.argmax(1) == y).mean()), 4),
            "decode_speedup": round(t_full / max(t_scaled, 1e-9), 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small run (under a minute)")
    args = parser.parse_args()
    quiet()
    if not have_material():
        emit({"bench": "decode_agreement", "skipped": "../shared flowers5 / MobileNetV2 weights not found"})
        return
    import keras

    per_label, limit = (12, 60) if args.quick else (200, 2000)
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-agree-") as tmp:
        run = Path(tmp) / "run"
        _train(run, per_label)
        model = keras.models.load_model(run / "model.keras")
        labels = __import__("json").loads((run / "labels.json").read_text())["labels"]
        rows = _test_keys(run, limit)
        native = [((FLOWERS / key).read_bytes(), label) for key, label in rows]
        result = {"bench": "decode_agreement", "quick": args.quick, "backbone": "mobilenet_v2@160",
                  "train_per_label": per_label, "target_top1_agreement": 0.99,
                  "native": _compare(model, labels, native),
                  "x4": _compare(model, labels, [(_upscaled(d, 4), lab) for d, lab in native])}
    result["meets_target"] = all(result[k]["top1_agreement"] >= 0.99 for k in ("native", "x4"))
    result["wall_s"] = round(time.monotonic() - t0, 1)
    emit(result)


if __name__ == "__main__":
    main()
