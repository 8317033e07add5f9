"""Classification metrics from predicted probabilities (plain numpy, no extra dependency)."""
from __future__ import annotations

from typing import Any

import numpy as np


def confusion(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Counts: rows are true labels, columns predicted labels."""
    matrix = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(matrix, (y_true, y_pred), 1)
    return matrix


def row_normalize(matrix: np.ndarray) -> np.ndarray:
    sums = matrix.sum(axis=1, keepdims=True)
    return np.divide(matrix, sums, out=np.zeros(matrix.shape, dtype=float), where=sums > 0)


def top_k_accuracy(y_true: np.ndarray, probs: np.ndarray, k: int) -> float:
    if len(y_true) == 0:
        return 0.0
    k = min(k, probs.shape[1])
    top = np.argsort(-probs, axis=1)[:, :k]
    return float(np.mean(np.any(top == y_true[:, None], axis=1)))


def per_class(matrix: np.ndarray, labels: list[str]) -> list[dict[str, Any]]:
    """Precision, recall, F1 and support per label."""
    rows = []
    for i, label in enumerate(labels):
        tp = float(matrix[i, i])
        predicted = float(matrix[:, i].sum())
        support = int(matrix[i, :].sum())
        precision = tp / predicted if predicted else 0.0
        recall = tp / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        rows.append({"label": label, "precision": precision, "recall": recall, "f1": f1,
                     "support": support})
    return rows


def most_confused(matrix: np.ndarray, labels: list[str], top: int = 10) -> list[dict[str, Any]]:
    """The largest off-diagonal cells: (true, predicted, count, share of the true label)."""
    norm = row_normalize(matrix)
    cells = [(int(matrix[i, j]), i, j) for i in range(len(labels)) for j in range(len(labels))
             if i != j and matrix[i, j] > 0]
    cells.sort(key=lambda c: (-c[0], c[1], c[2]))
    return [{"true": labels[i], "predicted": labels[j], "count": n, "rate": float(norm[i, j])}
            for n, i, j in cells[:top]]


def summarize(y_true: np.ndarray, probs: np.ndarray, labels: list[str]) -> dict[str, Any]:
    """Accuracy, top-k, macro/weighted F1, per-class metrics and the confusion matrix."""
    y_pred = np.argmax(probs, axis=1)
    matrix = confusion(y_true, y_pred, len(labels))
    rows = per_class(matrix, labels)
    support = np.array([r["support"] for r in rows], dtype=float)
    f1 = np.array([r["f1"] for r in rows])
    eps = 1e-12
    nll = float(-np.mean(np.log(probs[np.arange(len(y_true)), y_true] + eps))) if len(y_true) else 0.0
    return {
        "n": int(len(y_true)),
        "accuracy": float(np.mean(y_pred == y_true)) if len(y_true) else 0.0,
        "top_k": {f"top_{k}": top_k_accuracy(y_true, probs, k)
                  for k in (1, 3, 5) if k <= len(labels)},
        "loss": nll,
        "macro_f1": float(f1.mean()) if len(f1) else 0.0,
        "weighted_f1": float((f1 * support).sum() / support.sum()) if support.sum() else 0.0,
        "per_class": rows,
        "confusion_matrix": matrix.tolist(),
        "most_confused": most_confused(matrix, labels),
    }
