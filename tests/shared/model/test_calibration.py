"""Temperature scaling, ECE and the reliability diagram on synthetic, known-answer data."""
from __future__ import annotations

import numpy as np
import pytest

from headstart.shared.model import calibration as cal


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _calibrated_task(n: int = 4000, k: int = 5, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Logits whose softmax is the true label distribution (perfectly calibrated), and labels
    drawn from it."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 1.5, (n, k))
    p = _softmax(z)
    labels = np.array([rng.choice(k, p=row) for row in p])
    return z, labels


@pytest.mark.parametrize("true_t", [0.5, 2.0, 3.0])
def test_fit_recovers_the_distortion(true_t: float) -> None:
    z, labels = _calibrated_task()
    distorted = _softmax(z / true_t)  # over- (t<1) or under-confident copy
    t = cal.fit_temperature(distorted, labels)
    assert t == pytest.approx(1 / true_t, rel=0.12)
    fitted = cal.fit(distorted, labels)
    assert fitted.ece_after < fitted.ece_before and fitted.nll_after < fitted.nll_before
    after = fitted.apply(distorted)
    assert np.array_equal(after.argmax(1), distorted.argmax(1))  # accuracy untouched
    assert np.allclose(after.sum(1), 1, atol=1e-5)


def test_identity_and_roundtrip() -> None:
    z, labels = _calibrated_task(500)
    p = _softmax(z).astype(np.float32)
    assert np.allclose(cal.apply_temperature(p, 1.0), p, atol=1e-6)
    assert cal.Calibration().apply(p) is not None and np.allclose(cal.Calibration().apply(p), p)
    fitted = cal.fit(p, labels)
    back = cal.Calibration.from_json(fitted.to_json())
    assert back == fitted and abs(back.temperature - 1) < 0.25
    with pytest.raises(ValueError, match="unknown calibration method"):
        cal.Calibration.from_json('{"method": "platt"}')


def test_ece_known_values() -> None:
    # 10 images at confidence 0.9, 6 right: |0.6 - 0.9| = 0.3.
    p = np.tile([[0.9, 0.1]], (10, 1))
    labels = np.array([0] * 6 + [1] * 4)
    assert cal.ece(p, labels) == pytest.approx(0.3)
    bins = cal.reliability_bins(p, labels)
    assert sum(bins["count"]) == 10 and bins["count"][13] == 10  # 0.9 falls in (13/15, 14/15]
    # exactly 1.0 goes to the last bin, not off the end
    assert cal.reliability_bins(np.array([[1.0, 0.0]]), np.array([0]))["count"][-1] == 1
    assert cal.ece(np.zeros((0, 3)), np.zeros(0, int)) == 0.0


def test_hard_zeros_and_bounds() -> None:
    # Perfectly separated, one-hot outputs: the fit stays inside the bounds and finite.
    p = np.eye(3)[[0, 1, 2, 0]]
    t = cal.fit_temperature(p, np.array([0, 1, 2, 0]))
    assert cal.T_MIN <= t <= cal.T_MAX and np.isfinite(cal.apply_temperature(p, t)).all()
    assert cal.fit_temperature(p[:0], np.zeros(0, int)) == 1.0


def test_reliability_png_and_summary() -> None:
    z, labels = _calibrated_task(300)
    p = _softmax(z * 3)
    fitted = cal.fit(p, labels)
    png = cal.reliability_png(p, labels, fitted, "valid")
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    doc = cal.summary(p, labels, fitted)
    assert doc["ece_after"] < doc["ece_before"] and sum(doc["reliability_after"]["count"]) == 300
