"""Is a heatmap faithful to the model? Mask what it points at and see the score drop.

For each image: blur the top ``fraction`` of pixels ranked by the heatmap and measure the
drop in the target-class probability; do the same with a random map of the same
granularity (noise at feature-map resolution, upsampled the same way, so both masks are
blobs of similar size). ``score = drop_top - drop_random``: positive when the heatmap finds
evidence better than chance.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from headstart.shared.explain.gradcam import upsample

Predict = Callable[[np.ndarray], np.ndarray]  # float32 images (n, H, W, 3) -> probs (n, K)


@dataclass
class Faithfulness:
    drop_top: np.ndarray     # (n,) probability drop when the heatmap's top pixels are blurred
    drop_random: np.ndarray  # (n,) the same for a random map
    score: np.ndarray        # (n,) drop_top - drop_random


def blur(images: np.ndarray, factor: int = 8) -> np.ndarray:
    """A strong blur that removes detail but keeps colour: area-downsample, bilinear-upsample."""
    import tensorflow as tf

    h, w = images.shape[1:3]
    small = tf.image.resize(images, (max(1, h // factor), max(1, w // factor)), "area")
    return np.asarray(tf.image.resize(small, (h, w), "bilinear"), np.float32)


def top_mask(maps: np.ndarray, fraction: float) -> np.ndarray:
    """Boolean (n, H, W): exactly the top ``fraction`` of each map's pixels (ties by order)."""
    n, h, w = maps.shape
    k = max(1, int(round(fraction * h * w)))
    flat = maps.reshape(n, -1)
    idx = np.argpartition(-flat, k - 1, axis=1)[:, :k]
    mask = np.zeros_like(flat, dtype=bool)
    np.put_along_axis(mask, idx, True, axis=1)
    return mask.reshape(n, h, w)


def _masked_probs(predict: Predict, images: np.ndarray, blurred: np.ndarray, mask: np.ndarray,
                  targets: np.ndarray) -> np.ndarray:
    masked = np.where(mask[..., None], blurred, images)
    probs = predict(masked)
    return probs[np.arange(len(targets)), targets]


def faithfulness(predict: Predict, images: np.ndarray, heatmaps: np.ndarray, targets: np.ndarray,
                 base_probs: np.ndarray, fraction: float = 0.2, seed: int = 0) -> Faithfulness:
    """Probability drops for heatmap-guided vs random masking of ``fraction`` of each image.

    ``heatmaps`` are at feature-map resolution; ``base_probs`` are the unmasked target-class
    probabilities.
    """
    images = np.asarray(images, np.float32)
    n, h, w = images.shape[:3]
    blurred = blur(images)
    top = top_mask(upsample(heatmaps, h, w), fraction)
    noise = np.random.default_rng(seed).random(heatmaps.shape, dtype=np.float32)
    rand = top_mask(upsample(noise, h, w), fraction)
    drop_top = base_probs - _masked_probs(predict, images, blurred, top, targets)
    drop_random = base_probs - _masked_probs(predict, images, blurred, rand, targets)
    return Faithfulness(drop_top.astype(np.float32), drop_random.astype(np.float32),
                        (drop_top - drop_random).astype(np.float32))


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
