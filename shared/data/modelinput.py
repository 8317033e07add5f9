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
RESIZE_INTERPOLATION = "bilinear"
RESIZE_ANTIALIAS = True


def resize_layer(size: int, name: str = RESIZE_LAYER) -> Any:
    """The resize layer every new model is built with (bilinear, antialiased)."""
    import keras

    return keras.layers.Resizing(size, size, interpolation=RESIZE_INTERPOLATION,
                                 antialias=RESIZE_ANTIALIAS, name=name)


def preprocessing_tag() -> str:
    """What turns bytes into the backbone's input for new models, as the string cached
    features record: the standard resize and the scaled decode's reducing gap. Built from
    the constants, so a shard check or fingerprint imports no Keras."""
    from headstart.shared.data.images import MODEL_REDUCING_GAP

    return f"{RESIZE_INTERPOLATION}{'-antialias' if RESIZE_ANTIALIAS else ''}/gap{MODEL_REDUCING_GAP}"


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


def resize_graph(model: Any | None, size: int) -> Callable[[Any], Any]:
    """``model``'s resize as a graph function over a float32 batch ``(1, H, W, 3)``.

    An antialiased layer's kernel is the bilinear triangle stretched by the downscale factor;
    on an upscale (or the identity) it is the plain bilinear kernel, so an image no larger
    than the input on both sides goes through the plain bilinear op: the same values (within
    1e-4 grey levels of float rounding, measured up to 3e-5), at half the CPU time of
    ``tf.ScaleAndTranslate`` (~1 ms an image here, where the backbone pass takes ~17)."""
    import keras
    import tensorflow as tf

    layer = model_resize(model, size)
    cfg = layer.get_config()
    if not cfg.get("antialias") or cfg.get("crop_to_aspect_ratio") or cfg.get("pad_to_aspect_ratio"):
        return layer
    plain = keras.layers.Resizing(cfg["height"], cfg["width"], interpolation=cfg["interpolation"],
                                  antialias=False, name=f"{cfg['name']}_upscale")

    def run(x):
        shape = tf.shape(x)
        upscale = tf.logical_and(shape[1] <= cfg["height"], shape[2] <= cfg["width"])
        return tf.cond(upscale, lambda: plain(x), lambda: layer(x))
    return run


def batch_resizer(size: int, model: Any | None = None) -> Callable[[np.ndarray], np.ndarray]:
    """A function: decoded ``uint8`` images of one shape ``(n, H, W, 3)`` -> float32
    ``(n, size, size, 3)``, computed by ``model``'s resize layer (or the standard one) in one
    op call. The resize is per image, so each row is that image's :func:`resizer` result; one
    call for many images saves the ~1.2 ms of per-call overhead an image costs."""
    import tensorflow as tf

    layer = resize_graph(model, size)

    @tf.function(input_signature=[tf.TensorSpec((None, None, None, 3), tf.uint8)], reduce_retracing=True)
    def run(batch):
        return layer(tf.cast(batch, tf.float32))

    def apply(batch: np.ndarray) -> np.ndarray:
        return np.asarray(run(batch), dtype=np.float32)

    return apply


def resizer(size: int, model: Any | None = None) -> Callable[[np.ndarray], np.ndarray]:
    """A function: decoded ``uint8`` image (H, W, 3) of any size -> float32 (size, size, 3),
    computed by ``model``'s resize layer (or the standard one): what the model does (bit for
    bit on downscales, see :func:`resize_graph` for upscales)."""
    run = batch_resizer(size, model)

    def apply(image: np.ndarray) -> np.ndarray:
        return run(image[None])[0]

    return apply


def to_uint8(images: np.ndarray) -> np.ndarray:
    """Resized float images back to ``uint8`` for display (galleries, overlays)."""
    if images.dtype == np.uint8:
        return images
    return np.clip(np.rint(images), 0, 255).astype(np.uint8)
