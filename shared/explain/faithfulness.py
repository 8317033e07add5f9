"""Is a heatmap faithful to the model? Deletion and insertion curves against two controls.

RISE-style (Petsiuk et al. 2018): rank each image's pixels by the heatmap, then

* **deletion**: blur the top ``f`` of them for ``f`` from 0 to 1 and follow the target-class
  probability; a faithful map makes it fall fast (low area under the curve);
* **insertion**: start from the blurred image and restore the top ``f``; a faithful map makes
  it rise fast (high area).

Two controls get the same treatment: the mean over ``random_maps`` random maps of the
heatmap's granularity (noise at feature-map resolution, upsampled the same way) and a
model-free **centre prior** (a centred Gaussian: photos tend to have their subject in the
middle, so a map that only finds "the middle" is not evidence of faithfulness). A map is
faithful when it beats both on both curves, with a confidence interval over images that
excludes zero (:func:`summarize`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from headstart.shared.explain.gradcam import upsample

Predict = Callable[[np.ndarray], np.ndarray]  # float32 images (n, H, W, 3) -> probs (n, K)

STEPS = 8            # points on each curve besides 0 and 1
RANDOM_MAPS = 3      # random maps averaged for the random control
CONTROLS = ("random", "centre")
# A margin must clear this (AUC units: probability x masked share) to count as beating a
# control: a model whose output ignores the image gives margins of float noise, not evidence.
MIN_MARGIN = 1e-3


@dataclass
class Faithfulness:
    """Per-image results; every array has shape (n,)."""

    drop_top: np.ndarray      # probability drop when the map's top ``fraction`` is blurred
    drop_random: np.ndarray   # the same, mean over the random maps
    drop_centre: np.ndarray   # the same for the centre prior
    score: np.ndarray         # drop_top - drop_random (the single-point score)
    deletion: dict[str, np.ndarray] = field(default_factory=dict)   # "map"|"random"|"centre" -> AUC
    insertion: dict[str, np.ndarray] = field(default_factory=dict)  # the same, insertion AUC


def blur(images: np.ndarray, factor: int = 8) -> np.ndarray:
    """A strong blur that removes detail but keeps colour: area-downsample, bilinear-upsample."""
    import tensorflow as tf

    h, w = images.shape[1:3]
    small = tf.image.resize(images, (max(1, h // factor), max(1, w // factor)), "area")
    return np.asarray(tf.image.resize(small, (h, w), "bilinear"), np.float32)


def top_mask(maps: np.ndarray, fraction: float) -> np.ndarray:
    """Boolean (n, H, W): exactly the top ``fraction`` of each map's pixels (ties by order)."""
    n, h, w = maps.shape
    k = int(round(fraction * h * w))
    mask = np.zeros((n, h * w), dtype=bool)
    if k <= 0:
        return mask.reshape(n, h, w)
    flat = maps.reshape(n, -1)
    idx = np.argpartition(-flat, min(k, h * w) - 1, axis=1)[:, :k]
    np.put_along_axis(mask, idx, True, axis=1)
    return mask.reshape(n, h, w)


def centre_prior(n: int, h: int, w: int, sigma: float = 0.25) -> np.ndarray:
    """(n, h, w) centred Gaussian maps (``sigma`` as a share of the side): the model-free control."""
    ys = (np.arange(h, dtype=np.float32) + 0.5) / h - 0.5
    xs = (np.arange(w, dtype=np.float32) + 0.5) / w - 0.5
    blob = np.exp(-(ys[:, None] ** 2 + xs[None, :] ** 2) / (2 * sigma ** 2))
    return np.broadcast_to(blob, (n, h, w)).astype(np.float32)


def _target_probs(predict: Predict, images: np.ndarray, targets: np.ndarray) -> np.ndarray:
    return predict(images)[np.arange(len(targets)), targets]


def _auc(fractions: np.ndarray, curve: np.ndarray) -> np.ndarray:
    """Trapezoid area under (n, F) curves over ``fractions`` in [0, 1]."""
    return np.sum((curve[:, 1:] + curve[:, :-1]) / 2 * np.diff(fractions)[None, :], axis=1)


def _curves(predict: Predict, images: np.ndarray, blurred: np.ndarray, ranking: np.ndarray,
            targets: np.ndarray, fractions: np.ndarray, ends: tuple[np.ndarray, np.ndarray]
            ) -> tuple[np.ndarray, np.ndarray]:
    """(deletion, insertion) curves (n, F) for one ranking map per image."""
    base, floor = ends
    deletion = np.empty((len(images), len(fractions)), np.float32)
    insertion = np.empty_like(deletion)
    for j, f in enumerate(fractions):
        if f <= 0 or f >= 1:  # the ends are the same for every map: no forward pass
            deletion[:, j], insertion[:, j] = (base, floor) if f <= 0 else (floor, base)
            continue
        mask = top_mask(ranking, float(f))[..., None]
        deletion[:, j] = _target_probs(predict, np.where(mask, blurred, images), targets)
        insertion[:, j] = _target_probs(predict, np.where(mask, images, blurred), targets)
    return deletion, insertion


