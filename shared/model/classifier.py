"""Classifier assembly: raw image (any size) -> resize -> preprocess -> frozen backbone -> head.

The head follows the reference recipe: Dropout(0.3) -> GlobalAveragePooling2D ->
Dense(1024, relu) -> BatchNormalization -> Dense(n_classes, softmax). Its layers are
shared between the full model (what gets saved) and a head-only model that trains on
cached feature maps, so both paths update the very same weights.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import keras
import numpy as np

from headstart.shared.data.modelinput import resize_layer
from headstart.shared.model.backbones import CAFFE_MEAN_BGR, TORCH_MEAN, TORCH_STD, BackboneInfo

BACKBONE_LAYER = "backbone"


def preprocessing_layers(kind: str) -> list[keras.layers.Layer]:
    """Stock Keras layers reproducing ``keras.applications`` preprocessing for ``kind``."""
    if kind == "caffe":
        # A fixed 1x1 convolution does RGB->BGR and the mean subtraction in one built-in layer.
        conv = keras.layers.Conv2D(3, 1, name="preprocess_caffe", trainable=False)
        conv.build((None, None, None, 3))
        kernel = np.zeros((1, 1, 3, 3), dtype="float32")
        for out_c, in_c in enumerate((2, 1, 0)):
            kernel[0, 0, in_c, out_c] = 1.0
        conv.set_weights([kernel, -np.asarray(CAFFE_MEAN_BGR, dtype="float32")])
        return [conv]
    if kind == "tf":
        return [keras.layers.Rescaling(1 / 127.5, offset=-1.0, name="preprocess_tf")]
    if kind == "torch":
        return [keras.layers.Rescaling(1 / 255.0, name="preprocess_unit"),
                keras.layers.Normalization(mean=list(TORCH_MEAN), variance=[s * s for s in TORCH_STD],
                                           name="preprocess_torch")]
    if kind == "unit":
        return [keras.layers.Rescaling(1 / 255.0, name="preprocess_unit")]
    return []


@dataclass
class Classifier:
    """The full model plus the pieces training needs."""

    model: keras.Model       # raw images (any size) -> class probabilities; this is saved
    backbone: keras.Model    # nested, frozen
    head: keras.Model        # feature maps -> probabilities (shares layers with ``model``)
    extractor: keras.Model   # images at ``image_size`` -> feature maps (shares layers)
    image_size: int
    preprocess: list = field(default_factory=list)  # the shared preprocessing layers (for with_head)


def head_layers(n_classes: int, width: int = 1024, dropout: float = 0.3) -> list[keras.layers.Layer]:
    return [
        keras.layers.Dropout(dropout, name="head_dropout"),
        keras.layers.GlobalAveragePooling2D(name="head_pool"),
        keras.layers.Dense(width, activation="relu", name="head_dense"),
        # momentum 0.9 (Keras default 0.99): a head on cached features often trains for only
        # a few dozen steps, and 0.99 would leave the moving statistics used at inference far
        # from the data's (measured: ~20 points of accuracy lost on 10-20 images per label).
        keras.layers.BatchNormalization(momentum=0.9, name="head_bn"),
        keras.layers.Dense(n_classes, activation="softmax", name="predictions"),
    ]


def _apply(layers: list[keras.layers.Layer], x):
    for layer in layers:
        x = layer(x)
    return x


def assemble(backbone: keras.Model, info: BackboneInfo, image_size: int, n_classes: int,
             head_width: int = 1024, dropout: float = 0.3) -> Classifier:
    """Wrap a backbone into the saved classifier and its head-only / extractor views."""
    backbone.trainable = False
    backbone.name = BACKBONE_LAYER  # a stable name for Grad-CAM and fine-tuning
    pre = preprocessing_layers(info.preprocess)
    head = head_layers(n_classes, head_width, dropout)

    # The preprocessing layers and the backbone are shared by two graphs: the extractor
    # (fixed-size images, used to cache features) and the saved model (raw images of any size).
    # training=False keeps BatchNorm in the base in inference mode, also while fine-tuning.
    sized = keras.Input((image_size, image_size, 3), name="image_sized")
    features = backbone(_apply(pre, sized), training=False)
    extractor = keras.Model(sized, features, name="extractor")

    raw = keras.Input((None, None, 3), name="image")
    # The one resize (bilinear, antialiased; export swaps in the TFLite builtin): loaders
    # apply this same layer before the extractor, so cached features equal what the saved
    # model computes (modelinput.py).
    x = resize_layer(image_size)(raw)
    x = backbone(_apply(pre, x), training=False)
    model = keras.Model(raw, _apply(head, x), name=f"headstart_{info.name}")

    feat_in = keras.Input(tuple(features.shape[1:]), name="features")
    head_model = keras.Model(feat_in, _apply(head, feat_in), name="head")
    return Classifier(model, backbone, head_model, extractor, image_size, pre)


def with_head(clf: Classifier, layers: list[keras.layers.Layer]) -> None:
    """Swap in another head (``layers`` from feature maps to probabilities), in place.

    The backbone, preprocessing and extractor are kept; the saved model and the head-only
    model are rebuilt around the new layers (the default recipe picks its head after the
    features are cached, i.e. after the classifier was assembled).
    """
    raw = keras.Input((None, None, 3), name="image")
    x = resize_layer(clf.image_size)(raw)
    x = clf.backbone(_apply(clf.preprocess, x), training=False)
    clf.model = keras.Model(raw, _apply(layers, x), name=clf.model.name)
    feat_in = keras.Input(tuple(clf.extractor.output.shape[1:]), name="features")
    clf.head = keras.Model(feat_in, _apply(layers, feat_in), name="head")



def after_pooling(layers: list[keras.layers.Layer], channels: int) -> keras.Model:
    """A head's ``layers`` without the first (its global average pooling), as a model over
    pooled features ``(n, channels)``: scores cached pooled features (shares the layers)."""
    inp = keras.Input((channels,), name="pooled")
    return keras.Model(inp, _apply(layers[1:], inp), name="pooled_head")
