"""Classification metrics against scikit-learn, plus top-k, most-confused and normalisation."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.metrics import (accuracy_score, confusion_matrix, f1_score,
                             precision_recall_fscore_support, top_k_accuracy_score)

from headstart.shared.report.metrics import (confusion, most_confused, per_class, row_normalize, summarize,
                            top_k_accuracy)

LABELS = ["ant", "bee", "cat", "dog", "eel"]


def random_case(seed: int, n: int = 60, k: int = len(LABELS)):
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k)) + 2.0 * np.eye(k)[y_true]
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return y_true, probs


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_confusion_matches_sklearn(seed):
    y_true, probs = random_case(seed)
    y_pred = probs.argmax(axis=1)
    got = confusion(y_true, y_pred, len(LABELS))
    np.testing.assert_array_equal(got, confusion_matrix(y_true, y_pred, labels=range(len(LABELS))))
    assert got.dtype == np.int64


def test_confusion_counts_repeated_cells():
    got = confusion(np.array([0, 0, 0, 1]), np.array([1, 1, 1, 1]), 3)
    np.testing.assert_array_equal(got, [[0, 3, 0], [0, 1, 0], [0, 0, 0]])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_per_class_matches_sklearn(seed):
    y_true, probs = random_case(seed)
    y_pred = probs.argmax(axis=1)
    rows = per_class(confusion(y_true, y_pred, len(LABELS)), LABELS)
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=range(len(LABELS)),
                                                 zero_division=0)
    assert [row["label"] for row in rows] == LABELS
    np.testing.assert_allclose([row["precision"] for row in rows], p)
    np.testing.assert_allclose([row["recall"] for row in rows], r)
    np.testing.assert_allclose([row["f1"] for row in rows], f)
    assert [row["support"] for row in rows] == s.tolist()


def test_per_class_with_never_predicted_and_absent_labels():
    # "cat" is never predicted; "eel" never occurs and is never predicted; "dog" is only predicted.
    y_true = np.array([0, 0, 1, 1, 2, 2, 0])
    y_pred = np.array([0, 1, 1, 3, 0, 1, 0])
    rows = per_class(confusion(y_true, y_pred, 5), LABELS)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=range(5), zero_division=0)
    np.testing.assert_allclose([row["precision"] for row in rows], p)
    np.testing.assert_allclose([row["recall"] for row in rows], r)
    np.testing.assert_allclose([row["f1"] for row in rows], f)
    assert rows[2] == {"label": "cat", "precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 2}
    assert rows[4]["support"] == 0 and rows[4]["f1"] == 0.0


@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_top_k_matches_sklearn(k):
    y_true, probs = random_case(3, n=80)
    expected = top_k_accuracy_score(y_true, probs, k=k, labels=range(len(LABELS)))
    assert top_k_accuracy(y_true, probs, k) == pytest.approx(expected)


def test_top_k_edge_cases():
    probs = np.array([[0.1, 0.2, 0.7], [0.5, 0.3, 0.2]])
    y = np.array([0, 2])
    assert top_k_accuracy(y, probs, 1) == 0.0
    assert top_k_accuracy(y, probs, 2) == 0.0
    assert top_k_accuracy(y, probs, 3) == 1.0
    assert top_k_accuracy(y, probs, 10) == 1.0  # k larger than classes: everything is in the top
    assert top_k_accuracy(np.array([], dtype=int), np.zeros((0, 3)), 1) == 0.0


def test_most_confused_orders_by_count_then_position():
    matrix = np.array([
        [5, 2, 0, 4],
        [3, 9, 2, 0],
        [0, 4, 1, 0],
        [1, 0, 0, 0],
    ])
    labels = ["a", "b", "c", "d"]
    rows = most_confused(matrix, labels)
    assert [(r["true"], r["predicted"], r["count"]) for r in rows] == [
        ("a", "d", 4), ("c", "b", 4), ("b", "a", 3), ("a", "b", 2), ("b", "c", 2), ("d", "a", 1)]
    assert rows[0]["rate"] == pytest.approx(4 / 11)
    assert rows[1]["rate"] == pytest.approx(4 / 5)
    assert rows[-1]["rate"] == pytest.approx(1.0)
    assert [r["count"] for r in most_confused(matrix, labels, top=2)] == [4, 4]
    assert most_confused(np.diag([3, 4]), ["x", "y"]) == []


def test_row_normalize_handles_empty_rows_without_warnings():
    matrix = np.array([[2, 2, 0], [0, 0, 0], [1, 0, 3]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        norm = row_normalize(matrix)
    np.testing.assert_allclose(norm, [[0.5, 0.5, 0], [0, 0, 0], [0.25, 0, 0.75]])
    assert norm.dtype == float
    np.testing.assert_allclose(row_normalize(np.zeros((2, 2), dtype=int)), np.zeros((2, 2)))


def test_summarize_matches_sklearn():
    y_true, probs = random_case(4, n=50)
    y_pred = probs.argmax(axis=1)
    out = summarize(y_true, probs, LABELS)
    assert out["n"] == 50
    assert out["accuracy"] == pytest.approx(accuracy_score(y_true, y_pred))
    assert set(out["top_k"]) == {"top_1", "top_3", "top_5"}
    assert out["top_k"]["top_1"] == pytest.approx(out["accuracy"])
    assert out["macro_f1"] == pytest.approx(f1_score(y_true, y_pred, average="macro", zero_division=0))
    assert out["weighted_f1"] == pytest.approx(f1_score(y_true, y_pred, average="weighted", zero_division=0))
    expected_nll = -np.mean(np.log(probs[np.arange(50), y_true]))
    assert out["loss"] == pytest.approx(expected_nll, rel=1e-6)
    assert out["confusion_matrix"] == confusion_matrix(y_true, y_pred).tolist()
    assert len(out["per_class"]) == len(LABELS)
    import json
    json.dumps(out)  # plain JSON types only


def test_summarize_two_classes_and_empty():
    out = summarize(np.array([0, 1]), np.array([[0.9, 0.1], [0.8, 0.2]]), ["a", "b"])
    assert set(out["top_k"]) == {"top_1"}
    assert out["accuracy"] == 0.5
    assert out["most_confused"] == [{"true": "b", "predicted": "a", "count": 1, "rate": 1.0}]
    empty = summarize(np.array([], dtype=int), np.zeros((0, 2)), ["a", "b"])
    assert empty["n"] == 0 and empty["accuracy"] == 0.0 and empty["loss"] == 0.0
    assert empty["macro_f1"] == 0.0 and empty["weighted_f1"] == 0.0