def faithfulness(predict: Predict, images: np.ndarray, heatmaps: np.ndarray, targets: np.ndarray,
                 base_probs: np.ndarray, fraction: float = 0.2, seed: int = 0,
                 steps: int = STEPS, random_maps: int = RANDOM_MAPS) -> Faithfulness:
    """Deletion/insertion AUCs of ``heatmaps`` and of both controls, and the drops at ``fraction``.

    ``heatmaps`` are at feature-map resolution; ``base_probs`` are the unmasked target-class
    probabilities. Cost: about ``2 * (steps + 1) * (2 + random_maps)`` forward passes per image.
    """
    images = np.asarray(images, np.float32)
    targets = np.asarray(targets)
    n, h, w = images.shape[:3]
    blurred = blur(images)
    fractions = np.unique(np.concatenate([np.linspace(0, 1, steps + 2), [fraction]]))
    at = int(np.flatnonzero(np.isclose(fractions, fraction))[0])
    ends = (np.asarray(base_probs, np.float32), _target_probs(predict, blurred, targets))
    rng = np.random.default_rng(seed)
    rankings: dict[str, list[np.ndarray]] = {
        "map": [upsample(heatmaps, h, w)],
        "random": [upsample(rng.random(heatmaps.shape, dtype=np.float32), h, w)
                   for _ in range(max(1, random_maps))],
        "centre": [centre_prior(n, h, w)],
    }
    deletion, insertion, drops = {}, {}, {}
    for name, maps in rankings.items():
        curves = [_curves(predict, images, blurred, m, targets, fractions, ends) for m in maps]
        dele = np.mean([c[0] for c in curves], axis=0)
        ins = np.mean([c[1] for c in curves], axis=0)
        deletion[name], insertion[name] = _auc(fractions, dele), _auc(fractions, ins)
        drops[name] = ends[0] - dele[:, at]
    f32 = lambda a: np.asarray(a, np.float32)  # noqa: E731
    return Faithfulness(f32(drops["map"]), f32(drops["random"]), f32(drops["centre"]),
                        f32(drops["map"] - drops["random"]),
                        {k: f32(v) for k, v in deletion.items()}, {k: f32(v) for k, v in insertion.items()})


def mean_ci(values: np.ndarray, seed: int = 0, resamples: int = 2000) -> tuple[float, float, float]:
    """(mean, low, high): the mean with a 95% bootstrap confidence interval over images."""
    values = np.asarray(values, np.float64)
    if values.size == 0:
        return float("nan"), float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, values.size, (resamples, values.size))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(values.mean()), float(low), float(high)


def summarize(deletion: dict[str, np.ndarray], insertion: dict[str, np.ndarray]) -> dict[str, Any]:
    """AUCs and the map's margin over each control with 95% CIs, and the verdict.

    Margins are oriented so that positive is better: ``control - map`` for deletion (lower
    is better), ``map - control`` for insertion. ``beats_controls`` holds when every
    margin's interval lies above zero (above :data:`MIN_MARGIN`).
    """
    doc: dict[str, Any] = {"images": int(len(deletion["map"])), "auc": {}, "margin": {}}
    for curve, aucs in (("deletion", deletion), ("insertion", insertion)):
        doc["auc"][curve] = {k: round(float(np.mean(v)), 4) for k, v in aucs.items()}
        for control in CONTROLS:
            diff = aucs[control] - aucs["map"] if curve == "deletion" else aucs["map"] - aucs[control]
            mean, low, high = mean_ci(diff)
            doc["margin"][f"{curve}_vs_{control}"] = {"mean": round(mean, 4), "low": round(low, 4),
                                                      "high": round(high, 4),
                                                      "beats": bool(low > MIN_MARGIN)}
    doc["beats_controls"] = all(m["beats"] for m in doc["margin"].values())
    return doc


def verdict(doc: dict[str, Any]) -> str:
    """One sentence for the report: does the map beat both controls?"""
    lost = [k.replace("_vs_", " vs ") for k, m in doc["margin"].items() if not m["beats"]]
    if not lost:
        return ("The maps beat both controls (random maps and a centred blob) on deletion and "
                "insertion: every 95% interval lies above zero.")
    return ("The maps do not clearly beat the controls on " + ", ".join(lost)
            + " (the 95% interval includes zero or lies below it): treat them as weak evidence.")


def model_predictor(model, batch_size: int = 32) -> Predict:
    """A compiled, batched ``predict`` for :func:`faithfulness` (one trace for all shapes)."""
    import tensorflow as tf

    fn = tf.function(lambda x: model(x, training=False),
                     input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])

    def predict(images: np.ndarray) -> np.ndarray:
        parts = [np.asarray(fn(tf.convert_to_tensor(images[i:i + batch_size], tf.float32)))
                 for i in range(0, len(images), batch_size)]
        return np.concatenate(parts) if parts else np.zeros((0, int(model.output.shape[-1])), np.float32)

    return predict
