"""The one resize between a decoded image and the backbone: the saved model's own layer.

A saved classifier takes raw images of any size and resizes them itself (its ``resize``
layer). Every job feeds the backbone through that same layer, so what a job reports for an
image is exactly what ``keras.models.load_model("model.keras")`` computes from
``decode_image(bytes)``. Loaders never resize with PIL: they apply this layer to each decoded
image (float32 out, no rounding back to ``uint8``) and batch the equal-size results; the
model's own resize is then the identity.

The layer is bilinear *with* antialiasing (``tf.image.resize(antialias=True)``): a plain
bilinear downscale samples a few source pixels per output pixel, so ``load_model(...)`` on a
full-resolution photo would alias, and no decoder shortcut could agree with it (measured:
1.4-4.6% of top-1 answers flipped by JPEG scaled decoding, against 0-0.4% antialiased; see
``MODEL_REDUCING_GAP`` in :mod:`headstart.shared.data.images`). TFLite and ONNX have no
antialiased resize (``tf.ScaleAndTranslate``): ``export`` swaps in the bilinear builtin,
identical for images at the model's input size (the identity) and for upscaling, and says so
in its ``parity.json``. Models saved before this change keep their own (bilinear) layer:
:func:`model_resize` honours the saved settings.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

RESIZE_LAYER = "resize"


def resize_layer(size: int, name: str = RESIZE_LAYER) -> Any:
    """The resize layer every new model is built with (bilinear, antialiased)."""
    import keras

    return keras.layers.Resizing(size, size, interpolation="bilinear", antialias=True, name=name)


def model_resize(model: Any | None, size: int) -> Any:
    """``model``'s own resize layer (older models' settings included), else :func:`resize_layer`."""
    if model is not None:
        try:
            layer = model.get_layer(RESIZE_LAYER)
        except ValueError:
            layer = None
        if layer is not None:
            return layer
    return resize_layer(size)


def resizer(size: int, model: Any | None = None) -> Callable[[np.ndarray], np.ndarray]:
    """A function: decoded ``uint8`` image (H, W, 3) of any size -> float32 (size, size, 3),
    computed by ``model``'s resize layer (or the standard one) - bit for bit what the model does."""
    import tensorflow as tf

    layer = model_resize(model, size)

    @tf.function(input_signature=[tf.TensorSpec((None, None, 3), tf.uint8)], reduce_retracing=True)
    def run(image):
        return layer(tf.cast(image, tf.float32)[None])[0]

    def apply(image: np.ndarray) -> np.ndarray:
        return np.asarray(run(image), dtype=np.float32)

    return apply


def to_uint8(images: np.ndarray) -> np.ndarray:
    """Resized float images back to ``uint8`` for display (galleries, overlays)."""
    if images.dtype == np.uint8:
        return images
    return np.clip(np.rint(images), 0, 255).astype(np.uint8)
