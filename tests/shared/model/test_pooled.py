"""Pooled-statistics head: dropout-before-GAP moments, inference parity, shared weights."""
from __future__ import annotations

import keras
import numpy as np

from headstart.shared.model.classifier import Classifier, _apply, head_layers
from headstart.shared.model.pooled import PooledDropout, pooled_head, pooled_parts, stats_extractor

H, W, C = 4, 3, 6


def _head(dropout: float = 0.3) -> keras.Model:
    inp = keras.Input((H, W, C))
    return keras.Model(inp, _apply(head_layers(3, width=8, dropout=dropout), inp))


def _clf(head: keras.Model) -> Classifier:
    sized = keras.Input((8, 8, 3))
    maps = keras.layers.Conv2D(C, 3, strides=2, padding="valid")(sized)  # (3, 3, C)
    return Classifier(model=None, backbone=None, head=head, extractor=keras.Model(sized, maps),
                      image_size=8)


def _stats(maps: np.ndarray) -> np.ndarray:
    return np.stack([maps.mean(axis=(1, 2)), np.square(maps).mean(axis=(1, 2))], axis=1)


def test_noise_has_the_mean_and_variance_of_dropout_before_pooling():
    rng = np.random.default_rng(0)
    maps = rng.gamma(2.0, 1.0, size=(1, H, W, C)).astype("float32")
    p, trials = 0.3, 20_000
    drop = keras.layers.Dropout(p, seed=1)
    reference = np.asarray(drop(np.repeat(maps, trials, axis=0), training=True)).mean(axis=(1, 2))
    stats = np.repeat(_stats(maps), trials, axis=0)
    pooled = np.asarray(PooledDropout(p, H * W, seed=2)(stats, training=True))
    np.testing.assert_allclose(pooled.mean(0), reference.mean(0), rtol=0.02)
    np.testing.assert_allclose(pooled.var(0), reference.var(0), rtol=0.08)
    # The variance formula itself: p / (1 - p) * mean(x^2) / (h * w).
    np.testing.assert_allclose(reference.var(0), p / (1 - p) * _stats(maps)[0, 1] / (H * W), rtol=0.08)
    # Not merely "some noise": dropout after pooling would be far noisier.
    after = np.asarray(drop(np.repeat(maps.mean(axis=(1, 2)), trials, axis=0), training=True))
    assert (after.var(0) > 3 * reference.var(0)).all()


def test_inference_and_zero_rate_return_the_plain_mean():
    stats = _stats(np.random.default_rng(1).random((5, H, W, C)).astype("float32"))
    np.testing.assert_allclose(np.asarray(PooledDropout(0.3, H * W)(stats, training=False)), stats[:, 0])
    np.testing.assert_allclose(np.asarray(PooledDropout(0.0, H * W)(stats, training=True)), stats[:, 0])


def test_pooled_head_shares_weights_and_matches_the_head_at_inference():
    head = _head()
    clf = _clf(head)
    pooled = pooled_head(clf, seed=0)
    assert pooled is not None
    assert [w.shape for w in pooled.get_weights()] == [w.shape for w in head.get_weights()]
    maps = np.random.default_rng(2).random((7, H, W, C)).astype("float32")
    np.testing.assert_allclose(np.asarray(pooled(_stats(maps), training=False)),
                               np.asarray(head(maps, training=False)), atol=1e-5)
    # Training the twin trains the head: same variables.
    pooled.layers[-1].kernel.assign(np.zeros(pooled.layers[-1].kernel.shape, "float32"))
    assert not np.any(head.get_layer("predictions").get_weights()[0])


def test_stats_extractor_outputs_mean_and_mean_of_squares():
    clf = _clf(_head())
    images = np.random.default_rng(3).random((2, 8, 8, 3)).astype("float32") * 255
    maps = np.asarray(clf.extractor(images))
    np.testing.assert_allclose(np.asarray(stats_extractor(clf.extractor)(images)), _stats(maps), rtol=1e-5, atol=1e-4)


def test_heads_not_starting_with_pooling_keep_the_spatial_cache():
    inp = keras.Input((H, W, C))
    flat = keras.Model(inp, keras.layers.Dense(3)(keras.layers.Flatten()(inp)))
    assert pooled_parts(flat) is None and pooled_head(_clf(flat), seed=0) is None
    rate, rest = pooled_parts(_head(0.25))
    assert rate == 0.25 and [layer.name for layer in rest] == ["head_dense", "head_bn", "predictions"]
    inp = keras.Input((H, W, C))
    gap_first = keras.Model(inp, keras.layers.Dense(3)(keras.layers.GlobalAveragePooling2D()(inp)))
    assert pooled_parts(gap_first)[0] == 0.0
