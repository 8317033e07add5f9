"""Fast path (cached features) vs base-every-step training, and train time vs one forward pass.

Same data, head and epochs for both paths (no early stopping). Prints one JSON line:
images/s of each path, their ratio, and fast-path train seconds / one forward pass over
train+valid. Targets: ratio >= 10 at 10 epochs; train <= 1.3x one forward pass.

    .venv/bin/python bench/train_speed.py [--quick]
"""
from __future__ import annotations

import argparse
import logging
import time

from _common import MOBILENET, emit, quiet, sample_dataset

log = logging.getLogger("bench")


def _splits(dataset: str, per_label: int, size: int):
    from shared.datasets import SplitConfig, discover
    from shared.loading import load_split
    from shared.storage import open_store

    index = discover(dataset, SplitConfig(0.15, 0.0, 7, per_label))
    store = open_store(dataset)
    return index, {n: load_split(store, n, items, index.labels, size) for n, items in index.splits.items()}


def _classifier(index, size: int, weights: str):
    import keras

    from shared.backbones import build_backbone, get_info
    from shared.model import assemble

    keras.utils.set_random_seed(7)
    return assemble(build_backbone("mobilenet_v2", size, weights), get_info("mobilenet_v2"), size,
                    len(index.labels))


def _train(index, splits, size, weights, fast: bool, epochs: int) -> float:
    from shared.checkpoints import CheckpointStore
    from shared.recipe import RecipeConfig, fit
    from shared.storage import open_store
    import tempfile

    clf = _classifier(index, size, weights)
    cfg = RecipeConfig(epochs=epochs, patience=epochs + 1, fast_path=fast, seed=7)
    ckpt = CheckpointStore(open_store(tempfile.mkdtemp(prefix="bench-ckpt-")), "bench")
    t0 = time.monotonic()
    fit(clf, splits, cfg, ckpt)
    return time.monotonic() - t0


def _forward(index, splits, size, weights) -> float:
    from shared.features import EXTRACT_BATCH
    from shared.predict import predict_arrays

    clf = _classifier(index, size, weights)
    predict_arrays(clf.extractor, splits["train"].images[:EXTRACT_BATCH], EXTRACT_BATCH)  # warm up
    t0 = time.monotonic()
    for split in splits.values():
        predict_arrays(clf.extractor, split.images, EXTRACT_BATCH, "forward")
    return time.monotonic() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small run, under a minute")
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args()
    quiet()
    per_label, size = (25, 96) if args.quick else (160, 160)
    dataset, source = sample_dataset(per_label)
    weights = str(MOBILENET) if MOBILENET.is_file() and size == 160 else "none"
    index, splits = _splits(dataset, per_label, size)
    n_train, n_valid = len(splits["train"]), len(splits["valid"])
    forward_s = _forward(index, splits, size, weights)
    fast_s = _train(index, splits, size, weights, True, args.epochs)
    slow_s = _train(index, splits, size, weights, False, args.epochs)
    fast_rate, slow_rate = args.epochs * n_train / fast_s, args.epochs * n_train / slow_s
    emit({
        "bench": "train_speed", "quick": args.quick, "dataset": source, "backbone": "mobilenet_v2",
        "image_size": size, "epochs": args.epochs, "n_train": n_train, "n_valid": n_valid,
        "forward_s": round(forward_s, 2), "fast_s": round(fast_s, 2), "slow_s": round(slow_s, 2),
        "fast_images_per_s": round(fast_rate, 1), "slow_images_per_s": round(slow_rate, 1),
        "ratio": round(fast_rate / slow_rate, 2), "train_over_forward": round(fast_s / forward_s, 3),
        "targets": {"ratio": ">= 10 at 10 epochs", "train_over_forward": "<= 1.3"},
    })


if __name__ == "__main__":
    main()
