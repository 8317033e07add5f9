"""The one resize between a decoded image and the backbone: the saved model's own layer.

A saved classifier takes raw images of any size and resizes them itself (its ``resize``
layer). Every job feeds the backbone through that same layer, so what a job reports for an
image is exactly what ``keras.models.load_model("model.keras")`` computes from
``decode_image(bytes)``. Loaders never resize with PIL: they apply this layer to each decoded
image (float32 out, no rounding back to ``uint8``) and batch the equal-size results; the
model's own resize is then the identity.

The layer is bilinear *without* antialiasing, which TFLite runs as its builtin
``RESIZE_BILINEAR`` (the antialiased kernel is ``tf.ScaleAndTranslate``, which TFLite has
no op for). Bilinear alone aliases on large downscales; ``decode_image(target=size)`` has
already shrunk any source at least twice the input size (DCT-domain for JPEG, a box filter
otherwise), so the layer is left a factor under 2 on the shorter side.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

RESIZE_LAYER = "resize"


def resize_layer(size: int, name: str = RESIZE_LAYER) -> Any:
    """The resize layer every new model is built with (bilinear, no antialias)."""
    import keras

    return keras.layers.Resizing(size, size, interpolation="bilinear", antialias=False, name=name)


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
