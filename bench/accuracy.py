"""Head accuracy on real photos: default (CV-chosen head) vs reference recipe vs logistic regression.

flowers5 with MobileNetV2 at 160 and the offline weights in ../shared/models. Per seed, a
fixed large test set (30% of every label, seeded) and k training images per label from the
rest (k = 5, 10, 20, all); mean and spread over the seeds. Every method sees the same
images' cached feature maps (one backbone pass per image for the whole benchmark):

* default: ``select_head`` (k-fold CV over head, C and steps on the k images, then refit);
* reference: the reference recipe's head (Dropout, GAP, Dense 1024, BN, softmax) trained by
  the same epoch loop as ``headstart train --recipe reference``, 15% of the k images held out
  for early stopping, as the train job does;
* logistic regression: scikit-learn on standardised pooled features, C by 5-fold CV (benchmark only);
* auto (``--auto``): a whole ``headstart train --auto`` run on the k images per label with the
  one offline backbone as its candidate (ImageNet weights cannot be downloaded here, so the
  backbone/size search has one entry); its head is applied to the cached test maps.

Tuned on flowers5 (all five labels); the 2- and 3-label subsets check that it holds elsewhere.
Prints a table on stderr and one JSON line last.

    .venv/bin/python bench/accuracy.py [--quick] [--seeds 3] [--tasks flowers5,rose+tulip] [--ks 5,10,20]
    .venv/bin/python bench/accuracy.py --auto --ks 5,10,20 --no-reference
"""
from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time

import numpy as np

from _common import FLOWERS, MOBILENET, emit, have_material, quiet
from _features import cached_maps

log = logging.getLogger("bench")
C_GRID = [0.0003, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0]
SUBSETS = {"flowers5": None, "daisy+dandelion": ["daisy", "dandelion"], "rose+tulip": ["rose", "tulip"],
           "daisy+sunflower+tulip": ["daisy", "sunflower", "tulip"]}


