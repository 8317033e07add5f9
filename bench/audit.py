"""Audit quality on real photos: planted label flips and foreign images, and what removing them buys.

flowers5 with MobileNetV2 at 160 (offline weights). Per seed: a clean 30% test set per label;
in the rest, 10% of the labels flipped to another label (seeded) and 3% foreign images added
under random labels (half heavy noise, half generated blocky shapes). The audit's own
finding code (headstart.shared.audit.findings: cleanlab on k-fold probe probabilities, the
label-similarity outlier score) runs on the cached features of that noisy training set;
then the default head (CV-chosen) is trained on noisy, audited (flagged images removed) and
clean data and scored on the clean test set.

Flip precision counts label-issue flags on real photos only (a foreign image flagged as a
label issue is neither a hit nor a false alarm for flips). Prints one JSON line.

    .venv/bin/python bench/audit.py [--quick] [--seeds 3]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np

from _common import FLOWERS, MOBILENET, emit, have_material, quiet
from _features import cached_maps

FLIP = 0.10
FOREIGN = 0.03


def foreign_images(n: int, size: int, seed: int) -> np.ndarray:
    """Half heavy noise, half random blocky shapes on flat backgrounds (uint8, n x size x size x 3)."""
    rng = np.random.default_rng([seed, 99])
    out = np.empty((n, size, size, 3), np.uint8)
    for i in range(n):
        if i % 2 == 0:
            out[i] = rng.integers(0, 256, (size, size, 3))
        else:
            img = np.full((size, size, 3), rng.integers(0, 256, 3), np.uint8)
            for _ in range(rng.integers(2, 6)):
                x0, y0 = rng.integers(0, size - 8, 2)
                w, h = rng.integers(8, size // 2, 2)
                img[y0:y0 + h, x0:x0 + w] = rng.integers(0, 256, 3)
            out[i] = img
    return out


def foreign_features(n: int, seed: int) -> np.ndarray:
    from headstart.shared.model.backbones import build_backbone, get_info
    from headstart.shared.model.classifier import assemble
    from headstart.shared.model.features import extract_features
    from headstart.shared.model.selection import pooled

    clf = assemble(build_backbone("mobilenet_v2", 160, str(MOBILENET)), get_info("mobilenet_v2"), 160, 5)
    return pooled(extract_features(clf.extractor, foreign_images(n, 160, seed), 64, "foreign")[:, 0])


def _accuracy(x, y, xt, yt, n_classes, seed) -> float:
    from headstart.shared.model.selection import select_head

    sel = select_head(x, y, n_classes, seed=seed)
    xs = (xt - sel.mean) / sel.scale
    return float(((xs @ sel.weights[0] + sel.weights[1]).argmax(1) == yt).mean())


def one_seed(x: np.ndarray, y: np.ndarray, n_classes: int, seed: int, folds: int) -> dict:
    from headstart.shared.audit.findings import label_issues, outlier_scores
    from headstart.shared.explain.similarity import normalize
    from accuracy import split_rows

    rng = np.random.default_rng([seed, 5])
    tr, te = split_rows(y, None, seed)
    y_clean = y[tr]
    y_noisy = y_clean.copy()
    flipped = rng.permutation(len(tr))[: int(round(FLIP * len(tr)))]
    y_noisy[flipped] = (y_clean[flipped] + rng.integers(1, n_classes, len(flipped))) % n_classes
    n_foreign = int(round(FOREIGN * len(tr)))
    xf = foreign_features(n_foreign, seed)
    xa = np.concatenate([x[tr], xf])
    ya = np.concatenate([y_noisy, rng.integers(0, n_classes, n_foreign)])
    is_flip = np.zeros(len(ya), bool)
    is_flip[flipped] = True
    is_foreign = np.arange(len(ya)) >= len(tr)
    t0 = time.monotonic()
    issues = label_issues(xa, ya, n_classes, seed=seed, folds=folds)
    _, outlier = outlier_scores(normalize(xa), ya, 4.0)
    audit_s = time.monotonic() - t0
    lab = issues.flagged & ~is_foreign
    dropped = issues.flagged | outlier
    res = {
        "flip_precision": float((lab & is_flip).sum() / max(lab.sum(), 1)),
        "flip_recall": float((issues.flagged & is_flip).sum() / is_flip.sum()),
        "foreign_recall_outlier": float((outlier & is_foreign).sum() / is_foreign.sum()),
        "foreign_recall_any": float((dropped & is_foreign).sum() / is_foreign.sum()),
        "flagged": int(dropped.sum()), "planted": int(is_flip.sum() + is_foreign.sum()),
        "audit_s": round(audit_s, 1),
    }
    # The job's --min-given-prob rule on top of cleanlab (probes sure the given label is wrong).
    for thr in (0.05, 0.1):
        extra = issues.flagged | ((issues.probs[np.arange(len(ya)), ya] < thr) & (issues.suggested != ya))
        el = extra & ~is_foreign
        res[f"flip_precision_p{thr}"] = float((el & is_flip).sum() / max(el.sum(), 1))
        res[f"flip_recall_p{thr}"] = float((extra & is_flip).sum() / is_flip.sum())
    xt, yt = x[te], y[te]
    res["acc_clean"] = _accuracy(x[tr], y_clean, xt, yt, n_classes, seed)
    res["acc_noisy"] = _accuracy(xa, ya, xt, yt, n_classes, seed)
    res["acc_audited"] = _accuracy(xa[~dropped], ya[~dropped], xt, yt, n_classes, seed)
    gap = res["acc_clean"] - res["acc_noisy"]
    res["gap_recovered"] = float((res["acc_audited"] - res["acc_noisy"]) / gap) if gap > 0 else None
    return res


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="60 images per label, one seed: under a minute")
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    quiet()
    if not have_material():
        emit({"bench": "audit", "skipped": "../shared (flowers5 + MobileNetV2 weights) is absent"})
        return
    t0 = time.monotonic()
    data = cached_maps(str(FLOWERS), str(MOBILENET), limit_per_label=60 if args.quick else None)
    from headstart.shared.model.selection import pooled

    x, y = pooled(data["maps"]), np.asarray(data["labels"])
    seeds = [11] if args.quick else list(range(11, 11 + args.seeds))
    runs = []
    for seed in seeds:
        runs.append(one_seed(x, y, len(data["names"]), seed, 5))
        print(seed, runs[-1], file=sys.stderr, flush=True)
    keys = [k for k in runs[0] if isinstance(runs[0][k], float)]
    mean = {k: round(statistics.mean(r[k] for r in runs if r[k] is not None), 4) for k in keys}
    spread = {k: round(statistics.pstdev([r[k] for r in runs if r[k] is not None]), 4) for k in keys}
    targets = {"flip_precision": 0.7, "flip_recall": 0.7, "foreign_recall_any": 0.8, "gap_recovered": 0.5}
    print("| metric | mean | std | target |\n|---|---|---|---|\n" + "\n".join(
        f"| {k} | {mean[k]:.3f} | {spread[k]:.3f} | {targets.get(k, '')} |" for k in keys), file=sys.stderr)
    emit({"bench": "audit", "quick": args.quick, "seeds": seeds, "flip": FLIP, "foreign": FOREIGN,
          "mean": mean, "std": spread, "runs": runs, "targets": targets,
          "targets_missed": [k for k, v in targets.items() if mean.get(k, 0) < v],
          "seconds": round(time.monotonic() - t0, 1)})


if __name__ == "__main__":
    main()
