"""Demo: a sample dataset -> train -> evaluate, offline, printing where the report is.

With the handed material beside the checkout (``../shared``: real flower photos and offline
MobileNetV2 weights) the demo trains a real transfer-learning model on a subset; without it,
it generates a small shapes dataset and trains the tiny CNN from scratch.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from headstart.jobs.demo.spec import DemoSpec
from headstart.shared.data.images import encode_jpeg
from headstart.shared.runtime.summary import Summary
from headstart.shared.storage.store import join, open_store

log = logging.getLogger("headstart.demo")

SHAPES = ("circle", "square", "triangle", "cross")


def _shape_image(rng: np.random.Generator, label: str, size: int = 64) -> np.ndarray:
    bg = tuple(int(c) for c in rng.integers(0, 256, 3))
    fg = tuple(int((c + 128) % 256) for c in bg)  # contrasting colour
    img = Image.new("RGB", (size, size), bg)
    draw = ImageDraw.Draw(img)
    r = int(rng.integers(size // 6, size // 3))
    x, y = (int(v) for v in rng.integers(r, size - r, 2))
    if label == "circle":
        draw.ellipse([x - r, y - r, x + r, y + r], fill=fg)
    elif label == "square":
        draw.rectangle([x - r, y - r, x + r, y + r], fill=fg)
    elif label == "triangle":
        draw.polygon([(x - r, y + r), (x + r, y + r), (x, y - r)], fill=fg)
    else:
        w = max(2, r // 3)
        draw.rectangle([x - r, y - w, x + r, y + w], fill=fg)
        draw.rectangle([x - w, y - r, x + w, y + r], fill=fg)
    noise = rng.normal(0, 8, (size, size, 3))
    return np.clip(np.asarray(img, dtype=np.float32) + noise, 0, 255).astype(np.uint8)


def generate_shapes(uri: str, per_label: int, seed: int = 0) -> str:
    """Write a flat ``<label>/<n>.jpg`` shapes dataset and return its URI."""
    store = open_store(uri)
    rng = np.random.default_rng(seed)
    for label in SHAPES:
        for i in range(per_label):
            store.write_bytes(f"{label}/{i:04d}.jpg", encode_jpeg(_shape_image(rng, label)))
    return store.uri


def _handed_material(spec: DemoSpec) -> Path | None:
    candidates = [Path(spec.shared_dir)] if spec.shared_dir else [
        Path.cwd().parent / "shared", Path(__file__).resolve().parents[3] / "shared"]
    for base in candidates:
        if (base / "data/flowers5").is_dir() and (base / "models/mobilenetv2_160_backbone.weights.h5").is_file():
            return base
    return None


def demo(spec: DemoSpec) -> Summary:
    """Train and evaluate on the best sample data available offline."""
    from headstart.jobs.evaluate.spec import EvaluateSpec
    from headstart.jobs.evaluate.workflow import evaluate
    from headstart.jobs.train.spec import TrainSpec
    from headstart.jobs.train.workflow import train

    material = _handed_material(spec)
    run, ev = join(spec.out, "model"), join(spec.out, "evaluation")
    if material:
        log.info("demo: real photos from %s/data/flowers5 (%d per label), MobileNetV2 at 160px "
                 "with offline ImageNet weights", material, spec.per_label)
        tspec = TrainSpec(dataset=str(material / "data/flowers5"), out=run, backbone="mobilenet_v2",
                          image_size=160, weights=str(material / "models/mobilenetv2_160_backbone.weights.h5"),
                          max_per_label=spec.per_label, epochs=15, overwrite=True)
    else:
        data = generate_shapes(join(spec.out, "data"), spec.per_label)
        log.info("demo: ../shared not found; generated a shapes dataset at %s and training the tiny "
                 "CNN from scratch", data)
        tspec = TrainSpec(dataset=data, out=run, backbone="tiny", weights="none", image_size=64,
                          epochs=30, patience=5, overwrite=True)
    train(tspec)
    result = evaluate(EvaluateSpec(model=run, dataset=tspec.dataset, out=ev))
    log.info("demo done: report at %s", result.report)
    return Summary(job="demo", out=open_store(spec.out).uri, produced="dataset + model + evaluation",
                   metric=result.metric, value=result.value, report=result.report,
                   details={"model": run, "evaluation": ev})
