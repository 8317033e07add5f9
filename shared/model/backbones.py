"""Backbone registry: one general builder and thin named entries.

Each entry knows its ``keras.applications`` constructor, default input size, smallest valid
size, and how its inputs are preprocessed. The preprocessing is built from stock Keras
layers (no Lambda), so a saved model loads without custom objects and takes raw 0-255 RGB.
"""
from __future__ import annotations

import logging
import warnings
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Callable

from headstart.shared.runtime.errors import UserError

log = logging.getLogger(__name__)

# Preprocessing kinds, as in keras.applications' ``preprocess_input``:
#   caffe: RGB->BGR then subtract the ImageNet mean (ResNet);
#   tf:    scale to [-1, 1] (MobileNetV2, Inception, Xception);
#   torch: scale to [0, 1] then normalise by ImageNet mean/std (DenseNet);
#   none:  the application rescales inside itself (EfficientNet, ConvNeXt, MobileNetV3);
#   unit:  scale to [0, 1] (the tiny test backbone).
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
TORCH_MEAN = (0.485, 0.456, 0.406)
TORCH_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class BackboneInfo:
    name: str
    app: str                 # attribute of keras.applications, or "" for built-in
    default_size: int
    min_size: int
    preprocess: str
    pretrained: bool = True
    include_preprocessing: bool = True  # "none" kinds: pass include_preprocessing=True


REGISTRY: dict[str, BackboneInfo] = {
    b.name: b
    for b in [
        BackboneInfo("resnet50", "ResNet50", 224, 32, "caffe"),
        BackboneInfo("resnet101", "ResNet101", 224, 32, "caffe"),
        BackboneInfo("mobilenet_v2", "MobileNetV2", 224, 32, "tf"),
        BackboneInfo("mobilenet_v3_large", "MobileNetV3Large", 224, 32, "none"),
        BackboneInfo("efficientnet_b0", "EfficientNetB0", 224, 32, "none", include_preprocessing=False),
        BackboneInfo("efficientnet_b3", "EfficientNetB3", 300, 32, "none", include_preprocessing=False),
        BackboneInfo("densenet121", "DenseNet121", 224, 32, "torch"),
        BackboneInfo("inception_v3", "InceptionV3", 299, 75, "tf"),
        BackboneInfo("xception", "Xception", 299, 71, "tf"),
        BackboneInfo("convnext_tiny", "ConvNeXtTiny", 224, 32, "none"),
        BackboneInfo("tiny", "", 64, 16, "unit", pretrained=False),
    ]
}


def get_info(name: str) -> BackboneInfo:
    """Registry entry for ``name``, with a clear error listing the valid names."""
    if name not in REGISTRY:
        from headstart.shared.runtime.specs import did_you_mean

        raise UserError(f"`backbone` must be one of {sorted(REGISTRY)}{did_you_mean(name, REGISTRY)}. "
                        f"Received: backbone={name!r}")
    return REGISTRY[name]


def resolve_size(info: BackboneInfo, image_size: int | None) -> int:
    """The input size to use, checked against the backbone's minimum."""
    size = image_size or info.default_size
    if size < info.min_size or size > 1024:
        raise UserError(f"`image_size` must be between {info.min_size} and 1024 for backbone "
                        f"{info.name!r}. Received: image_size={size}")
    return size


def _tiny(input_shape: tuple[int, int, int]):
    """A small CNN for tests and offline demos: three stride-2 conv blocks, no pretraining."""
    import keras

    inputs = keras.Input(input_shape)
    x = inputs
    for i, filters in enumerate((16, 32, 64)):
        x = keras.layers.Conv2D(filters, 3, strides=2, padding="same", use_bias=False,
                                name=f"block{i + 1}_conv")(x)
        x = keras.layers.BatchNormalization(name=f"block{i + 1}_bn")(x)
        x = keras.layers.ReLU(name=f"block{i + 1}_relu")(x)
    return keras.Model(inputs, x, name="tiny")


def _constructor(info: BackboneInfo) -> Callable:
    import keras

    if info.name == "tiny":
        return lambda input_shape, weights: _tiny(input_shape)
    app = getattr(keras.applications, info.app)
    if info.preprocess == "none" and info.include_preprocessing:
        # These apply their own rescaling inside; keep it so raw 0-255 inputs work.
        return lambda input_shape, weights: app(include_top=False, weights=weights,
                                                input_shape=input_shape, include_preprocessing=True)
    # Keras 3 EfficientNetB0..B7 always rescale inside and take no include_preprocessing.
    return lambda input_shape, weights: app(include_top=False, weights=weights, input_shape=input_shape)


def check_weights_arg(weights: str) -> str:
    """Validate ``--weights``: ``imagenet``, ``none`` or a path/URI to a ``.weights.h5`` file."""
    if weights in ("imagenet", "none"):
        return weights
    if not weights.endswith(".weights.h5"):
        raise UserError("`weights` must be 'imagenet', 'none' or a path/URI to a backbone "
                        f"'.weights.h5' file. Received: weights={weights!r}")
    return weights


def build_backbone(name: str, image_size: int, weights: str = "imagenet"):
    """Build a headless backbone for ``image_size`` squares with the requested weights."""
    info = get_info(name)
    weights = check_weights_arg(weights)
    if weights == "imagenet" and not info.pretrained:
        raise UserError(f"backbone {name!r} has no ImageNet weights; use --weights none or a file")
    shape = (image_size, image_size, 3)
    build = _constructor(info)
    if weights == "imagenet":
        try:
            return build(shape, "imagenet")
        except Exception as exc:  # network errors surface as many exception types
            raise UserError(f"could not get ImageNet weights for {name!r} ({type(exc).__name__}: "
                            f"{exc}); they download on first use, or pass --weights PATH") from None
    model = build(shape, None)
    if weights != "none":
        load_backbone_weights(model, name, weights)
    return model


def load_backbone_weights(model, name: str, uri: str) -> None:
    """Load a backbone ``.weights.h5`` (local or ``s3://``), refusing files for another model."""
    from headstart.shared.storage.store import split_uri

    store, key = split_uri(uri)
    with ExitStack() as stack:  # an S3 download is removed after loading
        try:
            path = stack.enter_context(store.local_copy(key))
        except FileNotFoundError:
            raise UserError(f"weights file not found: {uri!r}") from None
        _load_weights_file(model, name, uri, path)


def _load_weights_file(model, name: str, uri: str, path) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            model.load_weights(str(path))
        except Exception as exc:  # shape/variable mismatches raise ValueError and friends
            raise UserError(f"weights file {uri!r} does not fit backbone {name!r} at input "
                            f"{model.input_shape[1:3]}: {str(exc).splitlines()[0]}") from None
    skipped = [w for w in caught if "Skipping" in str(w.message) or "could not be loaded" in str(w.message)]
    if skipped:
        raise UserError(f"weights file {uri!r} does not fit backbone {name!r}: "
                        f"{str(skipped[0].message).splitlines()[0]}")
    log.info("loaded backbone weights from %s", uri)
