"""Classifier assembly: preprocessing equals keras.applications', the saved model is portable,
and the head-only model trains the very weights the full model uses."""
from __future__ import annotations

import dataclasses

import keras
import numpy as np
import pytest

from headstart.shared.model.backbones import build_backbone, get_info
from headstart.shared.model.classifier import BACKBONE_LAYER, assemble, preprocessing_layers

SIZE = 32


def raw_images(n: int, h: int = SIZE, w: int = SIZE, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, 3)).astype("float32")


def tiny_classifier(preprocess: str = "unit", n_classes: int = 3, head_width: int = 16):
    info = dataclasses.replace(get_info("tiny"), preprocess=preprocess)
    return assemble(build_backbone("tiny", SIZE, "none"), info, SIZE, n_classes, head_width=head_width)


@pytest.mark.parametrize("name, module", [("resnet50", "resnet50"), ("mobilenet_v2", "mobilenet_v2"),
                                          ("densenet121", "densenet")])
def test_preprocessing_matches_keras_applications(name, module):
    info = get_info(name)
    backbone = build_backbone(name, SIZE, "none")
    clf = assemble(backbone, info, SIZE, n_classes=2, head_width=8)
    x = raw_images(2)
    preprocess_input = getattr(keras.applications, module).preprocess_input
    expected = np.asarray(backbone(preprocess_input(x.copy()), training=False))
    got = np.asarray(clf.extractor(x, training=False))
    scale = max(1.0, float(np.abs(expected).max()))
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * scale)


@pytest.mark.parametrize("kind, module", [("caffe", "resnet50"), ("tf", "mobilenet_v2"),
                                          ("torch", "densenet")])
def test_preprocessing_layers_alone_match_preprocess_input(kind, module):
    x = raw_images(2, 5, 7)
    out = x
    for layer in preprocessing_layers(kind):
        out = layer(out)
    expected = getattr(keras.applications, module).preprocess_input(x.copy())
    np.testing.assert_allclose(np.asarray(out), expected, rtol=1e-5, atol=1e-3)


def test_unit_and_none_preprocessing():
    x = raw_images(1, 4, 4)
    (unit,) = preprocessing_layers("unit")
    np.testing.assert_allclose(np.asarray(unit(x)), x / 255.0, rtol=1e-6)
    assert preprocessing_layers("none") == []


def test_layer_names_and_frozen_backbone():
    clf = tiny_classifier()
    assert clf.model.get_layer(BACKBONE_LAYER) is clf.backbone
    assert BACKBONE_LAYER == "backbone"
    assert not clf.backbone.trainable
    for name in ("head_dropout", "head_pool", "head_dense", "head_bn", "predictions", "resize"):
        clf.model.get_layer(name)
    assert clf.head.get_layer("predictions") is clf.model.get_layer("predictions")
    assert clf.head.get_layer("head_pool") is clf.model.get_layer("head_pool")
    assert clf.model.input_shape == (None, None, None, 3)
    assert clf.model.output_shape == (None, 3)
    assert clf.extractor.input_shape == (None, SIZE, SIZE, 3)
    assert clf.head.input_shape == clf.extractor.output_shape
    assert clf.image_size == SIZE
    trainable = {w.path for w in clf.model.trainable_weights}
    assert trainable and all(not p.startswith("tiny") and not p.startswith("backbone") for p in trainable)


def test_full_model_equals_head_on_extractor():
    clf = tiny_classifier()
    x = raw_images(3)
    full = np.asarray(clf.model(x, training=False))
    via_head = np.asarray(clf.head(clf.extractor(x, training=False), training=False))
    np.testing.assert_allclose(full, via_head, atol=1e-5)
    np.testing.assert_allclose(full.sum(axis=1), 1.0, atol=1e-5)


def test_head_and_full_model_share_head_weights():
    clf = tiny_classifier()
    x = raw_images(2)
    before = np.asarray(clf.model(x, training=False))
    layer = clf.head.get_layer("predictions")
    kernel, bias = layer.get_weights()
    rng = np.random.default_rng(1)
    layer.set_weights([rng.normal(size=kernel.shape).astype("float32"), bias + 1.0])
    after = np.asarray(clf.model(x, training=False))
    assert not np.allclose(before, after)
    # ... and training the head model moves the full model the same way.
    clf.head.compile(optimizer=keras.optimizers.Adam(1e-2), loss="sparse_categorical_crossentropy")
    feats = np.asarray(clf.extractor(x, training=False))
    clf.head.train_on_batch(feats, np.array([0, 1]))
    trained = np.asarray(clf.model(x, training=False))
    assert not np.allclose(after, trained)
    np.testing.assert_allclose(trained, np.asarray(clf.head(feats, training=False)), atol=1e-5)


@pytest.mark.parametrize("kind", ["caffe", "tf", "torch", "unit"])
def test_saved_model_loads_without_custom_objects_and_takes_any_size(tmp_path, kind):
    clf = tiny_classifier(kind)
    path = tmp_path / "model.keras"
    clf.model.save(path)
    loaded = keras.models.load_model(path)  # no custom_objects, no safe_mode=False
    for h, w in ((48, 40), (20, 70), (SIZE, SIZE)):
        x = raw_images(2, h, w, seed=h)
        np.testing.assert_allclose(np.asarray(loaded(x, training=False)),
                                   np.asarray(clf.model(x, training=False)), atol=1e-6)
    assert loaded.get_layer(BACKBONE_LAYER).name == "backbone"



def test_same_size_input_is_not_changed_by_the_resize_layer():
    clf = tiny_classifier()
    x = raw_images(2)
    resized = np.asarray(clf.model.get_layer("resize")(x))
    np.testing.assert_allclose(resized, x, atol=1e-3)
