"""Auto mode against the default recipe on real photos: test accuracy and wall time.

flowers5 with k images per label (20 and all), a seeded 70/30 stratified test split (as in
bench/accuracy.py). Default recipe: MobileNetV2 at 160 with the offline weights in
../shared/models. Auto: ``--auto`` choosing among MobileNetV2 at 128/160/224 (the same
weights file) and ResNet50 with ImageNet weights (skipped offline), within ``--budget``.
Prints one JSON line.

    .venv/bin/python bench/auto.py [--quick]
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time

from _common import FLOWERS, MOBILENET, emit, have_material, quiet

log = logging.getLogger("bench")
SEED = 11


def _candidates(quick: bool) -> list[str]:
    sizes = (128, 160) if quick else (128, 160, 224)
    extra = [] if quick else ["resnet50@224=imagenet"]
    return [f"mobilenet_v2@{s}={MOBILENET}" for s in sizes] + extra


def _train(k: int | None, auto: bool, quick: bool, budget_min: float) -> dict:
    from headstart.jobs.train.spec import TrainSpec
    from headstart.jobs.train.workflow import train
    from headstart.shared.storage.store import open_store

    out = tempfile.mkdtemp(prefix="bench-auto-")
    common = dict(dataset=str(FLOWERS), out=out, max_per_label=k, valid_fraction=0.15,
                  test_fraction=0.3, seed=SEED)
    if auto:
        spec = TrainSpec(**common, auto=True, candidates=_candidates(quick), budget=budget_min)
    else:
        spec = TrainSpec(**common, backbone="mobilenet_v2", image_size=160, weights=str(MOBILENET))
    t0 = time.monotonic()
    train(spec)
    seconds = time.monotonic() - t0
    store = open_store(out)
    metrics = json.loads(store.read_text("metrics.json"))
    row = {"test_accuracy": round(metrics["splits"]["test"]["accuracy"], 4),
           "seconds": round(seconds, 1), "n_test": metrics["splits"]["test"]["n"]}
    if auto:
        doc = json.loads(store.read_text("auto.json"))
        row.update(budget_s=budget_min * 60, within_budget=seconds <= budget_min * 60,
                   search_s=doc["search_s"],
                   chosen={k: v for k, v in doc["chosen"].items() if k != "weights"},
                   candidates=[[c["name"], c["status"], c["accuracy"] and round(c["accuracy"], 3),
                                round(c["seconds"], 1)] for c in doc["candidates"]])
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="k=20, two candidates, under a minute")
    parser.add_argument("--budget", type=float, default=None, help="auto budget in minutes "
                        "(default: 1 quick, 5 for k=20, 15 for all)")
    args = parser.parse_args()
    quiet()
    if not have_material():
        emit({"bench": "auto", "skipped": "../shared (flowers5 + MobileNetV2 weights) is absent"})
        return
    ks: list[int | None] = [20] if args.quick else [20, None]
    rows = {}
    for k in ks:
        budget = args.budget or (1.0 if args.quick else 5.0 if k else 15.0)
        name = f"k={k or 'all'}"
        rows[name] = {"default_recipe": _train(k, False, args.quick, budget),
                      "auto": _train(k, True, args.quick, budget)}
        rows[name]["auto_at_least_as_accurate"] = (rows[name]["auto"]["test_accuracy"]
                                                   >= rows[name]["default_recipe"]["test_accuracy"])
        print(name, rows[name], file=sys.stderr, flush=True)
    emit({"bench": "auto", "quick": args.quick, "default": "mobilenet_v2@160, offline weights",
          "split": "70/30 stratified, seed 11", "results": rows,
          "targets": {"auto": ">= default_recipe test accuracy, within its budget"}})


if __name__ == "__main__":
    main()
