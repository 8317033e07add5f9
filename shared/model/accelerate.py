"""Mixed precision + XLA for the frozen backbone pass (the feature cache), on GPUs.

The base is frozen and only read, so its pass can run in float16 with XLA-compiled kernels:
on a GPU's tensor cores that is several times the float32 throughput, and the cache stores
float16 anyway. On a CPU both make it slower (no fast float16 kernels; XLA compiles each batch
shape for seconds), so ``auto`` turns them on only when a GPU is visible; ``on`` forces them
(for tests and measurements), ``off`` never. The saved model is untouched: the float16 twin
of the base is built for the pass and thrown away.
"""
from __future__ import annotations

import logging

import keras

from headstart.shared.runtime.errors import UserError

log = logging.getLogger(__name__)

CHOICES = ("auto", "on", "off")


def wanted(choice: str) -> bool:
    """Whether to accelerate the frozen pass for ``choice`` (auto: a GPU is visible)."""
    if choice not in CHOICES:
        raise UserError(f"`accelerate` must be one of {list(CHOICES)}. Received: accelerate={choice!r}")
    if choice != "auto":
        return choice == "on"
    return on_gpu()


def on_gpu() -> bool:
    """Whether TensorFlow sees a GPU."""
    import tensorflow as tf

    return bool(tf.config.list_logical_devices("GPU"))


def _mixed_clone(model: keras.Model) -> keras.Model:
    def clone(layer):
        config = layer.get_config()
        if not isinstance(layer, keras.layers.InputLayer):
            config["dtype"] = "mixed_float16"
        return layer.__class__.from_config(config)

    twin = keras.models.clone_model(model, clone_function=clone)
    twin.set_weights(model.get_weights())
    twin.trainable = False
    return twin


def mixed_extractor(extractor: keras.Model, backbone: keras.Model) -> keras.Model:
    """``extractor`` (images -> base maps, float32) with ``backbone`` swapped for a
    mixed-precision twin: the preprocessing stays float32, the output is cast back."""
    twin = _mixed_clone(backbone)
    x = inp = keras.Input(extractor.input.shape[1:], name="image_sized")
    for layer in extractor.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        x = twin(x, training=False) if layer is backbone else layer(x)
    out = keras.ops.cast(x, "float32")
    return keras.Model(inp, out, name="extractor_mixed")
