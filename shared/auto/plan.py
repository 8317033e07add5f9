"""Auto mode, part 2: from the dataset and the budget to a concrete training plan.

:func:`choose` decodes a seeded subsample once, scores the candidate backbones on it
(:mod:`headstart.shared.auto.scoring`), runs a learning-rate range test on the winner's cached maps
(:mod:`headstart.shared.model.lrfind`) and sets the head's shape, the epochs, class weights and whether (and
how deep) to fine-tune from the label counts and the time left. The result is a set of
concrete train parameters plus the evidence behind each of them.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from headstart.shared.auto.scoring import Candidate, Score, Scorer, ScoringData, best_of, score_candidate, search
from headstart.shared.data.datasets import DatasetIndex, SplitConfig, cap_per_label, discover
from headstart.shared.data.loading import load_split
from headstart.shared.model.lrfind import lr_plot, lr_range_test
from headstart.shared.runtime.config import FromSpec
from headstart.shared.storage.store import open_store

log = logging.getLogger(__name__)

SCORE_PER_LABEL = 100      # images per label (train + valid) the candidates are scored on
SEARCH_SHARE = 0.5         # of the budget, at most, for decoding the subsample and the search
MIN_PER_LABEL_WARN = 10    # fewer training images than this for a label: warn
IMBALANCE_RATIO = 1.5      # largest / smallest label above this: balanced class weights
FINE_TUNE_MIN_PER_LABEL = 100
HEAD_EPOCHS = 50           # a ceiling: early stopping on validation loss ends sooner


@dataclass(kw_only=True)
class AutoRequest(FromSpec):
    """What auto mode needs to know about the run: the train spec's fields of these names
    (``AutoRequest.from_spec(spec, split=..., candidates=..., budget_s=..., pinned=...)``)."""

    dataset: str
    split: SplitConfig
    candidates: list[Candidate]
    budget_s: float
    batch_size: int
    label_smoothing: float
    fine_tune_epochs: int
    min_side: int
    max_pixels: int
    pinned: dict[str, Any] = field(default_factory=dict)  # values the user set: kept as given
    scorer: Scorer = score_candidate


@dataclass
class AutoResult:
    overrides: dict[str, Any]   # concrete train parameters
    doc: dict[str, Any]         # auto.json: candidates, choice, reasons, warnings, timing
    lr_png: bytes | None = None


def _scoring_data(req: AutoRequest, index: DatasetIndex) -> ScoringData:
    """Train + valid images (no test) of a per-label subsample, at the largest candidate size."""
    items = index.splits["train"] + index.splits.get("valid", [])
    chosen = cap_per_label(items, SCORE_PER_LABEL, req.split.seed, salt="auto")
    size = max(c.size for c in req.candidates)
    split = load_split(open_store(req.dataset), "auto", chosen, index.labels, size, req.min_side,
                       req.max_pixels)
    return ScoringData(split.images, split.labels, len(index.labels), req.split.seed, req.batch_size)


def budget_use(budget_s: float, decode_s: float, scores: list[Score], lr_s: float,
               total_s: float) -> dict[str, Any]:
    """How the budget was spent: seconds per step of the search, and what is left to train."""
    def s(x: float) -> float:  # 3 decimals: a sub-second budget must not round up past itself
        return round(x, 3)

    return {"budget_s": s(budget_s), "search_share_s": s(SEARCH_SHARE * budget_s),
            "decode_subsample_s": s(decode_s),
            "candidates_s": {sc.name: s(sc.seconds) for sc in scores},
            "lr_range_test_s": s(lr_s), "search_total_s": s(total_s),
            "left_for_training_s": s(budget_s - total_s)}


def budget_warnings(budget_s: float, searched_s: float, decode_s: float) -> list[str]:
    """A warning when decoding the subsample and the search overran their share of the budget."""
    share = SEARCH_SHARE * budget_s
    if searched_s <= share:
        return []
    return [f"the search took {searched_s:.0f}s of its {share:.0f}s share of the {budget_s:.0f}s "
            f"budget (decoding the scoring subsample alone {decode_s:.0f}s): raise --budget or "
            "pass fewer --candidates"]


def train_counts(index: DatasetIndex) -> dict[str, int]:
    return index.counts()["train"]


def head_shape(per_label: float) -> tuple[int, float, str]:
    """Head width and dropout from the training images per label: smaller data, smaller head."""
    if per_label < 30:
        width, dropout = 256, 0.5
    elif per_label < 150:
        width, dropout = 512, 0.4
    else:
        width, dropout = 1024, 0.3
    return width, dropout, (f"head Dense({width}) with dropout {dropout}: {per_label:.0f} "
                            "training images per label (median)")


def class_weights(counts: dict[str, int]) -> tuple[dict[str, float] | None, str]:
    """Balanced weights ``n / (k * n_label)`` when the labels are imbalanced, else None."""
    sizes = np.asarray(list(counts.values()), dtype=float)
    ratio = sizes.max() / max(sizes.min(), 1)
    if ratio <= IMBALANCE_RATIO:
        return None, f"no class weights: largest/smallest label {ratio:.2f} <= {IMBALANCE_RATIO}"
    total, k = sizes.sum(), len(sizes)
    weights = {label: round(float(total / (k * max(n, 1))), 4) for label, n in counts.items()}
    return weights, f"balanced class weights: largest/smallest label {ratio:.2f} > {IMBALANCE_RATIO}"


def label_warnings(counts: dict[str, int]) -> list[str]:
    """One warning per label with fewer than :data:`MIN_PER_LABEL_WARN` training images."""
    return [f"label {label!r} has only {n} training images (fewer than {MIN_PER_LABEL_WARN}): "
            "expect it to be learnt poorly; add images" for label, n in sorted(counts.items())
            if n < MIN_PER_LABEL_WARN]


def fine_tune_plan(min_per_label: int, n_train: int, n_valid: int, best: Score, left_s: float,
                   max_epochs: int) -> tuple[int, int, str]:
    """(layers, epochs, reason): fine-tune only with enough data per label and time left."""
    if min_per_label < FINE_TUNE_MIN_PER_LABEL:
        return 0, max_epochs, (f"no fine-tuning: {min_per_label} training images in the smallest "
                               f"label (< {FINE_TUNE_MIN_PER_LABEL}); the frozen base generalises better")
    # A training step costs about three forward passes; four leaves a margin on busy CPUs.
    per_epoch = best.seconds_per_image * (4 * n_train + n_valid)
    epochs = min(max_epochs, int(left_s // max(per_epoch, 1e-9)))
    if epochs < 2:
        return 0, max_epochs, (f"no fine-tuning: an epoch through the base takes ~{per_epoch:.0f}s "
                               f"and only {max(left_s, 0):.0f}s of the budget are left")
    share = 0.2 if min_per_label >= 500 else 0.1
    layers = max(1, round(share * best.base_layers))
    return layers, epochs, (f"fine-tune the top {layers} of {best.base_layers} base layers "
                            f"({share:.0%}) for up to {epochs} epochs (~{per_epoch:.0f}s each): "
                            f"{min_per_label} images in the smallest label and the budget allows it")


def _pin(req: AutoRequest, name: str, value: Any, reasons: dict[str, str]) -> Any:
    if name in req.pinned:
        reasons[name] = f"{name}={req.pinned[name]!r} as you set it (auto would pick {value!r})"
        return req.pinned[name]
    return value


def choose(req: AutoRequest, clock=time.monotonic) -> AutoResult:
    """Resolve auto mode into concrete train parameters with their evidence."""
    t0 = clock()
    index = discover(req.dataset, req.split)
    counts = train_counts(index)
    data = _scoring_data(req, index)
    decode_s = clock() - t0
    search_left = SEARCH_SHARE * req.budget_s - decode_s
    scores = search(req.candidates, data, search_left, req.scorer, clock)
    searched_s = clock() - t0
    best = best_of(scores)
    reasons: dict[str, str] = {"backbone": f"{best.name} ({best.weights}): best cross-validated "
                                           f"linear-probe accuracy {best.accuracy:.3f} of "
                               f"{sum(s.status == 'scored' for s in scores)} scored candidate(s)"}
    per_label = float(np.median(list(counts.values())))
    width, dropout, reasons["head"] = head_shape(per_label)
    width = _pin(req, "head_width", width, reasons)
    dropout = _pin(req, "dropout", dropout, reasons)
    t_lr = clock()
    lr, lr_png = _learning_rate(req, data, best, width, dropout, reasons)
    lr_s = clock() - t_lr
    weights, reasons["class_weights"] = class_weights(counts)
    overrides = {"backbone": best.backbone, "image_size": best.size, "weights": best.weights,
                 "head_width": width, "dropout": dropout, "learning_rate": lr,
                 "epochs": _pin(req, "epochs", HEAD_EPOCHS, reasons),
                 "class_weights": _pin(req, "class_weights", weights, reasons)}
    overrides.update(_fine_tune(req, index, counts, best, req.budget_s - (clock() - t0), reasons))
    doc = {"budget_s": req.budget_s, "search_s": round(clock() - t0, 2),
           "candidates": [s.row() for s in scores], "chosen": overrides, "reasons": reasons,
           "warnings": label_warnings(counts) + budget_warnings(req.budget_s, searched_s, decode_s),
           "budget": budget_use(req.budget_s, decode_s, scores, lr_s, clock() - t0),
           "train_counts": counts,
           "scored_on": {"images": int(len(data.labels)), "per_label": SCORE_PER_LABEL,
                         "splits": "train + valid (never test)"}}
    for warning in doc["warnings"]:
        log.warning("auto: %s", warning)
    log.info("auto: chose %s", overrides)
    return AutoResult(overrides, doc, lr_png)


def _learning_rate(req: AutoRequest, data: ScoringData, best: Score, width: int, dropout: float,
                   reasons: dict[str, str]) -> tuple[float, bytes | None]:
    if "learning_rate" in req.pinned:
        reasons["learning_rate"] = f"learning_rate={req.pinned['learning_rate']!r} as you set it"
        return req.pinned["learning_rate"], None
    labels = data.labels if best.index is None else data.labels[best.index]
    found = lr_range_test(best.maps, labels, data.n_classes, width, dropout,
                          req.label_smoothing, req.batch_size, data.seed)
    reasons["learning_rate"] = found.reason
    return found.suggestion, lr_plot(found)


def _fine_tune(req: AutoRequest, index: DatasetIndex, counts: dict[str, int], best: Score,
               left_s: float, reasons: dict[str, str]) -> dict[str, Any]:
    """Fine-tuning fields, after reserving time to decode and extract every image once."""
    n_all = sum(len(v) for v in index.splits.values())
    reserve = best.seconds_per_image * n_all * 2.0  # extraction, decoding and the head
    layers, epochs, reasons["fine_tune"] = fine_tune_plan(
        min(counts.values()), len(index.splits["train"]), len(index.splits.get("valid", [])),
        best, left_s - reserve, req.fine_tune_epochs)
    return {"fine_tune_layers": _pin(req, "fine_tune_layers", layers, reasons),
            "fine_tune_epochs": _pin(req, "fine_tune_epochs", epochs, reasons)}
