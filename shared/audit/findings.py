"""What the audit finds, from pooled embeddings and per-image facts (numpy + cleanlab).

* label issues: out-of-sample probabilities of cross-validated linear probes (averaged over
  several partitions) and of the label vote of each image's nearest neighbours, ranked by
  cleanlab's label quality; flagged when the given label is improbable and another wins (or
  by cleanlab's confident learning); each with the suggested label and a score;
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


# Label issues: the probes' out-of-sample probabilities are averaged over this many k-fold
# partitions (a different split each), then with the label vote of each image's nearest
# neighbours. On flowers5 (MobileNetV2, 10% planted flips, 3 seeds) each step raised the
# precision at a fixed flag count: one partition 0.62, three 0.62, with neighbours 0.64.
PROBE_REPEATS = 3
NEIGHBOURS = 15
# Default flag rule: the given label's probability below GIVEN_FACTOR / labels while another
# label wins (0.12 with five labels, 0.3 with two). bench/audit.py, 10% planted flips, 3 seeds:
# flowers5 precision 0.61 / recall 0.64 (the ranking's ceiling, flagging exactly as many as
# were planted, is 0.62), daisy+sunflower+tulip 0.66 / 0.71; lower factors trade recall for
# precision (0.4/K: 0.71 / 0.49 on flowers5). cleanlab's confident-learning set: 0.37 / 0.65.
GIVEN_FACTOR = 0.6
RULES = ("threshold", "confident_learning")


@dataclass(kw_only=True)
class LabelIssues:
    probs: np.ndarray       # (n, classes) out-of-sample probabilities (probes + neighbours)
    flagged: np.ndarray     # (n,) bool
    score: np.ndarray       # (n,) 1 - cleanlab label quality: higher = more likely wrong
    suggested: np.ndarray   # (n,) int: the most probable label
    probe: str              # which probes produced the probabilities, and the rule
    threshold: float = 0.0  # the given-label probability below which an image is flagged


def neighbour_votes(neighbours: np.ndarray, y: np.ndarray, n_classes: int) -> np.ndarray:
    """(n, classes): the labels of each image's nearest neighbours (itself excluded), as
    probabilities with add-half smoothing, so an image no neighbour shares a label with still
    gets a small probability for it."""
    votes = np.zeros((len(y), n_classes))
    for j in range(neighbours.shape[1]):
        np.add.at(votes, (np.arange(len(y)), y[neighbours[:, j]]), 1.0)
    return (votes + 0.5) / (neighbours.shape[1] + 0.5 * n_classes)


def label_issues(x: np.ndarray, y: np.ndarray, n_classes: int, *, seed: int, folds: int,
                 neighbours: np.ndarray | None = None, min_given_prob: float | None = None,
                 rule: str = "threshold", repeats: int = PROBE_REPEATS) -> LabelIssues:
    """Likely label errors from out-of-sample probabilities: k-fold linear probes (C of lowest
    CV log-loss, averaged over ``repeats`` partitions) averaged with the label vote of the
    ``neighbours`` (n, k indices from the similarity scan), ranked by cleanlab's label quality.

    ``rule``: ``threshold`` flags an image when its given label gets less than
    ``min_given_prob`` (default ``GIVEN_FACTOR`` / labels present) and another label wins;
    ``confident_learning`` flags cleanlab's confident-learning set, plus that threshold rule.
    """
    from headstart.shared.model.selection import cross_val_probs, select_head

    if rule not in RULES:
        raise UserError(f"label rule must be one of {list(RULES)}, got {rule!r}")
    cl = require_cleanlab()
    present = np.bincount(y, minlength=n_classes) > 0
    n_present = int(present.sum())
    threshold = GIVEN_FACTOR / max(n_present, 1) if min_given_prob is None else float(min_given_prob)
    if n_present < 2:
        probs = np.eye(n_classes)[y]
        return LabelIssues(probs=probs, flagged=np.zeros(len(y), bool), score=np.zeros(len(y)),
                           suggested=y.copy(), probe="none: a single label", threshold=threshold)
    sel = select_head(x, y, n_classes, seed=seed, folds=folds)
    # Confident learning needs calibrated probabilities: the linear probe of lowest CV log-loss.
    linear = [r for r in sel.table if r["kind"] == "linear"]
    best = min(linear, key=lambda r: (r["cv_log_loss"], r["steps"], r["c"])) if linear else {"c": 0.1, "steps": 200}
    c, steps = best["c"], best["steps"]
    probs = np.mean([cross_val_probs(x, y, n_classes, seed=seed + 1000 * r, folds=folds, c=c, steps=steps)
                     for r in range(max(1, repeats))], axis=0)
    probe = f"linear C={c:g} steps={steps}, {folds}-fold out-of-sample x{max(1, repeats)}"
    if neighbours is not None and neighbours.shape[1] > 0:
        probs = 0.5 * (probs + neighbour_votes(neighbours, y, n_classes))
        probe += f" + {neighbours.shape[1]} nearest neighbours' labels"
    given = probs[np.arange(len(y)), y]
    flagged = (given < threshold) & (probs.argmax(1) != y)
    if rule == "confident_learning":
        flagged |= np.asarray(cl.filter.find_label_issues(y, probs, filter_by="confident_learning"), bool)
    quality = np.asarray(cl.rank.get_label_quality_scores(y, probs))
    return LabelIssues(probs=probs, flagged=flagged, score=1.0 - quality, suggested=probs.argmax(1),
                       probe=f"{probe}; rule {rule}, given label < {threshold:.3g}", threshold=threshold)


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


def similarity_scan(emb: np.ndarray, splits: list[str], dup: float, leak: float, k: int = NEIGHBOURS):
    """One blocked all-pairs scan (the similarity job's): ``k`` nearest neighbours per image
    (for the label vote) and the near-duplicate and cross-split pairs."""
    from headstart.shared.explain.similarity import scan

    groups = np.asarray(splits) if len(set(splits)) > 1 else None
    return scan(emb, k, dup, groups, leak, max_pairs=100_000)


def duplicates(emb: np.ndarray, y: np.ndarray, splits: list[str], dup: float, leak: float,
               result=None) -> DuplicateFindings:
    """Near-duplicate pairs by the similarity job's scan (``result``, else a new one), sorted into kinds."""
    result = similarity_scan(emb, splits, dup, leak, k=1) if result is None else result
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
