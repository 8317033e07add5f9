"""Embedding similarity: blocked all-pairs scan, duplicates, leakage, embedder."""
from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from headstart.shared.explain.similarity import Pairs, block_rows, normalize, sample_per_class, scan  # noqa: E402


def _embeddings(n: int = 40, d: int = 16, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, d)).astype("float32")


def test_an_image_is_most_similar_to_itself() -> None:
    e = normalize(_embeddings())
    np.testing.assert_allclose(np.diag(e @ e.T), 1.0, atol=1e-5)
    result = scan(e, k=3)
    assert not (result.neighbours == np.arange(40)[:, None]).any()  # self is excluded
    assert (np.diff(result.similarities, axis=1) <= 1e-6).all()      # best first


def test_duplicates_found_once_per_pair() -> None:
    e = _embeddings()
    e[7] = e[3] * 2.5   # same direction: cosine 1
    e[30] = e[12] + 1e-4
    result = scan(e, k=2, duplicate_threshold=0.999)
    assert {(i, j) for i, j, _ in result.duplicates.items} == {(3, 7), (12, 30)}
    assert result.neighbours[3, 0] == 7 and result.similarities[3, 0] == pytest.approx(1.0, abs=1e-5)


def test_leakage_when_the_same_image_is_in_train_and_test() -> None:
    e = _embeddings()
    groups = np.asarray(["train"] * 30 + ["test"] * 10)
    e[35] = e[4]        # leaked across splits
    e[21] = e[20]       # a duplicate inside train: not leakage
    result = scan(e, groups=groups, duplicate_threshold=0.999, leakage_threshold=0.999)
    assert [(i, j) for i, j, _ in result.leakage.items] == [(4, 35)]
    assert {(i, j) for i, j, _ in result.duplicates.items} == {(4, 35), (20, 21)}
    assert scan(e).leakage is None


def test_blocks_give_the_same_answer_as_one_block() -> None:
    e = _embeddings(57)
    e[50] = e[2]
    whole = scan(e, k=4, duplicate_threshold=0.99, rows=57)
    for rows in (1, 5, 13):
        part = scan(e, k=4, duplicate_threshold=0.99, rows=rows)
        np.testing.assert_array_equal(part.neighbours, whole.neighbours)
        assert [p[:2] for p in part.duplicates.items] == [p[:2] for p in whole.duplicates.items]
        np.testing.assert_allclose(part.similarities, whole.similarities, atol=1e-5)


def test_block_memory_does_not_grow_as_n_squared() -> None:
    for n in (1_000, 50_000, 1_000_000):
        assert block_rows(n) * n * 4 <= 64 * 2**20
    assert block_rows(3) == 3


def test_pairs_keep_the_best_and_count_all() -> None:
    pairs = Pairs(0.5, limit=3)
    pairs.add(np.arange(10), np.arange(10) + 1, np.linspace(0.6, 0.9, 10))
    pairs.trim()
    assert pairs.total == 10 and [p[0] for p in pairs.items] == [9, 8, 7]


def test_sample_per_class() -> None:
    assert sample_per_class(["b", "a", "b", "a", "a", "b"], 2) == [1, 3, 0, 2]


def test_embedder_is_the_pooled_backbone_output(tmp_path) -> None:
    keras = pytest.importorskip("keras")
    from headstart.shared.model.backbones import build_backbone, get_info
    from headstart.shared.runtime.errors import UserError
    from headstart.shared.model.classifier import assemble
    from headstart.shared.explain.similarity import embedder

    clf = assemble(build_backbone("tiny", 32, "none"), get_info("tiny"), 32, 3, head_width=8)
    images = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    emb = np.asarray(embedder(clf.model)(images))
    expected = np.asarray(clf.backbone(images / 255.0)).mean(axis=(1, 2))
    np.testing.assert_allclose(emb, expected, atol=1e-4)
    with pytest.raises(UserError, match="head_pool"):
        embedder(keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]))


def test_tied_neighbours_come_back_in_index_order_whatever_the_noise() -> None:
    """Ties within a few ulps (how BLAS returns them for other block shapes) order by index."""
    from headstart.shared.explain.similarity import _topk

    sims = np.array([[-np.inf, 0.5, 0.9, 0.9 + 3e-7, 0.1, 0.9 - 2e-7]], np.float32)
    idx, vals = _topk(sims, 3)
    assert idx.tolist() == [[2, 3, 5]] and vals.shape == (1, 3)
    flipped = np.array([[-np.inf, 0.5, 0.9 + 3e-7, 0.9, 0.1, 0.9 - 2e-7]], np.float32)
    assert _topk(flipped, 3)[0].tolist() == [[2, 3, 5]]
    # a tie at the k-th place: the lower index wins, not whichever argpartition kept
    assert _topk(np.array([[0.3, 0.8, 0.5, 0.5, 0.5]], np.float32), 2)[0].tolist() == [[1, 2]]
    pairs = Pairs(0.5, limit=2)
    pairs.add(np.array([7, 1, 3]), np.array([8, 9, 4]), np.array([0.99, 0.99 + 1e-7, 0.99 - 1e-7]))
    pairs.trim()
    assert [p[:2] for p in pairs.items] == [(1, 9), (3, 4)]


def test_prefiltered_topk_matches_the_exact_one_on_wide_blocks() -> None:
    """The group-max prefilter keeps every top-k candidate: same neighbours as a full pass,
    with planted ties (also across groups) and a width that is not a multiple of the group."""
    from headstart.shared.explain.similarity import GROUP, _topk, _topk_exact

    rng = np.random.default_rng(1)
    sims = rng.uniform(-1, 1, (40, GROUP * 60 + 7)).astype(np.float32)
    sims[:, 5] = sims[:, 5 + 60] = sims[:, -1] = 0.999   # exact ties in one group and the tail
    sims[3, :] = 0.25                                     # a row of nothing but ties
    sims[7, ::97] = np.linspace(0.9, 0.95, len(sims[7, ::97]))
    for k in (1, 5, 12):
        idx, vals = _topk(sims, k)
        ref_idx, ref_vals = _topk_exact(sims, k)
        np.testing.assert_array_equal(vals, ref_vals)
        # Row 3 ties more columns than the margin: any of them is right (in both versions).
        np.testing.assert_array_equal(np.delete(idx, 3, axis=0), np.delete(ref_idx, 3, axis=0))
        assert (np.diff(idx[3]) > 0).all() and (sims[3, idx[3]] == 0.25).all()


def test_scan_finds_pairs_only_in_rows_that_hold_one() -> None:
    """The row prefilter for pairs (best neighbour below the floor: skipped) loses none."""
    e = _embeddings(3000, 8, seed=3)
    e[2999] = e[10]
    e[1500] = e[1501] * 3
    for k in (0, 3):
        result = scan(e, k=k, duplicate_threshold=0.9999, rows=700)
        assert {(i, j) for i, j, _ in result.duplicates.items} == {(10, 2999), (1500, 1501)}
