"""Audit findings on synthetic embeddings: confident learning finds flips; outliers; duplicates."""
from __future__ import annotations

import numpy as np
import pytest

from headstart.shared.audit.findings import (balance, duplicates, label_issues, neighbour_votes,
                                            outlier_scores, similarity_scan)
from headstart.shared.explain.similarity import normalize

pytest.importorskip("cleanlab")


def _data(n_per: int = 40, classes: int = 3, d: int = 16, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 3, (classes, d))
    x = np.concatenate([c + rng.normal(0, 1, (n_per, d)) for c in centres]).astype("float32")
    return x, np.repeat(np.arange(classes), n_per)


def test_flipped_labels_are_found_with_the_true_label_suggested():
    x, y = _data()
    noisy = y.copy()
    flipped = np.array([3, 50, 90, 100, 7, 61])
    noisy[flipped] = (y[flipped] + 1) % 3
    nbrs = similarity_scan(normalize(x), ["train"] * len(x), 0.99, 0.99).neighbours
    found = label_issues(x, noisy, 3, seed=0, folds=4, neighbours=nbrs)
    flagged = set(np.flatnonzero(found.flagged))
    # well-separated clusters: every flip found, at most two false alarms
    assert set(flipped) <= flagged and len(flagged - set(flipped)) <= 2
    assert found.threshold == pytest.approx(0.2) and "15 nearest neighbours" in found.probe
    np.testing.assert_array_equal(found.suggested[flipped], y[flipped])
    assert found.score[flipped].min() > np.median(found.score)
    assert "4-fold" in found.probe


def test_off_topic_images_stand_out_even_when_alike_each_other():
    x, y = _data(n_per=60)
    rng = np.random.default_rng(1)
    foreign = rng.normal(0, 0.1, (6, x.shape[1])).astype("float32") + 8.0  # a tight cluster far away
    xa = np.concatenate([x, foreign])
    ya = np.concatenate([y, [0, 0, 1, 1, 2, 2]])
    score, flagged = outlier_scores(normalize(xa), ya, mads=4.0)
    assert flagged[-6:].all() and flagged[:-6].sum() <= 3
    assert score[-6:].min() > np.percentile(score[:-6], 95)


def test_duplicates_sorted_into_within_conflict_and_leakage():
    x, y = _data(n_per=5)
    xd = np.concatenate([x, x[[0]], x[[1]], x[[2]]])
    yd = np.concatenate([y, [0, 1, 0]])
    splits = ["train"] * len(x) + ["train", "train", "test"]
    found = duplicates(normalize(xd), yd, splits, 0.9999, 0.9999)
    n = len(x)
    assert (0, n, pytest.approx(1.0, abs=1e-4)) in [(a, b, s) for a, b, s in found.within]
    assert any({a, b} == {1, n + 1} for a, b, _ in found.conflicts)
    assert any({a, b} == {2, n + 2} for a, b, _ in found.leakage)


def test_balance_names_small_labels():
    out = balance({"a": 100, "b": 90, "c": 10})
    assert out["underrepresented"] == ["c"] and out["max_min_ratio"] == 10.0


def test_min_given_prob_adds_images_the_probes_are_sure_about():
    x, y = _data()
    noisy = y.copy()
    flipped = np.array([3, 50, 90, 100, 7, 61])
    noisy[flipped] = (y[flipped] + 1) % 3
    plain = label_issues(x, noisy, 3, seed=0, folds=4)
    wider = label_issues(x, noisy, 3, seed=0, folds=4, min_given_prob=0.5)
    assert (wider.flagged >= plain.flagged).all()
    assert set(flipped) <= set(np.flatnonzero(wider.flagged))


def test_neighbour_votes_are_the_neighbours_labels_smoothed():
    y = np.array([0, 0, 1, 1])
    votes = neighbour_votes(np.array([[1, 2], [0, 2], [3, 0], [2, 1]]), y, 3)
    np.testing.assert_allclose(votes[0], np.array([1.5, 1.5, 0.5]) / 3.5)
    np.testing.assert_allclose(votes.sum(1), 1.0)
    assert votes[2].argmax() == 0 and votes[2, 2] > 0  # an absent label keeps a little mass


def test_confident_learning_rule_adds_to_the_threshold_rule_and_bad_rules_are_refused():
    from headstart.shared.runtime.errors import UserError

    x, y = _data()
    noisy = y.copy()
    flipped = np.array([3, 50, 90, 100, 7, 61])
    noisy[flipped] = (y[flipped] + 1) % 3
    # a threshold so low it flags almost nothing: confident learning finds the flips anyway
    plain = label_issues(x, noisy, 3, seed=0, folds=4, repeats=1, min_given_prob=1e-6)
    both = label_issues(x, noisy, 3, seed=0, folds=4, repeats=1, min_given_prob=1e-6, rule="confident_learning")
    assert (both.flagged >= plain.flagged).all() and both.flagged.sum() > plain.flagged.sum()
    assert len(set(np.flatnonzero(both.flagged)) & set(flipped)) >= 3
    with pytest.raises(UserError, match="label rule"):
        label_issues(x, y, 3, seed=0, folds=4, rule="vote")
