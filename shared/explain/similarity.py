"""Embedding similarity: which images the model finds alike.

Embeddings are the pooled backbone features (the output of ``head_pool``), L2-normalised so
a dot product is the cosine similarity. The all-pairs scan works in row blocks of the
similarity matrix (about ``block_bytes`` each), so memory stays O(N·k + block) rather than
O(N²): 50,000 images need a few hundred MiB, not 10 GB.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from headstart.shared.runtime.errors import UserError
from headstart.shared.runtime.logs import Progress
from headstart.shared.runtime.stop import STOP

log = logging.getLogger(__name__)

POOL_LAYER = "head_pool"
BLOCK_BYTES = 64 * 2**20
# Similarities closer than this are ties, broken by index. One image's similarity to two
# identical others comes out of BLAS a few ulps apart, and differently for different block
# shapes, so ordering by the raw value would make neighbours depend on the block size.
TIE_TOLERANCE = 1e-5
TIE_MARGIN = 8  # extra top-k candidates, so ties at the k-th place are all considered


def embedder(model):
    """raw images -> pooled backbone features: the model cut at ``head_pool``.

    ``head_pool`` is a layer of the outer graph (after the nested backbone), so a plain
    functional sub-model reaches it; it shares the model's weights."""
    import keras

    try:
        pool = model.get_layer(POOL_LAYER)
    except ValueError:
        raise UserError(f"model {model.name!r} has no {POOL_LAYER!r} layer; expected a model "
                        "trained by `headstart train`") from None
    return keras.Model(model.input, pool.output, name="embedder")


def normalize(embeddings: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero)."""
    e = np.asarray(embeddings, np.float32)
    norms = np.linalg.norm(e, axis=1, keepdims=True)
    return e / np.maximum(norms, 1e-12)


@dataclass
class Pairs:
    """The most similar pairs (i < j) above a threshold, capped at ``limit``; ``total`` counts all."""

    threshold: float
    limit: int
    total: int = 0
    items: list[tuple[int, int, float]] = field(default_factory=list)

    def add(self, rows: np.ndarray, cols: np.ndarray, sims: np.ndarray) -> None:
        self.total += len(rows)
        self.items += zip(rows.tolist(), cols.tolist(), sims.tolist())
        if len(self.items) > 2 * self.limit:
            self.trim()

    def trim(self) -> None:
        self.items.sort(key=lambda t: (-t[2], t[0], t[1]))
        groups = tie_groups(np.asarray([t[2] for t in self.items], np.float64)).tolist()
        ranked = sorted(zip(groups, self.items), key=lambda gt: (gt[0], gt[1][0], gt[1][1]))
        self.items = [t for _, t in ranked[: self.limit]]


@dataclass
class Scan:
    neighbours: np.ndarray    # (n, k) int: most similar other images, best first
    similarities: np.ndarray  # (n, k) float32
    duplicates: Pairs
    leakage: Pairs | None     # pairs across groups (splits), when groups were given


def block_rows(n: int, block_bytes: int = BLOCK_BYTES) -> int:
    """Rows per block so one (rows x n) float32 block is about ``block_bytes``."""
    return max(1, min(n, block_bytes // (4 * max(n, 1))))


def tie_groups(desc: np.ndarray) -> np.ndarray:
    """Tie-group ids along the last axis of values sorted in descending order: a new group
    starts where a value is more than :data:`TIE_TOLERANCE` below the one before it."""
    gaps = (desc[..., :-1] - desc[..., 1:]) > TIE_TOLERANCE
    first = np.zeros(desc.shape[:-1] + (1,), np.int64)
    return np.concatenate([first, np.cumsum(gaps, axis=-1)], axis=-1)


def _topk_exact(sims: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` most similar columns per row, best first, ties (within the tolerance) by index."""
    n = sims.shape[1]
    m = min(n, k + TIE_MARGIN)
    idx = np.argpartition(sims, n - m, axis=1)[:, n - m:]  # no negated copy of the block
    part = np.take_along_axis(sims, idx, axis=1)
    desc = np.argsort(-part, axis=1, kind="stable")
    idx, part = np.take_along_axis(idx, desc, axis=1), np.take_along_axis(part, desc, axis=1)
    order = np.lexsort((idx, tie_groups(part)), axis=-1)[:, :k]
    return np.take_along_axis(idx, order, axis=1), np.take_along_axis(part, order, axis=1)


GROUP = 32  # columns per group of the top-k prefilter


