"""Audit quality on real photos: planted label flips and foreign images, and what removing them buys.

flowers5 with MobileNetV2 at 160 (offline weights). Per seed: a clean 30% test set per label;
in the rest, 10% of the labels flipped to another label (seeded) and 3% foreign images added
under random labels (half heavy noise, half generated blocky shapes). The audit's own
finding code (headstart.shared.audit.findings: k-fold probe probabilities averaged with the
nearest neighbours' labels, the default threshold rule; the label-similarity outlier score)
runs on the cached features of that noisy training set;
then the default head (CV-chosen) is trained on noisy, audited (flagged images removed) and
clean data and scored on the clean test set.

Flip precision counts label-issue flags on real photos only (a foreign image flagged as a
label issue is neither a hit nor a false alarm for flips). flowers5 has label problems of its
own (photos of other flowers, people, pottery): ``native_flags`` is what the same audit flags on
the un-flipped labels, and ``false_flags_also_flagged_unflipped`` the share of the false
alarms (flags on unflipped photos) that the audit flags without any flips too: images the
features put with another label whatever the noise, to be looked at by eye. ``flip_precision_at_planted_count``
is the ranking's ceiling: precision when exactly as many images as were flipped are flagged.
Prints one JSON line.

    .venv/bin/python bench/audit.py [--quick] [--seeds 3] [--labels daisy+sunflower+tulip]
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


def _flip_counts(flagged: np.ndarray, is_flip: np.ndarray, real: np.ndarray) -> dict:
    lab = flagged & real
    return {"precision": float((lab & is_flip).sum() / max(lab.sum(), 1)),
            "recall": float((flagged & is_flip).sum() / max(is_flip.sum(), 1)), "flagged": int(lab.sum())}


def one_seed(x: np.ndarray, y: np.ndarray, n_classes: int, seed: int, folds: int) -> dict:
    from headstart.shared.audit.findings import GIVEN_FACTOR, label_issues, outlier_scores, similarity_scan
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
    emb = normalize(xa)
    scanned = similarity_scan(emb, ["train"] * len(ya), 0.97, 0.95)  # the job's defaults
    issues = label_issues(xa, ya, n_classes, seed=seed, folds=folds, neighbours=scanned.neighbours)
    _, outlier = outlier_scores(emb, ya, 4.0)
    audit_s = time.monotonic() - t0
    dropped = issues.flagged | outlier
    counts = _flip_counts(issues.flagged, is_flip, ~is_foreign)
    res = {
        "flip_precision": counts["precision"], "flip_recall": counts["recall"],
        "foreign_recall_outlier": float((outlier & is_foreign).sum() / is_foreign.sum()),
        "foreign_recall_any": float((dropped & is_foreign).sum() / is_foreign.sum()),
        "flagged": int(dropped.sum()), "planted": int(is_flip.sum() + is_foreign.sum()),
        "threshold": round(issues.threshold, 4), "audit_s": round(audit_s, 1),
    }
    # The ranking's ceiling: precision (= recall) of the as-many-as-planted lowest given-label
    # probabilities; and other thresholds of the same probabilities, for the record.
    given = issues.probs[np.arange(len(ya)), ya]
    real = np.flatnonzero(~is_foreign)
    top = np.zeros(len(ya), bool)
    top[real[np.argsort(given[real], kind="stable")[: int(is_flip.sum())]]] = True
    res["flip_precision_at_planted_count"] = _flip_counts(top, is_flip, ~is_foreign)["precision"]
    wins = issues.probs.argmax(1) != ya
    for factor in (0.4, 0.5, GIVEN_FACTOR, 0.7, 0.8):
        c = _flip_counts((given < factor / n_classes) & wins, is_flip, ~is_foreign)
        res[f"threshold_{factor:g}/K"] = {k: round(v, 4) for k, v in c.items()}
    # Flowers5's own label problems: what the same audit flags on the un-flipped labels (no
    # foreign images). A flag there is not planted, but may be a real error: counted apart.
    native = label_issues(x[tr], y_clean, n_classes, seed=seed, folds=folds,
                          neighbours=similarity_scan(normalize(x[tr]), ["train"] * len(tr), 0.97, 0.95).neighbours)
    suspects = np.zeros(len(ya), bool)
    suspects[: len(tr)] = native.flagged
    res["native_flags"] = int(native.flagged.sum())
    false = issues.flagged & ~is_foreign & ~is_flip
    res["false_flags_also_flagged_unflipped"] = float((false & suspects).sum() / max(false.sum(), 1))
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
    parser.add_argument("--labels", default=None, help="a label subset, e.g. daisy+sunflower+tulip "
                        "(checks that the default holds beyond the five labels it was chosen on)")
    args = parser.parse_args()
    quiet()
    if not have_material():
        emit({"bench": "audit", "skipped": "../shared (flowers5 + MobileNetV2 weights) is absent"})
        return
    t0 = time.monotonic()
    data = cached_maps(str(FLOWERS), str(MOBILENET), limit_per_label=60 if args.quick else None)
    from headstart.shared.model.selection import pooled

    x, y = pooled(data["maps"]), np.asarray(data["labels"])
    names = list(data["names"])
    if args.labels:
        unknown = [n for n in args.labels.split("+") if n not in names]
        if unknown:
            parser.error(f"--labels: unknown label(s) {unknown}; expected names from {names}")
        keep = np.isin(y, [names.index(n) for n in args.labels.split("+")])
        x, y = x[keep], np.unique(y[keep], return_inverse=True)[1]
        names = args.labels.split("+")
    seeds = [11] if args.quick else list(range(11, 11 + args.seeds))
    runs = []
    for seed in seeds:
        runs.append(one_seed(x, y, len(names), seed, 5))
        print(seed, runs[-1], file=sys.stderr, flush=True)
    keys = [k for k in runs[0] if isinstance(runs[0][k], float)]
    mean = {k: round(statistics.mean(r[k] for r in runs if r[k] is not None), 4) for k in keys}
    spread = {k: round(statistics.pstdev([r[k] for r in runs if r[k] is not None]), 4) for k in keys}
    for k in [k for k in runs[0] if k.startswith("threshold_")]:
        for m in ("precision", "recall"):
            mean[f"{k} {m}"] = round(statistics.mean(r[k][m] for r in runs), 4)
    targets = {"flip_precision": 0.7, "flip_recall": 0.7, "foreign_recall_any": 0.8, "gap_recovered": 0.5}
    print("| metric | mean | std | target |\n|---|---|---|---|\n" + "\n".join(
        f"| {k} | {mean[k]:.3f} | {spread[k]:.3f} | {targets.get(k, '')} |" for k in keys), file=sys.stderr)
    emit({"bench": "audit", "quick": args.quick, "labels": names, "seeds": seeds, "flip": FLIP, "foreign": FOREIGN,
          "mean": mean, "std": spread, "runs": runs, "targets": targets,
          "targets_missed": [k for k, v in targets.items() if mean.get(k, 0) < v],
          "seconds": round(time.monotonic() - t0, 1)})


if __name__ == "__main__":
    main()
