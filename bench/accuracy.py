"""Transfer-learning accuracy on real photos: default recipe, fine-tuning, logistic regression.

flowers5 with MobileNetV2 at 160 and the offline weights in ../shared/models; k images per
label (10, 20, all), a seeded 70/30 stratified test split. The default recipe holds out part
of its 70% for early stopping; the logistic regression (scikit-learn, benchmark only) fits
the pooled features of the same training images and picks its C on the same held-out part.
Prints one JSON line.

    .venv/bin/python bench/accuracy.py [--quick]
"""
from __future__ import annotations

import argparse
import statistics
import logging
import sys
import tempfile
import time

from _common import FLOWERS, MOBILENET, emit, have_material, quiet

log = logging.getLogger("bench")
SEED = 11
SEEDS = [11, 12, 13, 14, 15]  # small k: a 30-image test set moves 3 points per image
FINE_TUNE_LAYERS = 20  # about the last three inverted-residual blocks of MobileNetV2


def _train(k: int | None, fine_tune: int, seed: int) -> dict:
    from headstart.jobs.train.spec import TrainSpec
    from headstart.jobs.train.workflow import train
    from headstart.shared.storage.store import open_store
    import json

    out = tempfile.mkdtemp(prefix="bench-acc-")
    spec = TrainSpec(dataset=str(FLOWERS), out=out, backbone="mobilenet_v2", image_size=160,
                     weights=str(MOBILENET), max_per_label=k, valid_fraction=0.15, test_fraction=0.3,
                     seed=seed, fine_tune_layers=fine_tune, fine_tune_epochs=5)
    t0 = time.monotonic()
    train(spec)
    metrics = json.loads(open_store(out).read_text("metrics.json"))
    return {"test_accuracy": round(metrics["splits"]["test"]["accuracy"], 4),
            "seconds": round(time.monotonic() - t0, 1), "n_test": metrics["splits"]["test"]["n"]}


def _logistic(k: int | None, seed: int) -> dict:
    """Logistic regression on the same pooled features: fit on train, C chosen on valid."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from headstart.shared.model.backbones import build_backbone, get_info
    from headstart.shared.data.datasets import SplitConfig, discover
    from headstart.shared.model.features import extract_features
    from headstart.shared.data.loading import load_split
    from headstart.shared.model.classifier import assemble
    from headstart.shared.storage.store import open_store

    index = discover(str(FLOWERS), SplitConfig(valid_fraction=0.15, test_fraction=0.3, seed=seed, max_per_label=k))
    clf = assemble(build_backbone("mobilenet_v2", 160, str(MOBILENET)), get_info("mobilenet_v2"), 160,
                   len(index.labels))
    pooled, labels = {}, {}
    for name, items in index.splits.items():
        split = load_split(open_store(str(FLOWERS)), name, items, index.labels, 160)
        pooled[name] = extract_features(clf.extractor, split.images, 64, name)[:, 0].astype("float32").mean(axis=(1, 2))
        labels[name] = split.labels
    # Same images as the recipe: fit on train, choose the regularisation on valid.
    best = (-1.0, 0.0, None)
    for c in (0.01, 0.1, 1.0):
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000, C=c))
        model.fit(pooled["train"], labels["train"])
        score = model.score(pooled["valid"], labels["valid"])
        if score > best[0]:
            best = (score, c, model)
    return {"test_accuracy": round(float(best[2].score(pooled["test"], labels["test"])), 4), "C": best[1]}


def _mean(runs: list[dict]) -> dict:
    accs = [r["test_accuracy"] for r in runs]
    return {"test_accuracy": round(statistics.mean(accs), 4),
            "std": round(statistics.pstdev(accs), 4), "per_seed": accs,
            "n_test": sum(r.get("n_test", 0) for r in runs) or None}


def _compare(k: int | None, seeds: list[int], fine_tune: bool) -> dict:
    """Every method on the same seeded splits; small k averages several seeds (noise)."""
    rows: dict[str, list[dict]] = {"default_recipe": [], "fine_tuned": [], "logistic_regression": []}
    for seed in seeds:
        rows["default_recipe"].append(_train(k, 0, seed))
        if fine_tune:
            rows["fine_tuned"].append(_train(k, FINE_TUNE_LAYERS, seed))
        rows["logistic_regression"].append(_logistic(k, seed))
    return {name: _mean(runs) if runs else None for name, runs in rows.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="k=10 only, under a minute")
    args = parser.parse_args()
    quiet()
    if not have_material():
        emit({"bench": "accuracy", "skipped": "../shared (flowers5 + MobileNetV2 weights) is absent"})
        return
    ks: list[int | None] = [10] if args.quick else [10, 20, None]
    rows = {}
    for k in ks:
        name = f"k={k or 'all'}"
        seeds = [SEED] if args.quick or k is None else SEEDS
        rows[name] = _compare(k, seeds, fine_tune=not args.quick)
        print(name, rows[name], file=sys.stderr, flush=True)
    emit({"bench": "accuracy", "quick": args.quick, "backbone": "mobilenet_v2", "image_size": 160,
          "split": f"70/30 stratified; seeds {SEEDS} for k=10/20 (mean), {SEED} for all",
          "results": rows,
          "targets": {"default_recipe": ">= logistic_regression", "fine_tuned": "> logistic_regression"}})


if __name__ == "__main__":
    main()
