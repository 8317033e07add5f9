"""Confidence calibration: temperature scaling, expected calibration error, reliability diagram.

The saved model ends in a softmax, so its logits are ``log p`` up to a per-row constant, and
softmax is shift-invariant: ``softmax(log(p) / T)`` is exactly temperature scaling of the
logits. One scalar ``T`` is fitted on the validation split by minimising the negative
log-likelihood (``T > 1`` softens an over-confident model, ``T < 1`` sharpens); it never
changes the arg-max, so accuracy is untouched. The record lives in a train run as
``calibration.json`` and predict/evaluate apply it.
"""
from __future__ import annotations

import io
import json
import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

CALIBRATION_FILE = "calibration.json"
BINS = 15
T_MIN, T_MAX = 0.05, 20.0   # search bounds: a handful of validation images cannot push T to 0 or inf
_EPS = 1e-12


def log_probs(probs: np.ndarray) -> np.ndarray:
    """``log p`` as float64, clipped so a hard 0 stays finite."""
    return np.log(np.clip(np.asarray(probs, dtype=np.float64), _EPS, 1.0))


def apply_temperature(probs: np.ndarray, temperature: float) -> np.ndarray:
    """``softmax(log(probs) / temperature)`` row by row (float32, rows sum to 1)."""
    z = log_probs(probs) / float(temperature)
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def nll(probs: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of ``labels`` under the tempered probabilities."""
    z = log_probs(probs) / float(temperature)
    z -= z.max(axis=1, keepdims=True)
    logz = np.log(np.exp(z).sum(axis=1))
    return float(np.mean(logz - z[np.arange(len(labels)), labels]))


def fit_temperature(probs: np.ndarray, labels: np.ndarray) -> float:
    """The temperature in [T_MIN, T_MAX] minimising :func:`nll`.

    The NLL is convex in ``1/T``; a coarse log-spaced grid finds the basin (robust to the flat
    tails of a tiny or perfectly separated split) and golden-section search refines it.
    """
    labels = np.asarray(labels, dtype=np.int64)
    if len(labels) == 0:
        return 1.0
    grid = np.linspace(math.log(T_MIN), math.log(T_MAX), 61)
    values = [nll(probs, labels, math.exp(g)) for g in grid]
    i = int(np.argmin(values))
    lo, hi = grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)]
    phi = (math.sqrt(5) - 1) / 2
    a, b = hi - phi * (hi - lo), lo + phi * (hi - lo)
    fa, fb = nll(probs, labels, math.exp(a)), nll(probs, labels, math.exp(b))
    for _ in range(40):
        if fa < fb:
            hi, b, fb = b, a, fa
            a = hi - phi * (hi - lo)
            fa = nll(probs, labels, math.exp(a))
        else:
            lo, a, fa = a, b, fb
            b = lo + phi * (hi - lo)
            fb = nll(probs, labels, math.exp(b))
    return float(math.exp((lo + hi) / 2))


def reliability_bins(probs: np.ndarray, labels: np.ndarray, bins: int = BINS) -> dict[str, list]:
    """Equal-width bins of top-1 confidence: mean confidence, accuracy and count per bin."""
    probs = np.asarray(probs)
    conf = probs.max(axis=1) if len(probs) else np.zeros(0)
    correct = (probs.argmax(axis=1) == np.asarray(labels)) if len(probs) else np.zeros(0, bool)
    # Bin i holds (i/B, (i+1)/B]; confidence 0 cannot occur (top-1 >= 1/classes).
    idx = np.clip(np.ceil(conf * bins).astype(int) - 1, 0, bins - 1)
    count = np.bincount(idx, minlength=bins)
    conf_sum = np.bincount(idx, weights=conf, minlength=bins)
    acc_sum = np.bincount(idx, weights=correct.astype(float), minlength=bins)
    safe = np.maximum(count, 1)
    return {"count": count.tolist(), "confidence": (conf_sum / safe).tolist(),
            "accuracy": (acc_sum / safe).tolist()}


def ece(probs: np.ndarray, labels: np.ndarray, bins: int = BINS) -> float:
    """Expected calibration error: sum over bins of (share of images) x |accuracy - confidence|."""
    r = reliability_bins(probs, labels, bins)
    n = max(sum(r["count"]), 1)
    return float(sum(c / n * abs(a - f) for c, a, f in zip(r["count"], r["accuracy"], r["confidence"])))


@dataclass(frozen=True)
class Calibration:
    """A fitted temperature and the evidence for it (measured on ``fitted_on``)."""

    temperature: float = 1.0
    fitted_on: str = "none"
    n: int = 0
    nll_before: float | None = None
    nll_after: float | None = None
    ece_before: float | None = None
    ece_after: float | None = None
    method: str = "temperature"
    bins: int = BINS

    def apply(self, probs: np.ndarray) -> np.ndarray:
        """Calibrated probabilities (identity when ``temperature == 1``)."""
        return np.asarray(probs, np.float32) if self.temperature == 1.0 else apply_temperature(probs, self.temperature)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Calibration:
        doc = json.loads(text)
        if doc.get("method", "temperature") != "temperature":
            raise ValueError(f"unknown calibration method {doc.get('method')!r}")
        known = {k: doc[k] for k in cls.__dataclass_fields__ if k in doc}
        return cls(**known)


def fit(probs: np.ndarray, labels: np.ndarray, split: str = "valid") -> Calibration:
    """Fit temperature scaling on ``(probs, labels)`` and record NLL/ECE before and after."""
    labels = np.asarray(labels, dtype=np.int64)
    t = fit_temperature(probs, labels)
    after = apply_temperature(probs, t)
    return Calibration(temperature=round(t, 6), fitted_on=split, n=int(len(labels)),
                       nll_before=nll(probs, labels), nll_after=nll(probs, labels, t),
                       ece_before=ece(probs, labels), ece_after=ece(after, labels))


def summary(probs: np.ndarray, labels: np.ndarray, calibration: Calibration) -> dict[str, Any]:
    """ECE and NLL of ``probs`` before and after ``calibration`` (for metrics.json)."""
    after = calibration.apply(probs)
    return {"temperature": calibration.temperature, "fitted_on": calibration.fitted_on,
            "ece_before": ece(probs, labels), "ece_after": ece(after, labels),
            "nll_before": nll(probs, labels), "nll_after": nll(after, labels), "bins": BINS,
            "reliability_before": reliability_bins(probs, labels),
            "reliability_after": reliability_bins(after, labels)}


def reliability_png(probs: np.ndarray, labels: np.ndarray, calibration: Calibration,
                    title: str = "") -> bytes:
    """Reliability diagram (accuracy vs confidence per bin) before and after calibration."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    after = calibration.apply(probs)
    fig, axes = plt.subplots(1, 2, figsize=(9, 4.2), sharey=True)
    edges = np.linspace(0, 1, BINS + 1)
    for ax, p, name in ((axes[0], probs, "before"), (axes[1], after, f"after (T={calibration.temperature:.3g})")):
        r = reliability_bins(p, labels)
        used = np.asarray(r["count"]) > 0
        ax.bar(edges[:-1][used], np.asarray(r["accuracy"])[used], width=1 / BINS, align="edge",
               edgecolor="black", color="#4c72b0", label="accuracy")
        ax.plot([0, 1], [0, 1], "--", color="grey", label="perfect calibration")
        ax.plot(np.asarray(r["confidence"])[used], np.asarray(r["accuracy"])[used], "o", color="#dd8452",
                label="mean confidence")
        ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence (top-1)",
               title=f"{name}: ECE {ece(p, labels):.3f}")
        ax.legend(loc="upper left", fontsize=8)
    axes[0].set_ylabel("accuracy")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return buf.getvalue()
