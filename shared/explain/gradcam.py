"""Class-activation maps, batched: Grad-CAM, Grad-CAM++ and the plain activation mean.

Design after pytorch-grad-cam: :class:`BaseCAM` fixes the sequence

    forward + gradient tape -> channel weights -> weighted sum -> ReLU -> normalise

and each method overrides one step (:meth:`BaseCAM.weights`). The whole sequence runs as one
``tf.function`` per batch: one tape, one backward pass for the whole batch. Summing the
per-image target scores before differentiating gives every image its own gradient because
the model runs in inference mode (BatchNorm uses its moving statistics, so images in a
batch do not interact).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from headstart.shared.explain.camgraph import CamGraph
from headstart.shared.runtime.errors import UserError
from headstart.shared.runtime.logs import Progress
from headstart.shared.runtime.stop import STOP

log = logging.getLogger(__name__)

PREDICTED = -1  # target code: the model's own top class
_EPS = 1e-7


@dataclass
class CamResult:
    """Heatmaps (normalised to [0, 1], at feature-map resolution) and what they explain."""

    heatmaps: np.ndarray     # (n, h, w) float32
    probs: np.ndarray        # (n, classes) float32
    targets: np.ndarray      # (n,) int32: the class each heatmap explains
    peaks: np.ndarray        # (n,) float32: the raw (pre-normalisation) maximum

    def __len__(self) -> int:
        return len(self.targets)


class BaseCAM:
    """One CAM method over a :class:`CamGraph`; subclasses override :meth:`weights`."""

    name = "base"
    needs_gradients = True

    def __init__(self, graph: CamGraph) -> None:
        import tensorflow as tf

        self.graph = graph
        # One trace for every batch size and image size: no retracing per batch.
        signature = [tf.TensorSpec([None, None, None, 3], tf.float32), tf.TensorSpec([None], tf.int32)]
        self._step = tf.function(self._compute, input_signature=signature)

    def weights(self, acts, grads):
        """Channel weights (batch, channels) from activations and gradients (b, h, w, c)."""
        raise NotImplementedError

    def _forward(self, images, targets):
        """Activations, logits, resolved targets and d(score)/d(activations)."""
        import tensorflow as tf

        with tf.GradientTape(watch_accessed_variables=False) as tape:
            # Watching the input records the whole path, including frozen backbone layers
            # between the target layer and the backbone output.
            tape.watch(images)
            acts, logits = self.graph.forward(images)
            resolved = tf.where(targets < 0, tf.argmax(logits, axis=-1, output_type=tf.int32), targets)
            score = tf.reduce_sum(tf.gather(logits, resolved, axis=1, batch_dims=1))
        grads = tape.gradient(score, acts) if self.needs_gradients else tf.zeros_like(acts)
        return acts, logits, resolved, grads

    def _compute(self, images, targets):
        import tensorflow as tf

        acts, logits, resolved, grads = self._forward(images, targets)
        w = self.weights(acts, grads)
        cam = tf.nn.relu(tf.einsum("bhwc,bc->bhw", acts, w))
        peak = tf.reduce_max(cam, axis=(1, 2))
        low = tf.reduce_min(cam, axis=(1, 2), keepdims=True)
        cam = (cam - low) / (peak[:, None, None] - low + _EPS)
        return cam, self.graph.probabilities(logits), resolved, peak

    def __call__(self, images: np.ndarray, targets: Sequence[int] | np.ndarray | None = None) -> CamResult:
        """Heatmaps for one batch of raw 0-255 images (all the same size)."""
        import tensorflow as tf

        n = len(images)
        t = np.full(n, PREDICTED, np.int32) if targets is None else np.asarray(targets, np.int32)
        cam, probs, resolved, peak = self._step(tf.convert_to_tensor(np.asarray(images, np.float32)),
                                                tf.convert_to_tensor(t))
        return CamResult(np.asarray(cam), np.asarray(probs), np.asarray(resolved), np.asarray(peak))

    def run(self, images: np.ndarray, targets: np.ndarray | None = None,
            batch_size: int = 32) -> CamResult:
        """Heatmaps for many images, batch by batch, with progress and stop checks."""
        progress = Progress(len(images), f"{self.name}", "img", log)
        parts = []
        for start in range(0, len(images), batch_size):
            STOP.check()
            stop = start + batch_size
            parts.append(self(images[start:stop], None if targets is None else targets[start:stop]))
            progress.update(len(parts[-1]))
        progress.close()
        return concat(parts)


class GradCAM(BaseCAM):
    """Selvaraju et al. 2017: gradients averaged over space are the channel weights."""

    name = "gradcam"

    def weights(self, acts, grads):
        import tensorflow as tf

        return tf.reduce_mean(grads, axis=(1, 2))


class GradCAMPlusPlus(BaseCAM):
    """Chattopadhay et al. 2018: positive gradients weighted per position by alpha."""

    name = "gradcam++"

    def weights(self, acts, grads):
        import tensorflow as tf

        g2 = tf.square(grads)
        g3 = g2 * grads
        sum_acts = tf.reduce_sum(acts, axis=(1, 2), keepdims=True)
        alpha = g2 / (2.0 * g2 + sum_acts * g3 + _EPS)
        alpha = tf.where(tf.not_equal(grads, 0.0), alpha, tf.zeros_like(alpha))
        return tf.reduce_sum(tf.nn.relu(grads) * alpha, axis=(1, 2))


class ActivationMean(BaseCAM):
    """The reference's map: the mean of the last activations, class-agnostic (no gradients)."""

    name = "activation"
    needs_gradients = False

    def weights(self, acts, grads):
        import tensorflow as tf

        channels = tf.shape(acts)[-1]
        return tf.ones((tf.shape(acts)[0], channels), acts.dtype) / tf.cast(channels, acts.dtype)


METHODS: dict[str, type[BaseCAM]] = {c.name: c for c in (GradCAM, GradCAMPlusPlus, ActivationMean)}


def make_cam(method: str, graph: CamGraph) -> BaseCAM:
    """The CAM for ``method`` (``gradcam``, ``gradcam++`` or ``activation``)."""
    if method not in METHODS:
        raise UserError(f"`method` must be one of {sorted(METHODS)}. Received: method={method!r}")
    return METHODS[method](graph)


def concat(parts: list[CamResult]) -> CamResult:
    if not parts:
        return CamResult(np.zeros((0, 0, 0), np.float32), np.zeros((0, 0), np.float32),
                         np.zeros(0, np.int32), np.zeros(0, np.float32))
    return CamResult(*(np.concatenate([getattr(p, f) for p in parts])
                       for f in ("heatmaps", "probs", "targets", "peaks")))


def upsample(heatmaps: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize of (n, h, w) heatmaps to (n, height, width), clipped to [0, 1]."""
    import tensorflow as tf

    if len(heatmaps) == 0:
        return np.zeros((0, height, width), np.float32)
    big = tf.image.resize(np.asarray(heatmaps, np.float32)[..., None], (height, width), "bilinear")
    return np.clip(np.asarray(big)[..., 0], 0.0, 1.0)


def peak_location(heatmap: np.ndarray) -> tuple[float, float]:
    """(x, y) of a heatmap's maximum, as fractions of width and height (cell centres)."""
    h, w = heatmap.shape
    row, col = np.unravel_index(int(np.argmax(heatmap)), heatmap.shape)
    return (col + 0.5) / w, (row + 0.5) / h
