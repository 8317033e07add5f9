"""What the audit finds, from pooled embeddings and per-image facts (numpy + cleanlab).

* label issues: confident learning (cleanlab) on out-of-sample probabilities of
  cross-validated linear probes; each with the probe's suggested label and a score;
* outliers: similarity to the rest of the image's label (mean cosine similarity to the other
  members = similarity to the label's mean embedding), flagged when it lies far below the
  label's median in robust deviations (MAD) — off-topic pictures sit far from their label
  even when several of them resemble each other;
* near-duplicates within a label, across labels (conflicts) and across splits (leakage),
  from the blocked all-pairs similarity scan of the similarity job.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from headstart.shared.runtime.errors import UserError

log = logging.getLogger(__name__)


def require_cleanlab():
    """The cleanlab module, or a clear error naming the extra that installs it."""
    try:
        import cleanlab.filter
        import cleanlab.rank
    except ImportError:
        raise UserError("headstart audit needs the optional extra [audit] (cleanlab), which is not "
                        "installed: pip install 'headstart[audit]'") from None
    return cleanlab


@dataclass(kw_only=True)
class LabelIssues:
    probs: np.ndarray       # (n, classes) out-of-sample probabilities
    flagged: np.ndarray     # (n,) bool
    score: np.ndarray       # (n,) 1 - cleanlab label quality: higher = more likely wrong
    suggested: np.ndarray   # (n,) int: the probes' label
    probe: str              # which probe produced the probabilities


def label_issues(x: np.ndarray, y: np.ndarray, n_classes: int, *, seed: int, folds: int,
                 min_given_prob: float = 0.0) -> LabelIssues:
    """Confident learning on out-of-sample probabilities of k-fold linear probes.

    ``min_given_prob``: also flag images whose given label gets less than this out-of-sample
    probability while another label wins (confident learning alone is conservative: on flowers5
    with 10% flips, 0.1 raised recall 0.67 -> 0.77 at the same precision).
    """
    from headstart.shared.model.selection import cross_val_probs, select_head

    cl = require_cleanlab()
    sel = select_head(x, y, n_classes, seed=seed, folds=folds)
    # Confident learning needs calibrated probabilities: the linear probe of lowest CV log-loss.
    linear = [r for r in sel.table if r["kind"] == "linear"]
    best = min(linear, key=lambda r: (r["cv_log_loss"], r["steps"], r["c"])) if linear else {"c": 0.1, "steps": 200}
    c, steps = best["c"], best["steps"]
    probs = cross_val_probs(x, y, n_classes, seed=seed, folds=folds, c=c, steps=steps)
    present = np.bincount(y, minlength=n_classes) > 0
    if present.sum() < 2:
        return LabelIssues(probs=probs, flagged=np.zeros(len(y), bool), score=np.zeros(len(y)),
                           suggested=y.copy(), probe="none: a single label")
    flagged = np.asarray(cl.filter.find_label_issues(y, probs, filter_by="confident_learning"), bool)
    flagged |= (probs[np.arange(len(y)), y] < min_given_prob) & (probs.argmax(1) != y)
    quality = np.asarray(cl.rank.get_label_quality_scores(y, probs))
    return LabelIssues(probs=probs, flagged=flagged, score=1.0 - quality, suggested=probs.argmax(1),
                       probe=f"linear C={c:g} steps={steps}, {folds}-fold out-of-sample")


def outlier_scores(emb: np.ndarray, y: np.ndarray, mads: float) -> tuple[np.ndarray, np.ndarray]:
    """(score, flagged): score = 1 - mean similarity to the label's other images (higher = odder)."""
    score = np.zeros(len(y), np.float32)
    flagged = np.zeros(len(y), bool)
    for label in np.unique(y):
        rows = np.flatnonzero(y == label)
        if len(rows) < 3:
            continue  # nothing to be typical of
        total = emb[rows].sum(axis=0)
        sims = (emb[rows] @ total - 1.0) / (len(rows) - 1)  # each row's own similarity (1) left out
        score[rows] = 1.0 - sims
        median = np.median(score[rows])
        mad = 1.4826 * np.median(np.abs(score[rows] - median))
        flagged[rows] = score[rows] > median + mads * max(mad, 1e-6)
    return score, flagged


@dataclass(kw_only=True)
class DuplicateFindings:
    within: list[tuple[int, int, float]]     # same label
    conflicts: list[tuple[int, int, float]]  # different labels
    leakage: list[tuple[int, int, float]]    # different splits (any labels)


def duplicates(emb: np.ndarray, y: np.ndarray, splits: list[str], dup: float, leak: float) -> DuplicateFindings:
    """Near-duplicate pairs by the similarity job's scan, sorted into kinds."""
    from headstart.shared.explain.similarity import scan

    groups = np.asarray(splits) if len(set(splits)) > 1 else None
    result = scan(emb, 1, dup, groups, leak, max_pairs=100_000)
    pairs = result.duplicates.items
    within = [p for p in pairs if y[p[0]] == y[p[1]] and splits[p[0]] == splits[p[1]]]
    conflicts = [p for p in pairs if y[p[0]] != y[p[1]]]
    leakage = list(result.leakage.items) if result.leakage is not None else []
    return DuplicateFindings(within=within, conflicts=conflicts, leakage=leakage)


def balance(counts: dict[str, int]) -> dict:
    """Class balance: counts, the largest/smallest ratio, labels under a quarter of the mean."""
    values = list(counts.values())
    mean = float(np.mean(values)) if values else 0.0
    small = sorted(k for k, v in counts.items() if v < mean / 4)
    ratio = (max(values) / max(min(values), 1)) if values else 0.0
    return {"counts": counts, "max_min_ratio": round(ratio, 2), "underrepresented": small}