def split_rows(labels: np.ndarray, k: int | None, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train rows, test rows): 30% of every label is the test set; k per label from the rest."""
    rng = np.random.default_rng([seed, 30])
    train, test = [], []
    for label in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == label))
        n_test = int(round(0.3 * len(idx)))
        test += list(idx[:n_test])
        rest = idx[n_test:]
        train += list(rest[:k] if k else rest)
    return np.sort(train), np.sort(test)


def run_default(x: np.ndarray, y: np.ndarray, xt: np.ndarray, n_classes: int, seed: int) -> tuple[float, str]:
    from headstart.shared.model.selection import keras_head, select_head

    sel = select_head(x, y, n_classes, seed=seed)
    layers = keras_head(sel, n_classes)
    out = xt[:, None, None, :]
    for layer in layers:
        out = layer(out)
    return np.asarray(out).argmax(1), sel.chosen.label()


def run_logistic(x: np.ndarray, y: np.ndarray, xt: np.ndarray, k: int | None) -> tuple[np.ndarray, str]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    pipe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000))
    grid = GridSearchCV(pipe, {"logisticregression__C": C_GRID}, cv=min(5, k or 5)).fit(x, y)
    return grid.predict(xt), f"C={grid.best_params_['logisticregression__C']:g}"


def run_reference(maps: np.ndarray, y: np.ndarray, maps_test: np.ndarray, n_classes: int,
                  seed: int) -> tuple[np.ndarray, str]:
    """The reference head and epoch loop of ``--recipe reference`` on cached maps."""
    import keras

    from headstart.shared.model.checkpoints import CheckpointStore
    from headstart.shared.model.classifier import head_layers
    from headstart.shared.model.features import ArrayBatches
    from headstart.shared.model.predict import predict_arrays
    from headstart.shared.model.recipe import default_batch_size
    from headstart.shared.model.training import PhaseConfig, run_phase
    from headstart.shared.storage.store import open_store

    rng = np.random.default_rng([seed, 15])
    valid = np.zeros(len(y), bool)
    for label in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == label))
        valid[idx[:max(1, int(round(0.15 * len(idx))))]] = True
    keras.utils.set_random_seed(seed)
    inp = keras.Input(maps.shape[1:])
    out = inp
    for layer in head_layers(n_classes):
        out = layer(out)
    model = keras.Model(inp, out)
    bs = default_batch_size(int((~valid).sum()))
    tr = ArrayBatches(maps[~valid][:, None], y[~valid], bs, seed, has_views=True)
    va = ArrayBatches(maps[valid], y[valid], bs, seed, shuffle=False)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = PhaseConfig(name="head", epochs=20, learning_rate=1e-3, patience=5, label_smoothing=0.0,
                          class_weights=None)
        phase = run_phase(model, tr, va, cfg, CheckpointStore(open_store(tmp), "bench"), None)
    return predict_arrays(model, maps_test, 256, "bench reference").argmax(1), f"best epoch {phase.best_epoch}"


def run_auto(keys: list[str], y: np.ndarray, names: list[str], maps_test: np.ndarray,
             seed: int) -> tuple[np.ndarray, str]:
    """A real ``headstart train --auto`` run on the k images per label (a folder of links; the
    offline MobileNetV2 at 160 is the one candidate with weights here), its head then applied to
    the cached maps of the test images (the same backbone pass the saved model makes)."""
    import json
    import os
    from pathlib import Path

    from headstart.shared.model.trained import load_trained
    from headstart.shared.runtime.cli import main as headstart

    with tempfile.TemporaryDirectory() as tmp:
        for key, label in zip(keys, y):
            link = Path(tmp, "ds", names[label], Path(key).name)
            link.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(FLOWERS / key, link)
        out = Path(tmp, "run")
        rc = headstart(["train", str(Path(tmp, "ds")), "--out", str(out), "--auto", "--budget", "10",
                        "--candidates", f"mobilenet_v2@160={MOBILENET}", "--test-fraction", "0",
                        "--min-per-label", "1", "--seed", str(seed)])
        if rc != 0:
            raise RuntimeError(f"train --auto exited {rc}")
        model = load_trained(str(out)).model
        layers = [layer.name for layer in model.layers]
        x = maps_test
        for layer in model.layers[layers.index("backbone") + 1:]:
            x = layer(x)
        chosen = json.loads((out / "auto.json").read_text()).get("chosen", {})
    note = f"{chosen.get('backbone', '?')}@{chosen.get('image_size', '?')}" if isinstance(chosen, dict) else "auto"
    return np.asarray(x).argmax(1), note


def _summary(accs: list[float]) -> dict:
    return {"mean": round(statistics.mean(accs), 4), "std": round(statistics.pstdev(accs), 4),
            "per_seed": [round(a, 4) for a in accs]}


def bench_task(data: dict, labels: list[str] | None, ks: list[int | None], seeds: list[int],
               methods: list[str]) -> dict:
    """{k: {method: summary}} on one label subset."""
    from headstart.shared.model.selection import pooled

    keep = np.ones(len(data["labels"]), bool)
    if labels is not None:
        wanted = [data["names"].index(name) for name in labels]
        keep = np.isin(data["labels"], wanted)
    maps = data["maps"][keep]
    y = np.unique(data["labels"][keep], return_inverse=True)[1]
    x = pooled(maps)
    n_classes = int(y.max()) + 1
    rows = {}
    for k in ks:
        accs: dict[str, list[float]] = {m: [] for m in methods}
        notes: dict[str, list[str]] = {m: [] for m in methods}
        secs: dict[str, float] = dict.fromkeys(methods, 0.0)
        for seed in seeds:
            tr, te = split_rows(y, k, seed)
            for m in methods:
                t0 = time.monotonic()
                if m == "default":
                    pred, note = run_default(x[tr], y[tr], x[te], n_classes, seed)
                elif m == "logistic_regression":
                    pred, note = run_logistic(x[tr], y[tr], x[te], k)
                elif m == "auto":
                    names = [data["names"][i] for i in np.unique(data["labels"][keep])]
                    pred, note = run_auto([data["keys"][i] for i in np.flatnonzero(keep)[tr]], y[tr], names,
                                          maps[te], seed)
                else:
                    pred, note = run_reference(maps[tr], y[tr], maps[te], n_classes, seed)
                secs[m] += time.monotonic() - t0
                accs[m].append(float((pred == y[te]).mean()))
                notes[m].append(note)
        rows[f"k={k or 'all'}"] = {m: {**_summary(accs[m]), "chosen": notes[m], "seconds": round(secs[m], 1)}
                                   for m in methods}
        rows[f"k={k or 'all'}"]["n_test"] = int(len(te))
        print(f"  k={k or 'all'}: " + "  ".join(
            f"{m} {statistics.mean(accs[m]):.4f}±{statistics.pstdev(accs[m]):.4f}" for m in methods),
            file=sys.stderr, flush=True)
    return rows


def _table(results: dict, methods: list[str]) -> str:
    lines = ["| task | k | n_test/seed | " + " | ".join(methods) + " | default - LR |",
             "|---|---|---|" + "---|" * (len(methods) + 1)]
    for task, rows in results.items():
        for k, row in rows.items():
            cells = [f"{row[m]['mean']:.3f} ± {row[m]['std']:.3f}" for m in methods]
            gap = (row["default"]["mean"] - row["logistic_regression"]["mean"]) * 100
            lines.append(f"| {task} | {k} | {row['n_test']} | " + " | ".join(cells) + f" | {gap:+.1f} pt |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="k=10, one seed, 60 images per label: under a minute")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per k (default 3)")
    parser.add_argument("--no-reference", action="store_true", help="skip the (slow) reference recipe")
    parser.add_argument("--auto", action="store_true", help="also `headstart train --auto` per k and seed "
                        "(a whole train run each; k = 5, 10, 20 only: at k = all, auto fine-tunes the backbone)")
    parser.add_argument("--tasks", default=None, help="comma-separated tasks to run (default: all): "
                        + ", ".join(SUBSETS))
    parser.add_argument("--ks", default=None, help="comma-separated k values, 0 = all (default 5,10,20,0)")
    args = parser.parse_args()
    quiet()
    if not have_material():
        emit({"bench": "accuracy", "skipped": "../shared (flowers5 + MobileNetV2 weights) is absent"})
        return
    t0 = time.monotonic()
    data = cached_maps(str(FLOWERS), str(MOBILENET), limit_per_label=60 if args.quick else None)
    features_s = time.monotonic() - t0
    methods = ["default", "logistic_regression"] + ([] if args.no_reference else ["reference"])
    methods += ["auto"] if args.auto else []
    ks: list[int | None] = [10] if args.quick else [5, 10, 20, None]
    if args.ks:
        ks = [int(k) or None for k in args.ks.split(",")]
    seeds = [11] if args.quick else list(range(11, 11 + args.seeds))
    tasks = {"flowers5": None} if args.quick else SUBSETS
    if args.tasks:
        unknown = [name for name in args.tasks.split(",") if name not in SUBSETS]
        if unknown:
            parser.error(f"--tasks: unknown {unknown}; expected some of {list(SUBSETS)}")
        tasks = {name: SUBSETS[name] for name in args.tasks.split(",")}
    if args.auto and None in ks:
        parser.error("--auto runs k = 5, 10, 20 only (at k = all it fine-tunes the backbone: hours on CPU); "
                     "pass --ks 5,10,20")
    results = {}
    for task, labels in tasks.items():
        print(task, file=sys.stderr, flush=True)
        results[task] = bench_task(data, labels, ks, seeds, methods)
    print(_table(results, methods), file=sys.stderr, flush=True)
    misses = [f"{task} {k}" for task, rows in results.items() for k, row in rows.items()
              if row["default"]["mean"] < row["logistic_regression"]["mean"] - 0.005
              or ("reference" in row and row["default"]["mean"] < row["reference"]["mean"])
              or ("auto" in row and row["auto"]["mean"] < row["default"]["mean"] - 0.005)]
    emit({"bench": "accuracy", "quick": args.quick, "backbone": "mobilenet_v2", "image_size": 160,
          "split": "per seed: 30% of every label as test, k per label from the rest", "seeds": seeds,
          "features_s": round(features_s, 1), "results": results,
          "targets": {"default": ">= logistic_regression - 0.005 and >= reference at every k",
                      "auto": ">= default - 0.005 (when run)"},
          "targets_missed": misses, "seconds": round(time.monotonic() - t0, 1)})


if __name__ == "__main__":
    main()
