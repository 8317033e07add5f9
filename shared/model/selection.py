"""The default head, chosen by k-fold cross-validation on cached pooled features.

The frozen base's features do not change while the head trains, so a head can be fitted on
the pooled features in well under a second: full-batch Adam in numpy, every regularisation
strength of a family trained side by side as one matrix product. Candidates are a linear
(softmax regression) head over a grid of L2 strengths, when the data is small enough for it
to be cheap a one-hidden-layer ReLU head of a few widths, and with few images a label the
nearest class mean (:mod:`headstart.shared.model.centroid`, favoured by a margin); the number of full-batch
steps is chosen among checkpoints of the same runs. The winner (best mean fold accuracy;
ties to the simpler head, then the stronger L2, as scikit-learn's grid search breaks them)
is refitted on every row, and its out-of-fold probabilities are kept for calibration. Decisions depend
on the data, the seed and fixed costs only (never on the wall clock), so a run is
reproducible on any machine.
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field

import numpy as np

from headstart.shared.model.centroid import centroid_cv, centroid_probs, fit_centroids, fold_score
from headstart.shared.model.centroid import keras_layers as centroid_layers

log = logging.getLogger(__name__)

# sklearn-style inverse strengths: the L2 term is 1 / (C * n) on the mean loss, so the grid
# means the same thing for 25 images as for 3000.
C_GRID = (0.0003, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0)
MLP_C_GRID = (0.01, 0.1, 1.0)
MLP_WIDTHS = (64, 256)
STEP_CHECKPOINTS = (25, 50, 100, 200)
# Linear heads run to 200 full-batch steps (near convergence) and only C is chosen: choosing
# their steps too lost 0.3-0.8 points to selection noise on flowers5 at k = 5..20 (3 seeds).
LINEAR_CHECKPOINTS = (200,)
LEARNING_RATE = 0.01
FOLDS = 5
CRITERION = "accuracy"
# A hidden-layer head costs rows * dim * width multiply-adds per step and per fold; above this
# many, it is left out (a fixed cost rule, not a timer: the choice is machine-independent).
MLP_BUDGET = 5e9
# ... and it competes only when every label has this many images in the cross-validation:
# with fewer, the fold scores are too coarse to tell it from the linear head, and picking the
# best of 24 noisy extra candidates cost 2.4 points at k = 5 on rose+tulip (10 seeds), while
# at k >= 50 the two were within 0.5 points of each other on flowers5 (2 seeds).
MLP_MIN_PER_LABEL = 50
# The nearest-class-mean head (:mod:`headstart.shared.model.centroid`) competes when the
# smallest label has at most this many images in the cross-validation, and is chosen unless
# another candidate's mean fold accuracy beats it by more than CENTROID_MARGIN: there the
# fold scores are coarse and the prototype is the steadier estimate (flowers5 and its 2- and
# 3-label subsets, 10 seeds: +2.2 points on average at k = 5 and 10, never below the linear
# head; an even CV race gained +1.0 over all k and lost 1 point at k = 20 on rose+tulip).
CENTROID_MAX_PER_LABEL = 10
CENTROID_MARGIN = 0.05
# Cross-validation looks at most this many images (a seeded stratified sample; the refit uses
# all): beyond it the choice of C and steps barely moves, and the cost grows with every row.
CV_MAX_IMAGES = 1000


@dataclass(frozen=True, kw_only=True)
class HeadChoice:
    """One head configuration: ``kind`` linear | mlp | centroid, its width, L2 inverse strength C,
    steps (the centroid head has none of the three: zeros)."""

    kind: str
    c: float
    steps: int
    width: int = 0

    def label(self) -> str:
        if self.kind == "centroid":
            return "centroid (nearest class mean)"
        hidden = f" width={self.width}" if self.kind == "mlp" else ""
        return f"{self.kind}{hidden} C={self.c:g} steps={self.steps}"


@dataclass(kw_only=True)
class Selection:
    """What was chosen, why (every candidate's fold scores), and the refitted parameters."""

    chosen: HeadChoice
    folds: int
    reason: str
    table: list[dict] = field(default_factory=list)
    mean: np.ndarray | None = None      # standardisation of the pooled features
    scale: np.ndarray | None = None
    weights: list[np.ndarray] = field(default_factory=list)  # [W, b] or [W1, b1, W2, b2]
    history: list[float] = field(default_factory=list)       # refit loss per checkpoint
    # Out-of-fold probabilities of the chosen configuration on the images cross-validation
    # scored (plain views), and their labels: for calibration, at no extra cost.
    held_out: tuple[np.ndarray, np.ndarray] | None = None

    def doc(self) -> dict:
        """The JSON record (metrics.json ``selection``)."""
        return {"chosen": asdict(self.chosen), "summary": self.chosen.label(), "folds": self.folds,
                "reason": self.reason, "candidates": self.table}

    def folded(self) -> list[np.ndarray]:
        """Weights for raw pooled features: the standardisation folded into the first layer
        (the centroid head normalises each image, which no weight can fold: its own layers)."""
        assert self.chosen.kind != "centroid", "the centroid head keeps its normalisation layers"
        w, b = self.weights[0], self.weights[1]
        assert self.scale is not None and self.mean is not None, "a fitted selection has both"
        w_raw = w / self.scale[:, None]
        b_raw = b - (self.mean / self.scale) @ w
        return [w_raw.astype("float32"), b_raw.astype("float32"), *[x.astype("float32") for x in self.weights[2:]]]


def stratified_folds(labels: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """Fold index per row: each label dealt round-robin over the folds after a seeded shuffle."""
    rng = np.random.default_rng([seed, 7])
    out = np.empty(len(labels), dtype=int)
    offset = 0
    for label in np.unique(labels):
        rows = np.flatnonzero(labels == label)
        rows = rows[rng.permutation(len(rows))]
        out[rows] = (np.arange(len(rows)) + offset) % folds
        offset += len(rows)  # spread the remainders of small labels over different folds
    return out


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


class _Adam:
    def __init__(self, params: list[np.ndarray], lr: float) -> None:
        self.params, self.lr, self.t = params, lr, 0
        self.m = [np.zeros_like(p) for p in params]
        self.v = [np.zeros_like(p) for p in params]
        self._scratch = [(np.empty_like(p), np.empty_like(p)) for p in params]

    def step(self, grads: list[np.ndarray]) -> None:
        # The textbook update, each operation in place into two scratch buffers, all in float32
        # (the step size too), without a fresh array per term: the update of d x heads*classes
        # parameters dominates a step on few rows (40-row CV 0.54 s -> 0.35 s).
        self.t += 1
        a = np.float32(self.lr * np.sqrt(1 - 0.999**self.t) / (1 - 0.9**self.t))
        for p, g, m, v, (s1, s2) in zip(self.params, grads, self.m, self.v, self._scratch):
            m *= 0.9
            np.multiply(g, 0.1, out=s1)
            m += s1
            v *= 0.999
            np.multiply(g, 0.001, out=s1)
            s1 *= g
            v += s1
            np.sqrt(v, out=s1)
            s1 += 1e-8
            np.multiply(m, a, out=s2)
            s2 /= s1
            p -= s2


def _targets(y: np.ndarray, n_classes: int, smoothing: float) -> np.ndarray:
    t = np.full((len(y), n_classes), smoothing / n_classes, dtype=np.float32)
    t[np.arange(len(y)), y] += 1.0 - smoothing
    return t


def _fit(kind: str, width: int, lam: np.ndarray, x: np.ndarray, t: np.ndarray, w_rows: np.ndarray,
         seed: int, checkpoints: tuple[int, ...]):
    """Train H heads side by side on the same rows; yields (step, params, train loss per head).

    ``lam`` (H,) L2 strengths; ``w_rows`` (H, n) row weights (0 leaves a row out of a head:
    that is how the folds share one matrix product); ``t`` (n, classes) soft targets.
    """
    rng = np.random.default_rng([seed, width, 3])
    heads = len(lam)
    lam = np.asarray(lam, np.float32)[:, None, None]
    w_rows = (w_rows / w_rows.sum(axis=1, keepdims=True)).astype(np.float32)
    x, t, w_rows = _padded(x, t, w_rows)
    (n, d), n_classes = x.shape, t.shape[1]
    w_rows = w_rows[:, :, None]
    xt = np.ascontiguousarray(x.T)
    if kind == "linear":  # every head's columns side by side: one skinny GEMM per step for all
        # Class-major columns (column c * heads + h: class c of head h): the softmax's max and
        # sum run over the middle axis of (n, classes, heads), which numpy vectorises along the
        # heads; over a trailing axis of 2-10 classes they cost a fifth of the CV's time.
        params = [np.zeros((d, n_classes * heads), np.float32), np.zeros((n_classes * heads,), np.float32)]
        lam_cols = np.tile(lam[:, 0, 0], n_classes)[None]
        rows_w = np.ascontiguousarray(w_rows[:, :, 0].T)[:, None, :]             # (n, 1, heads)
        t_cols = t[:, :, None]
    else:
        w1 = rng.normal(0, np.sqrt(2.0 / d), (d, width)).astype(np.float32)
        w2 = rng.normal(0, np.sqrt(1.0 / width), (width, n_classes)).astype(np.float32)
        params = [np.repeat(w1[None], heads, 0), np.zeros((heads, 1, width), np.float32),
                  np.repeat(w2[None], heads, 0), np.zeros((heads, 1, n_classes), np.float32)]
    opt = _Adam(params, LEARNING_RATE)
    for step in range(1, max(checkpoints) + 1):
        if kind == "linear":
            w, b = params
            z = x @ w
            z += b
            p = z.reshape(n, n_classes, heads)
            p -= p.max(axis=1, keepdims=True)
            np.exp(p, out=p)
            p /= p.sum(axis=1, keepdims=True)
            err = p - t_cols
            err *= rows_w                                                           # d loss / d logits
            err = err.reshape(n, n_classes * heads)
            grads = [xt @ err + lam_cols * w, err.sum(0)]
        else:
            w1, b1, w2, b2 = params
            h = np.maximum(np.matmul(x, w1) + b1, 0)
            p = _softmax(np.matmul(h, w2) + b2)
            err = (p - t) * w_rows
            dh = np.matmul(err, w2.transpose(0, 2, 1)) * (h > 0)
            grads = [np.matmul(xt, dh) + lam * w1, dh.sum(1, keepdims=True),
                     np.matmul(h.transpose(0, 2, 1), err) + lam * w2, err.sum(1, keepdims=True)]
        opt.step(grads)
        if step in checkpoints:
            if kind == "linear":  # head-major columns out (column h * classes + c), as _predict reads them
                loss = -(rows_w * t_cols * np.log(np.clip(p, 1e-12, None))).sum(axis=(0, 1))
                yield step, [np.ascontiguousarray(params[0].reshape(d, n_classes, heads).transpose(0, 2, 1)
                                                  .reshape(d, heads * n_classes)),
                             params[1].reshape(n_classes, heads).T.reshape(-1)], loss
            else:
                loss = -(w_rows * t * np.log(np.clip(p, 1e-12, None))).sum(axis=(1, 2))
                yield step, params, loss


# Rows are padded with zero-weight zero rows to a multiple of this: OpenBLAS then gives the
# gradient products (whose inner dimension is the rows) the same bits on 1 or 2 threads
# (measured: inner sizes 900, 1000, 3668 differ, multiples of 32 up to 1280 do not), so the
# choice does not depend on the thread count (tests/shared/model/test_selection.py checks).
ROW_MULTIPLE = 64


def _padded(x: np.ndarray, t: np.ndarray, w_rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``x``, ``t`` (rows) and ``w_rows`` (heads, rows) with zero rows appended up to
    :data:`ROW_MULTIPLE`: a zero row with weight zero adds exact zeros to every sum."""
    extra = -len(x) % ROW_MULTIPLE
    if not extra:
        return x, t, w_rows
    return (np.concatenate([x, np.zeros((extra, x.shape[1]), x.dtype)]),
            np.concatenate([t, np.zeros((extra, t.shape[1]), t.dtype)]),
            np.concatenate([w_rows, np.zeros((len(w_rows), extra), w_rows.dtype)], axis=1))


def threads_for(rows: int, cpus: int, idle: float | None) -> int:
    """BLAS threads for fitting heads on ``rows`` rows: one below :data:`THREADED_ROWS` (small
    products only spin threads, see :func:`headstart.shared.model.blas.blas_threads`), else
    one per core idle now (``idle``, :func:`headstart.shared.runtime.cpus.idle_cpus`; None:
    unknown, one), at most ``cpus`` and :data:`MAX_THREADS`. The bits do not change."""
    if rows < THREADED_ROWS or idle is None:
        return 1
    return max(1, min(cpus, MAX_THREADS, int(idle + 0.25)))


# Measured on 2 cores: 1000 CV rows 2.30 s on one thread, 1.64 s on two; with another process
# keeping one core busy 2.42 s on one, 3.37 s on two (and 3-4 threads on 2 cores: up to 70 s).
# 40 rows: faster on one. Past two threads the skinny products stop scaling.
THREADED_ROWS = 256
MAX_THREADS = 2


def _predict(kind: str, params: list[np.ndarray], x: np.ndarray, n_classes: int) -> np.ndarray:
    if kind == "linear":
        heads = params[1].size // n_classes
        return _softmax((x @ params[0] + params[1]).reshape(len(x), heads, n_classes)).transpose(1, 0, 2)
    h = np.maximum(np.matmul(x, params[0]) + params[1], 0)
    return _softmax(np.matmul(h, params[2]) + params[3])


def _standardise(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    return mean, np.where(scale > 1e-6, scale, 1.0)  # constant features (dead units) stay put


def _families(n: int, d: int, k: int, min_per_label: int
              ) -> tuple[list[tuple[str, int, tuple[float, ...]]], list[str]]:
    """Candidate families, and the ones left out for data or cost (fixed rules: machine-independent)."""
    fams: list[tuple[str, int, tuple[float, ...]]] = [("linear", 0, C_GRID)]
    skipped: list[str] = []
    if min_per_label < MLP_MIN_PER_LABEL:
        return fams, [f"mlp (a label has {min_per_label} images < {MLP_MIN_PER_LABEL}: too few to tell it apart)"]
    for w in MLP_WIDTHS:
        cost = k * len(MLP_C_GRID) * n * d * w * max(STEP_CHECKPOINTS)
        if cost <= MLP_BUDGET:
            fams.append(("mlp", w, MLP_C_GRID))
        else:
            skipped.append(f"mlp width={w} (cost: {cost:.1e} multiply-adds > budget {MLP_BUDGET:.0e})")
    return fams, skipped


def _row_weights(y: np.ndarray, class_weights: list[float] | None) -> np.ndarray:
    if class_weights is None:
        return np.ones(len(y), np.float32)
    return np.asarray(class_weights, np.float32)[y]


def _cv_images(labels: np.ndarray, cap: int, seed: int) -> np.ndarray:
    """Mask of the images cross-validation looks at: all, or a seeded stratified ``cap``."""
    if len(labels) <= cap:
        return np.ones(len(labels), bool)
    rng = np.random.default_rng([seed, 11])
    keep = np.zeros(len(labels), bool)
    for label in np.unique(labels):
        idx = np.flatnonzero(labels == label)
        take = max(FOLDS, int(round(cap * len(idx) / len(labels))))
        keep[rng.permutation(idx)[:take]] = True
    return keep


def _cross_validate(x, y, fold, eval_mask, k, families, n_classes, seed, rw, smoothing
                    ) -> tuple[dict, dict]:
    """({(kind, width, C, steps): [(fold accuracy, fold log-loss), ...]},
    {same key: out-of-fold probabilities (n, classes), rows outside ``eval_mask`` zero})."""
    # One standardisation for every fold (features only, no labels): the folds then share
    # each matrix product, one head per (fold, C), with held-out rows weighted 0.
    mean, scale = _standardise(x)
    xs = (x - mean) / scale
    t = _targets(y, n_classes, smoothing)
    scores: dict[tuple, list[tuple[float, float]]] = {}
    oof: dict[tuple, np.ndarray] = {}
    for kind, width, cs in families:
        inside = np.stack([(fold != f) for f in range(k) for _ in cs])           # (H, n)
        lam = np.array([1.0 / (c * inside[i].sum()) for i, c in enumerate(list(cs) * k)])
        checkpoints = LINEAR_CHECKPOINTS if kind == "linear" else STEP_CHECKPOINTS
        for step, params, _ in _fit(kind, width, lam, xs, t, inside * rw, seed, checkpoints):
            probs = _predict(kind, params, xs, n_classes)                        # (H, n, classes)
            for f in range(k):
                va = (fold == f) & eval_mask
                for i, c in enumerate(cs):
                    pr = probs[f * len(cs) + i, va]
                    oof.setdefault((kind, width, c, step), np.zeros((len(y), n_classes), np.float32))[va] = pr
                    scores.setdefault((kind, width, c, step), []).append(fold_score(pr, y[va]))
    return scores, oof


def select_head(x: np.ndarray, y: np.ndarray, n_classes: int, *, seed: int, groups: np.ndarray | None = None,
                eval_rows: np.ndarray | None = None, class_weights: list[float] | None = None,
                label_smoothing: float = 0.0, folds: int = FOLDS) -> Selection:
    """Choose a head by stratified k-fold CV on pooled features ``x`` (n, d), then refit.

    ``groups``: image index per row (augmented views of one image share a fold; only rows in
    ``eval_rows`` — the plain views — are scored). Labels need two rows each to be cross-validated;
    with fewer the linear head with a middle C is fitted and the reason recorded.
    """
    x = np.asarray(x, np.float32)
    y = np.asarray(y, np.int64)
    groups = np.arange(len(y)) if groups is None else np.asarray(groups)
    eval_mask = np.ones(len(y), bool) if eval_rows is None else np.asarray(eval_rows, bool)
    per_image = np.zeros(groups.max() + 1, np.int64)
    per_image[groups] = y
    counts = np.bincount(per_image[np.unique(groups)], minlength=n_classes)
    k = int(min(folds, counts[counts > 0].min())) if counts.any() else 0
    if k < 2:
        chosen = HeadChoice(kind="linear", c=0.1, steps=200)
        reason = (f"a label has {int(counts[counts > 0].min())} image(s): too few to cross-validate; "
                  f"fixed {chosen.label()}")
        return _refit(x, y, n_classes, chosen, 1, reason, [], seed, class_weights, label_smoothing)
    images = np.unique(groups)
    fold_of_image = stratified_folds(per_image[images], k, seed)
    keep = _cv_images(per_image[images], CV_MAX_IMAGES, seed)
    rows = np.isin(groups, images[keep])
    fold = fold_of_image[np.searchsorted(images, groups[rows])]
    per_label = np.bincount(per_image[images[keep]], minlength=n_classes)
    min_label = int(per_label[per_label > 0].min())
    families, skipped = _families(int(rows.sum()), x.shape[1], k, min_label)
    scores, oof = _cross_validate(x[rows], y[rows], fold, eval_mask[rows], k, families, n_classes, seed,
                             _row_weights(y[rows], class_weights), label_smoothing)
    table = [_row(kind, width, c, step, vals) for (kind, width, c, step), vals in scores.items()]
    # Best mean accuracy; ties -> the simpler head (linear, fewer units), then the stronger L2
    # (smaller C), then fewer steps. Breaking ties by log-loss instead favours weak L2 (a
    # confident fit has the lower loss) and cost 0.3-0.8 points at k = 5..10 on 2- and
    # 3-label subsets of flowers5 (10 seeds): with a handful of images per fold, ties are common.
    if CRITERION == "log_loss":
        table.sort(key=lambda r: (r["cv_log_loss"], -r["cv_accuracy"], r["width"], r["steps"], r["c"]))
    else:
        table.sort(key=lambda r: (-r["cv_accuracy"], r["width"], r["c"], r["steps"]))
    best = table[0]
    scored = eval_mask[rows]
    centroid = _centroid_row(x[rows], y[rows], fold, eval_mask[rows], k, n_classes) \
        if min_label <= CENTROID_MAX_PER_LABEL and class_weights is None else None
    if class_weights is not None:  # a head fitted to no loss cannot weigh the classes as asked
        skipped.append("centroid (class weights were given: it has no loss to weigh)")
    elif centroid is None:
        skipped.append(f"centroid (every label has > {CENTROID_MAX_PER_LABEL} images: a fitted head is as good there)")
    if centroid is not None and centroid[0]["cv_accuracy"] >= best["cv_accuracy"] - CENTROID_MARGIN:
        row, probs = centroid
        table.insert(0, row)
        chosen = HeadChoice(kind="centroid", c=0.0, steps=0)
        held = probs[scored], y[rows][scored]
        reason = (f"nearest class mean: mean {k}-fold accuracy {row['cv_accuracy']:.4f} within {CENTROID_MARGIN} "
                  f"of the best fitted head's {best['cv_accuracy']:.4f} ({best['kind']} C={best['c']:g}), with "
                  f"{min_label} images in the smallest label (<= {CENTROID_MAX_PER_LABEL}: the class mean is "
                  f"the steadier estimate); {len(table)} candidates on {int(keep.sum())} images")
    else:
        if centroid is not None:
            table.append(centroid[0])
        chosen = HeadChoice(kind=best["kind"], c=best["c"], steps=best["steps"], width=best["width"])
        held = oof[(best["kind"], best["width"], best["c"], best["steps"])][scored], y[rows][scored]
        reason = (f"best mean {k}-fold accuracy {best['cv_accuracy']:.4f} (log-loss {best['cv_log_loss']:.4f}) "
                  f"of {len(table)} candidates on {int(keep.sum())} images")
    if skipped:
        reason += "; left out: " + ", ".join(skipped)
    sel = _refit(x, y, n_classes, chosen, k, reason, table, seed, class_weights, label_smoothing)
    sel.held_out = held
    return sel


def _row(kind: str, width: int, c: float, steps: int, vals: list[tuple[float, float]]) -> dict:
    """A candidate's table row from its per-fold (accuracy, log-loss)."""
    accs, nlls = np.array([v[0] for v in vals]), np.array([v[1] for v in vals])
    return {"kind": kind, "width": width, "c": c, "steps": steps, "cv_accuracy": round(float(accs.mean()), 4),
            "cv_accuracy_std": round(float(accs.std()), 4), "cv_log_loss": round(float(nlls.mean()), 4)}


def _centroid_row(x, y, fold, eval_mask, k, n_classes) -> tuple[dict, np.ndarray]:
    """The centroid head's table row and out-of-fold probabilities."""
    vals, probs = centroid_cv(x, y, fold, eval_mask, k, n_classes)
    return _row("centroid", 0, 0.0, 0, vals), probs


def _refit(x, y, n_classes, chosen: HeadChoice, k: int, reason: str, table: list[dict], seed: int,
           class_weights, label_smoothing) -> Selection:
    if chosen.kind == "centroid":
        mean, w, b = fit_centroids(x, y, n_classes)
        loss = fold_score(centroid_probs([mean, w, b], x), y)[1]
        log.info("head selection: %s (%s)", chosen.label(), reason)
        return Selection(chosen=chosen, folds=k, reason=reason, table=table, mean=mean, scale=None,
                         weights=[w, b], history=[loss])
    mean, scale = _standardise(x)
    xs = (x - mean) / scale
    checkpoints = tuple(s for s in STEP_CHECKPOINTS if s < chosen.steps) + (chosen.steps,)
    history, params = [], None
    lam = np.array([1.0 / (chosen.c * len(y))])
    for _, params, loss in _fit(chosen.kind, chosen.width, lam, xs, _targets(y, n_classes, label_smoothing),  # noqa: B007 - the last params are kept
                                _row_weights(y, class_weights)[None], seed, checkpoints):
        history.append(float(loss[0]))
    assert params is not None, "_fit yields at every checkpoint"
    if chosen.kind == "linear":
        weights = [params[0], params[1]]
    else:
        weights = [p[0] if i % 2 == 0 else p[0, 0] for i, p in enumerate(params)]  # matrices, biases
    log.info("head selection: %s (%s)", chosen.label(), reason)
    return Selection(chosen=chosen, folds=k, reason=reason, table=table, mean=mean, scale=scale,
                     weights=weights, history=history)


def keras_head(selection: Selection, n_classes: int) -> list:
    """The chosen head as Keras layers over feature maps, carrying the refitted weights.

    Layer names follow the reference head (``head_pool``, ``head_dense``, ``predictions``) so
    the similarity and Grad-CAM jobs find the pooled embedding and the classifier the same way.
    """
    import keras

    pool = keras.layers.GlobalAveragePooling2D(name="head_pool")
    if selection.chosen.kind == "centroid":
        assert selection.mean is not None, "a fitted centroid head has its mean"
        return [pool, *centroid_layers([selection.mean, *selection.weights], n_classes)]
    weights = selection.folded()
    layers = [pool]
    if selection.chosen.kind == "mlp":
        dense = keras.layers.Dense(selection.chosen.width, activation="relu", name="head_dense")
        dense.build((None, weights[0].shape[0]))
        dense.set_weights(weights[:2])
        layers.append(dense)
        weights = weights[2:]
    out = keras.layers.Dense(n_classes, activation="softmax", name="predictions")
    out.build((None, weights[0].shape[0]))
    out.set_weights(weights[:2])
    return layers + [out]


def pooled(maps: np.ndarray) -> np.ndarray:
    """Global average pooling of cached maps ``(n, [views,] h, w, c)`` in float32, by chunks."""
    out = np.empty((*maps.shape[:-3], maps.shape[-1]), np.float32)
    for start in range(0, len(maps), 256):
        out[start:start + 256] = np.asarray(maps[start:start + 256], np.float32).mean(axis=(-3, -2))
    return out


def cross_val_probs(x: np.ndarray, y: np.ndarray, n_classes: int, *, seed: int, folds: int, c: float,
                    steps: int, kind: str = "linear", width: int = 0) -> np.ndarray:
    """Out-of-sample probabilities (n, classes) of k-fold heads of one configuration (``kind``
    linear | mlp; one matrix product for all folds)."""
    x = np.asarray(x, np.float32)
    y = np.asarray(y, np.int64)
    counts = np.bincount(y, minlength=n_classes)
    k = int(min(folds, counts[counts > 0].min()))
    if k < 2:
        k = 2  # labels of one image are predicted from the other labels only
    fold = stratified_folds(y, k, seed)
    mean, scale = _standardise(x)
    xs = (x - mean) / scale
    inside = np.stack([fold != f for f in range(k)])
    lam = np.array([1.0 / (c * max(inside[f].sum(), 1)) for f in range(k)])
    params = None
    for _, params, _ in _fit(kind, width, lam, xs, _targets(y, n_classes, 0.0),  # noqa: B007 - the last params
                             inside.astype(np.float32),
                             seed, (steps,)):
        pass
    assert params is not None, "_fit yields at every checkpoint"
    probs = _predict(kind, params, xs, n_classes)  # (k, n, classes)
    return probs[fold, np.arange(len(y))]
