"""The nearest-class-mean head for few images a label: centred, L2-normalised pooled features.

With a handful of images per label a fitted head's regularisation is chosen by a very noisy
cross-validation, while the class mean (prototype) is the low-variance estimate: features
are centred on the training mean and scaled to unit length, and an image goes to the label
whose mean is nearest in Euclidean distance (as in few-shot classification's "SimpleShot").
That is a linear layer on the normalised features: logits ``s * (f . mu_c - |mu_c|^2 / 2)``,
``s`` a fixed scale (the run's temperature scaling then calibrates it). Measured on flowers5
and three subsets (10 seeds, k = 5 and 10 per label): +2.2 points over the CV-chosen linear
head on average, and never below it; at k = 20 it is no longer better (see
:data:`headstart.shared.model.selection.CENTROID_MAX_PER_LABEL`). Class weights and label
smoothing do not apply to it (a class mean has neither).
"""
from __future__ import annotations

import numpy as np

# Logit scale: unit-length features put the nearest-mean margins around 0.05-0.3.
CENTROID_SCALE = 16.0


def _normalised(x: np.ndarray, mean: np.ndarray) -> np.ndarray:
    z = np.asarray(x, np.float32) - mean
    return z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)


def fit_centroids(x: np.ndarray, y: np.ndarray, n_classes: int) -> list[np.ndarray]:
    """``[mean (d,), W (d, classes), b (classes,)]``: logits of features ``f`` are
    ``normalise(f - mean) @ W + b``. A label with no rows gets a zero mean (never nearest
    unless every mean is)."""
    mean = np.asarray(x, np.float32).mean(axis=0)
    z = _normalised(x, mean)
    mu = np.zeros((n_classes, z.shape[1]), np.float32)
    for c in range(n_classes):
        rows = y == c
        if rows.any():
            mu[c] = z[rows].mean(axis=0)
    w = (CENTROID_SCALE * mu.T).astype(np.float32)
    b = (-0.5 * CENTROID_SCALE * (mu * mu).sum(axis=1)).astype(np.float32)
    return [mean, w, b]


def centroid_probs(params: list[np.ndarray], x: np.ndarray) -> np.ndarray:
    """Softmax probabilities ``(n, classes)`` of :func:`fit_centroids`' head on features ``x``."""
    mean, w, b = params
    z = _normalised(x, mean) @ w + b
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def fold_score(probs: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(accuracy, mean log-loss) of probabilities ``(n, classes)`` against labels ``y``."""
    acc = float((probs.argmax(-1) == y).mean())
    nll = float(-np.log(np.clip(probs[np.arange(len(probs)), y], 1e-12, None)).mean())
    return acc, nll


def centroid_cv(x: np.ndarray, y: np.ndarray, fold: np.ndarray, eval_mask: np.ndarray, k: int,
                n_classes: int) -> tuple[list[tuple[float, float]], np.ndarray]:
    """Per fold (accuracy, log-loss) on the held-out fold's ``eval_mask`` rows, and the
    out-of-fold probabilities ``(n, classes)`` (zero outside ``eval_mask``)."""
    scores = []
    oof = np.zeros((len(y), n_classes), np.float32)
    for f in range(k):
        va = (fold == f) & eval_mask
        probs = centroid_probs(fit_centroids(x[fold != f], y[fold != f], n_classes), x[va])
        oof[va] = probs
        scores.append(fold_score(probs, y[va]))
    return scores, oof


def keras_layers(params: list[np.ndarray], n_classes: int) -> list:
    """The head after the pooling as built-in Keras layers (a saved model reloads anywhere):
    centre (``Normalization`` with unit variance), ``UnitNormalization``, ``Dense`` softmax."""
    import keras

    mean, w, b = params
    centre = keras.layers.Normalization(mean=mean, variance=np.ones_like(mean), name="head_centre")
    unit = keras.layers.UnitNormalization(axis=-1, name="head_unit")
    out = keras.layers.Dense(n_classes, activation="softmax", name="predictions")
    out.build((None, w.shape[0]))
    out.set_weights([w, b])
    return [centre, unit, out]
