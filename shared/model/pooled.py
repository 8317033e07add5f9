"""Training the head on pooled features: global average pooling moved into the feature cache.

The reference head starts Dropout(p) -> GlobalAveragePooling2D. With a frozen base and no
spatial augmentation at training time, the spatial maps are only ever averaged, so the cache
can hold per-channel statistics instead of ``h x w`` maps (25-49x less memory and traffic).

Dropout before the pooling is not the same as dropout after it: each of the ``h*w`` positions
of a channel is dropped on its own, so the pooled value of channel ``c`` is
``mean_s(m_s * x_sc) / (1 - p)`` with ``m_s ~ Bernoulli(1 - p)``. Its mean is the plain pooled
value and its variance is ``p / (1 - p) * mean_s(x_sc^2) / (h*w)``; channels are independent.
We cache ``[mean, mean of squares]`` per channel and train with that mean plus Gaussian noise of
exactly that variance (:class:`PooledDropout`): the same first two moments, at the cost of one
multiply-add per channel. The exact reference behaviour stays available (``pooled_cache=False``:
spatial maps, the head's own Dropout -> GAP). At inference both are the plain pooled value.
"""
from __future__ import annotations

import keras

from headstart.shared.model.classifier import Classifier


class PooledDropout(keras.layers.Layer):
    """``(batch, 2, c)`` [mean, mean of squares] -> ``(batch, c)``: GAP of dropped-out maps.

    Training adds Gaussian noise with the variance dropout-before-pooling has over
    ``positions`` spatial positions; inference returns the mean.
    """

    def __init__(self, rate: float, positions: int, seed: int | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.rate, self.positions = float(rate), int(positions)
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs, training=None):
        ops = keras.ops
        mean = inputs[:, 0]
        if not training or self.rate == 0:
            return mean
        var = self.rate / (1.0 - self.rate) / self.positions * ops.maximum(inputs[:, 1], 0.0)
        noise = keras.random.normal(ops.shape(mean), seed=self.seed_generator, dtype=mean.dtype)
        return mean + ops.sqrt(var) * noise

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[2])

    def get_config(self) -> dict:
        return {**super().get_config(), "rate": self.rate, "positions": self.positions}


def pooled_parts(head: keras.Model):
    """(dropout rate, layers after the pooling) when ``head`` is a chain starting
    [Dropout ->] GlobalAveragePooling2D, else None."""
    layers = [layer for layer in head.layers if not isinstance(layer, keras.layers.InputLayer)]
    rate = 0.0
    if layers and isinstance(layers[0], keras.layers.Dropout):
        rate = float(layers[0].rate)
        layers = layers[1:]
    if not layers or not isinstance(layers[0], keras.layers.GlobalAveragePooling2D):
        return None
    return rate, layers[1:]


def stats_extractor(extractor: keras.Model) -> keras.Model:
    """images -> ``(2, c)`` float32 [per-channel mean, mean of squares] of ``extractor``'s maps."""
    maps = extractor.output
    mean = keras.ops.mean(maps, axis=(1, 2))
    sq = keras.ops.mean(keras.ops.square(maps), axis=(1, 2))
    return keras.Model(extractor.input, keras.ops.stack([mean, sq], axis=1), name="pooled_stats")


def pooled_head(clf: Classifier, seed: int) -> keras.Model | None:
    """A training model on cached ``(2, c)`` statistics sharing the head's weights, or None
    when the head does not start with [Dropout ->] GlobalAveragePooling2D."""
    parts = pooled_parts(clf.head)
    if parts is None:
        return None
    rate, rest = parts
    _, h, w, c = clf.head.input.shape
    x = inp = keras.Input((2, int(c)), name="pooled_stats")
    x = PooledDropout(rate, int(h) * int(w), seed=seed, name="pooled_dropout")(x)
    for layer in rest:
        x = layer(x)
    return keras.Model(inp, x, name="head_pooled")
