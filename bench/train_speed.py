"""Fast path (cached features) vs base-every-step training, and train time vs one forward pass.

Same data, head and epochs for both paths (no early stopping). Prints one JSON line:
images/s of each path, their ratio, and fast-path train seconds / one forward pass over
train+valid, for the default backbone (ResNet50 at 224) and for the light MobileNetV2 at 160
(where the head's own compute is a larger share). Targets: ratio >= 10 at 10 epochs;
train <= 1.3x one forward pass.

    .venv/bin/python bench/train_speed.py [--quick]
"""
from __future__ import annotations

import argparse
import logging
import time

from _common import MOBILENET, emit, quiet, sample_dataset

log = logging.getLogger("bench")


def _splits(dataset: str, per_label: int, size: int):
    from headstart.shared.data.datasets import SplitConfig, discover
    from headstart.shared.data.loading import load_split
    from headstart.shared.storage.store import open_store

    index = discover(dataset, SplitConfig(valid_fraction=0.15, test_fraction=0.0, seed=7, max_per_label=per_label))
    store = open_store(dataset)
    return index, {n: load_split(store, n, items, index.labels, size) for n, items in index.splits.items()}


def _classifier(backbone: str, index, size: int, weights: str):
    import keras

    from headstart.shared.model.backbones import build_backbone, get_info
    from headstart.shared.model.classifier import assemble

    keras.utils.set_random_seed(7)
    return assemble(build_backbone(backbone, size, weights), get_info(backbone), size, len(index.labels))


def _train(backbone, index, splits, size, weights, fast: bool, epochs: int) -> float:
    from headstart.shared.model.checkpoints import CheckpointStore
    from headstart.shared.model.recipe import RecipeConfig, fit
    from headstart.shared.storage.store import open_store
    import tempfile

    clf = _classifier(backbone, index, size, weights)
    from headstart.jobs.train.spec import TrainSpec

    spec = TrainSpec(dataset="bench", out="bench", epochs=epochs, patience=epochs + 1, fast_path=fast, seed=7)
    cfg = RecipeConfig.from_spec(spec, batch_size=32, class_weights=None)
    ckpt = CheckpointStore(open_store(tempfile.mkdtemp(prefix="bench-ckpt-")), "bench")
    t0 = time.monotonic()
    fit(clf, splits, cfg, ckpt)
    return time.monotonic() - t0


def _forward(backbone, index, splits, size, weights) -> float:
    from headstart.shared.model.features import EXTRACT_BATCH
    from headstart.shared.model.predict import predict_arrays

    clf = _classifier(backbone, index, size, weights)
    predict_arrays(clf.extractor, splits["train"].images[:EXTRACT_BATCH], EXTRACT_BATCH)  # warm up
    t0 = time.monotonic()
    for split in splits.values():
        predict_arrays(clf.extractor, split.images, EXTRACT_BATCH, "forward")
    return time.monotonic() - t0


def measure(backbone: str, size: int, per_label: int, epochs: int) -> dict:
    """One side-by-side comparison: forward pass, fast path, slow path."""
    dataset, source = sample_dataset(per_label)
    # Speed does not depend on the weights' values; use the offline file where it fits.
    weights = str(MOBILENET) if backbone == "mobilenet_v2" and size == 160 and MOBILENET.is_file() else "none"
    index, splits = _splits(dataset, per_label, size)
    n_train, n_valid = len(splits["train"]), len(splits["valid"])
    forward_s = _forward(backbone, index, splits, size, weights)
    fast_s = _train(backbone, index, splits, size, weights, True, epochs)
    slow_s = _train(backbone, index, splits, size, weights, False, epochs)
    fast_rate, slow_rate = epochs * n_train / fast_s, epochs * n_train / slow_s
    row = {"backbone": backbone, "image_size": size, "dataset": source, "n_train": n_train,
           "n_valid": n_valid, "forward_s": round(forward_s, 2), "fast_s": round(fast_s, 2),
           "slow_s": round(slow_s, 2), "fast_images_per_s": round(fast_rate, 1),
           "slow_images_per_s": round(slow_rate, 1), "ratio": round(fast_rate / slow_rate, 2),
           "train_over_forward": round(fast_s / forward_s, 3)}
    log.info("%s", row)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small run, under a minute")
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args()
    quiet()
    plan = [("resnet50", 64, 12)] if args.quick else [("resnet50", 224, 60), ("mobilenet_v2", 160, 160)]
    rows = [measure(b, size, k, args.epochs) for b, size, k in plan]
    head = rows[0]
    emit({"bench": "train_speed", "quick": args.quick, "epochs": args.epochs, "runs": rows,
          "ratio": head["ratio"], "train_over_forward": head["train_over_forward"],
          "targets": {"ratio": ">= 10 at 10 epochs", "train_over_forward": "<= 1.3"},
          "met": {"ratio": head["ratio"] >= 10, "train_over_forward": head["train_over_forward"] <= 1.3}})


if __name__ == "__main__":
    main()