def _topk(sims: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_topk_exact`, after a cheap prefilter on wide blocks.

    ``argpartition`` over every column cost about half as much as the block's matmul. The
    columns are cut into groups of :data:`GROUP` (column ``c`` in group ``c % groups``); the
    ``m`` best values of a row lie in at most ``m`` groups, each with a maximum at least the
    ``m``-th best, so the ``m`` groups with the largest maxima hold them all. One elementwise
    max pass (SIMD, memory speed) and a partition over the group maxima leave ``m x GROUP``
    candidates for the exact ranking."""
    rows, n = sims.shape
    m = min(n, k + TIE_MARGIN)
    groups = n // GROUP
    if groups < 4 * m:  # narrow blocks: the exact pass is already cheap
        return _topk_exact(sims, k)
    gmax = sims[:, :groups * GROUP].reshape(rows, GROUP, groups).max(axis=1)
    best = np.argpartition(gmax, groups - m, axis=1)[:, groups - m:]
    cand = (best[:, :, None] + groups * np.arange(GROUP)[None, None, :]).reshape(rows, -1)
    tail = np.arange(groups * GROUP, n)                  # the n % GROUP columns in no group
    cand = np.concatenate([cand, np.broadcast_to(tail, (rows, len(tail)))], axis=1)
    cand.sort(axis=1)  # candidate order = column order, so ties still break by index
    idx, vals = _topk_exact(np.take_along_axis(sims, cand, axis=1), k)
    return np.take_along_axis(cand, idx, axis=1), vals


def scan(embeddings: np.ndarray, k: int = 5, duplicate_threshold: float = 0.98,
         groups: np.ndarray | None = None, leakage_threshold: float = 0.95,
         rows: int | None = None, max_pairs: int = 10_000) -> Scan:
    """Nearest neighbours, near-duplicate pairs and cross-group pairs, block by block."""
    e = normalize(embeddings)
    n = len(e)
    k = max(0, min(k, n - 1))
    rows = rows or block_rows(n)
    nbr = np.zeros((n, k), np.int64)
    nsim = np.zeros((n, k), np.float32)
    dups = Pairs(duplicate_threshold, max_pairs)
    leak = Pairs(leakage_threshold, max_pairs) if groups is not None else None
    if groups is not None:  # small integer codes: cheap to compare block-wide
        groups = np.unique(np.asarray(groups), return_inverse=True)[1].astype(np.int32)
    progress = Progress(n, "similarity", "img", log)
    pair_floor = min(duplicate_threshold, leakage_threshold if leak is not None else np.inf)
    for start in range(0, n, rows):
        STOP.check()
        stop = min(n, start + rows)
        sims = e[start:stop] @ e.T                       # (rows, n): the only big buffer
        local = np.arange(stop - start)
        sims[local, start + local] = -np.inf             # an image is not its own neighbour
        if k:
            nbr[start:stop], nsim[start:stop] = _topk(sims, k)
        # One pass finds every pair above the lower threshold; the per-pair tests (i < j,
        # which threshold, across groups) then run on those few pairs, not on the block.
        # Rows whose best other image is below the floor hold no pair: skip them.
        best = nsim[start:stop, 0] if k else sims.max(axis=1)
        hit = np.flatnonzero(best >= pair_floor)
        r, c = np.nonzero(sims[hit] >= pair_floor)
        v = sims[hit[r], c]
        r = hit[r] + start
        upper = c > r                                    # each pair once (i < j)
        r, c, v = r[upper], c[upper], v[upper]
        d = v >= duplicate_threshold
        dups.add(r[d], c[d], v[d])
        if leak is not None and groups is not None:
            x = (v >= leakage_threshold) & (groups[r] != groups[c])
            leak.add(r[x], c[x], v[x])
        del sims
        progress.update(stop - start)
    progress.close()
    dups.trim()
    if leak is not None:
        leak.trim()
    return Scan(nbr, nsim, dups, leak)


def sample_per_class(labels: list[str | None], per_class: int) -> list[int]:
    """Indices of the first ``per_class`` images of each label, labels in sorted order."""
    chosen: dict[str, list[int]] = {}
    for i, label in enumerate(labels):
        group = chosen.setdefault(label or "?", [])
        if len(group) < per_class:
            group.append(i)
    return [i for label in sorted(chosen) for i in chosen[label]]


def matrix_figure(embeddings: np.ndarray, names: list[str]) -> bytes:
    """A cosine-similarity heatmap with every row and column labelled by ``names``."""
    from headstart.shared.report.plots import _png, plt

    e = normalize(embeddings)
    sim = e @ e.T
    n = len(names)
    size = max(4.0, 0.35 * n + 2.5)
    fig, ax = plt.subplots(figsize=(size, size * 0.9))
    im = ax.imshow(sim, cmap="viridis", vmin=min(0.0, float(sim.min())), vmax=1.0)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="cosine similarity")
    ax.set_xticks(range(n), names, rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(n), names, fontsize=7)
    ax.set_title("embedding cosine similarity (pooled backbone features)")
    if n <= 24:
        for i in range(n):
            for j in range(n):
                ax.text(j, i, f"{sim[i, j]:.2f}", ha="center", va="center", fontsize=6,
                        color="black" if sim[i, j] > 0.7 else "white")
    return _png(fig)
