"""Auto mode, part 1: choose the backbone and input size by scoring candidates on cached features.

The base is frozen, so judging a backbone costs one forward pass per image: each candidate
extracts feature maps of a seeded per-label subsample once, and a linear probe (softmax
regression on the pooled maps, stratified cross-validation) scores them. Candidates run
cheapest first; a candidate whose weights cannot be had (``imagenet`` offline, a missing
file) is skipped with a note, and so is one that would not fit in the search budget.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from collections.abc import Sequence
from typing import Callable

import numpy as np

from headstart.shared.model.backbones import check_weights_arg, get_info, resolve_size
from headstart.shared.runtime.errors import UserError

log = logging.getLogger(__name__)

# Tried when --candidates is not given: ImageNet weights (baked into the Docker image or
# downloaded on first use), cheapest first once costed.
DEFAULT_CANDIDATES = ("mobilenet_v2@160", "mobilenet_v2@224", "efficientnet_b0@224",
                      "resnet50@224", "convnext_tiny@224")
# Approximate GFLOPs of one forward pass at the backbone's default size (published figures);
# only their ratios matter: they order candidates and scale measured speed into estimates.
GFLOPS = {"resnet50": 4.1, "resnet101": 7.8, "mobilenet_v2": 0.3, "mobilenet_v3_large": 0.22,
          "efficientnet_b0": 0.39, "efficientnet_b3": 1.8, "densenet121": 2.9, "inception_v3": 5.7,
          "xception": 8.4, "convnext_tiny": 4.5, "tiny": 0.005}
PROBE_L2 = (1e-3, 1e-2, 1e-1)


@dataclass(frozen=True)
class Candidate:
    """One backbone at one input size with its weights (``imagenet``, ``none`` or a file)."""

    backbone: str
    size: int
    weights: str = "imagenet"

    @property
    def name(self) -> str:
        return f"{self.backbone}@{self.size}"

    @property
    def cost(self) -> float:
        """Relative cost of one forward pass (GFLOPs scaled by the pixel count)."""
        info = get_info(self.backbone)
        return GFLOPS.get(self.backbone, 5.0) * (self.size / info.default_size) ** 2

    def text(self) -> str:
        return f"{self.name}={self.weights}"


def parse_candidate(text: str) -> Candidate:
    """``backbone[@size][=weights]`` -> :class:`Candidate` (size: the backbone's default)."""
    head, _, weights = text.strip().partition("=")
    name, _, size_text = head.partition("@")
    info = get_info(name.strip())
    try:
        size = int(size_text) if size_text.strip() else None
    except ValueError:
        raise UserError(f"`candidates` entries look like backbone@size=weights; the size in "
                        f"{text!r} is not a whole number. Received: candidates={text!r}") from None
    weights = weights.strip() or ("imagenet" if info.pretrained else "none")
    return Candidate(info.name, resolve_size(info, size), check_weights_arg(weights))


def parse_candidates(items: list[str] | None, extra: Sequence[Candidate] = ()) -> list[Candidate]:
    """Parsed candidates (``extra`` first, then ``items`` or the defaults), cheapest first;
    a backbone@size given twice keeps its first weights."""
    seen: dict[str, Candidate] = {}
    for cand in [*extra, *(parse_candidate(t) for t in (items or DEFAULT_CANDIDATES))]:
        seen.setdefault(cand.name, cand)
    return sorted(seen.values(), key=lambda c: (c.cost, c.name))


@dataclass
class ScoringData:
    """A seeded per-label subsample, decoded once at the largest candidate size."""

    images: np.ndarray       # (n, s, s, 3) float32, as load_split gives them
    labels: np.ndarray       # (n,) int
    n_classes: int
    seed: int = 1337
    batch_size: int = 32
    deadline: float | None = None  # time.monotonic() by which scoring must stop (the budget)

    def order(self) -> np.ndarray:
        """Round-robin over labels (seeded): any prefix of this order is label-balanced, so
        scoring cut short by the deadline still sees every label."""
        rng = np.random.default_rng(self.seed)
        per = [rng.permutation(np.flatnonzero(self.labels == c)) for c in range(self.n_classes)]
        longest = max((len(p) for p in per), default=0)
        return np.asarray([p[r] for r in range(longest) for p in per if r < len(p)], int)


MIN_SCORED_PER_LABEL = 4  # a candidate cut short by the budget still sees this many per label


@dataclass
class Score:
    """One row of the candidates table."""

    name: str
    backbone: str
    size: int
    weights: str
    status: str                    # "scored" | "skipped"
    accuracy: float | None = None  # cross-validated linear-probe accuracy
    loss: float | None = None      # its cross-entropy
    seconds: float = 0.0
    note: str = ""
    # Not in the table: what the plan needs from the winner.
    maps: np.ndarray | None = field(default=None, repr=False)
    base_layers: int = 0
    seconds_per_image: float = 0.0
    index: np.ndarray | None = field(default=None, repr=False)  # rows of the data ``maps`` are of

    def row(self) -> dict:
        return {k: getattr(self, k) for k in ("name", "backbone", "size", "weights", "status",
                                               "accuracy", "loss", "seconds", "note")}


Scorer = Callable[[Candidate, ScoringData], Score]


def resize_all(images: np.ndarray, size: int) -> np.ndarray:
    """The models' own resize layer (modelinput.resize_layer) on the squares, in batches."""
    if images.shape[1] == size or len(images) == 0:
        return images
    from headstart.shared.data.modelinput import resize_layer

    layer = resize_layer(size)
    return np.concatenate([np.asarray(layer(np.asarray(images[i:i + 256], np.float32)))
                           for i in range(0, len(images), 256)])


def score_candidate(cand: Candidate, data: ScoringData) -> Score:
    """Build ``cand``, cache its features of the subsample once and linear-probe them."""
    import keras

    from headstart.shared.model.features import extract_features
    from headstart.shared.model.classifier import assemble
    from headstart.shared.model.backbones import build_backbone

    t0 = time.monotonic()
    keras.utils.set_random_seed(data.seed)
    try:
        backbone = build_backbone(cand.backbone, cand.size, cand.weights)
    except UserError as exc:
        return Score(cand.name, cand.backbone, cand.size, cand.weights, "skipped",
                     seconds=time.monotonic() - t0, note=f"weights unavailable: {exc}")
    clf = assemble(backbone, get_info(cand.backbone), cand.size, data.n_classes)
    t1 = time.monotonic()
    order = data.order()
    minimum = min(len(order), MIN_SCORED_PER_LABEL * data.n_classes)
    step = max(4 * data.batch_size, minimum)
    parts, note = [], ""
    for start in range(0, len(order), step):  # chunks, so the budget can stop the extraction
        rows = order[start:start + step]
        parts.append(extract_features(clf.extractor, resize_all(data.images[rows], cand.size),
                                      data.batch_size, f"auto {cand.name}")[:, 0])
        done = start + len(rows)
        if data.deadline is not None and time.monotonic() > data.deadline and done >= minimum \
                and done < len(order):
            note = f"budget: scored on {done} of {len(order)} images"
            order = order[:done]
            break
    maps = np.concatenate(parts)
    per_image = (time.monotonic() - t1) / max(len(maps), 1)
    pooled = maps.astype(np.float32).mean(axis=(1, 2))
    acc, loss = cv_probe(pooled, data.labels[order], data.n_classes, data.seed)
    layers = sum(1 for layer in backbone.layers if layer.weights)
    return Score(cand.name, cand.backbone, cand.size, cand.weights, "scored", acc, loss,
                 time.monotonic() - t0, note=note, maps=maps, base_layers=layers,
                 seconds_per_image=per_image, index=order)


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def probe(x: np.ndarray, y: np.ndarray, n_classes: int, l2: float, steps: int = 200,
          lr: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Softmax regression with L2 by full-batch Adam on standardised ``x``: (W, b)."""
    w = np.zeros((x.shape[1], n_classes))
    b = np.zeros(n_classes)
    onehot = np.eye(n_classes)[y]
    m, v = [np.zeros_like(w), np.zeros_like(b)], [np.zeros_like(w), np.zeros_like(b)]
    for t in range(1, steps + 1):
        err = (_softmax(x @ w + b) - onehot) / len(x)
        for i, (param, grad) in enumerate(((w, x.T @ err + l2 * w), (b, err.sum(axis=0)))):
            m[i] = 0.9 * m[i] + 0.1 * grad
            v[i] = 0.999 * v[i] + 0.001 * grad**2
            param -= lr * (m[i] / (1 - 0.9**t)) / (np.sqrt(v[i] / (1 - 0.999**t)) + 1e-8)
    return w, b


def folds_of(y: np.ndarray, seed: int, max_folds: int = 5) -> np.ndarray:
    """Stratified fold id per sample: each label dealt round-robin after a seeded shuffle."""
    k = int(max(2, min(max_folds, np.bincount(y).min())))
    folds = np.zeros(len(y), dtype=int)
    rng = np.random.default_rng(seed)
    for label in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == label))
        folds[idx] = np.arange(len(idx)) % k
    return folds


def cv_probe(x: np.ndarray, y: np.ndarray, n_classes: int, seed: int) -> tuple[float, float]:
    """Held-out accuracy and cross-entropy of the linear probe (best L2 by held-out loss)."""
    folds = folds_of(y, seed)
    best = (0.0, np.inf)
    for l2 in PROBE_L2:
        correct, nll = 0, 0.0
        for f in np.unique(folds):
            tr, va = folds != f, folds == f
            mu, sd = x[tr].mean(axis=0), x[tr].std(axis=0) + 1e-6
            w, b = probe((x[tr] - mu) / sd, y[tr], n_classes, l2)
            p = _softmax(((x[va] - mu) / sd) @ w + b)
            correct += int(np.sum(p.argmax(axis=1) == y[va]))
            nll -= float(np.sum(np.log(p[np.arange(len(p)), y[va]] + 1e-12)))
        if nll / len(y) < best[1]:
            best = (correct / len(y), nll / len(y))
    return best


def _estimate(cand: Candidate, done: list[Score], n_images: int) -> float | None:
    """Seconds ``cand`` should take, scaled from the last scored candidate's measured speed."""
    scored = [s for s in done if s.status == "scored"]
    if not scored:
        return None
    last = scored[-1]
    ref = Candidate(last.backbone, last.size, last.weights)
    return last.seconds_per_image * n_images * cand.cost / ref.cost


def search(candidates: list[Candidate], data: ScoringData, budget_s: float,
           scorer: Scorer = score_candidate, clock: Callable[[], float] = time.monotonic) -> list[Score]:
    """Score ``candidates`` in order within ``budget_s`` seconds; only the best keeps its maps."""
    start, scores = clock(), list[Score]()
    best: Score | None = None
    data.deadline = time.monotonic() + max(budget_s, 0.0)  # scorers stop extracting at it
    for cand in candidates:
        left = budget_s - (clock() - start)
        guess = _estimate(cand, scores, len(data.labels))
        if best is not None and (left <= 0 or (guess is not None and guess > left)):
            note = f"skipped: over the search budget (est. {guess or 0:.0f}s, {max(left, 0):.0f}s left)"
            scores.append(Score(cand.name, cand.backbone, cand.size, cand.weights, "skipped", note=note))
            log.info("auto: %s %s", cand.name, note)
            continue
        score = scorer(cand, data)
        log.info("auto: %s %s acc=%s loss=%s in %.1fs %s", cand.name, score.status, score.accuracy,
                 score.loss, score.seconds, score.note)
        if score.status == "scored" and (best is None or _key(score) > _key(best)):
            if best is not None:
                best.maps = None
            best = score
        elif score.status == "scored":
            score.maps = None
        scores.append(score)
    if best is None:
        notes = "; ".join(f"{s.name}: {s.note}" for s in scores)
        raise UserError(f"auto: no candidate backbone could be scored ({notes}); pass "
                        "--candidates backbone@size=PATH with a local .weights.h5 file")
    return scores


def _key(score: Score) -> tuple[float, float]:
    """Higher is better: accuracy first, then lower loss."""
    return (score.accuracy or 0.0, -(score.loss if score.loss is not None else np.inf))


def best_of(scores: list[Score]) -> Score:
    """The winning row: highest accuracy, then lowest loss; on a tie the cheaper (earlier)."""
    scored = [s for s in scores if s.status == "scored"]
    return max(scored, key=lambda s: (*_key(s), -scored.index(s)))
