"""Backbone registry: names, sizes, weights arguments, building and loading weights files."""
from __future__ import annotations


import numpy as np
import pytest

from headstart.shared.model import backbones
from headstart.shared.model.backbones import (REGISTRY, build_backbone, check_weights_arg, get_info,
                              load_backbone_weights, resolve_size)
from headstart.shared.runtime.errors import UserError
from tests.helpers import MOBILENET_160

needs_mobilenet_weights = pytest.mark.skipif(
    not MOBILENET_160.is_file(), reason=f"offline weights not present at {MOBILENET_160}")


# --------------------------------------------------------------------------- registry


def test_unknown_backbone_lists_valid_names():
    with pytest.raises(UserError) as info:
        get_info("resnet5O")
    message = str(info.value)
    assert message.startswith("`backbone` must be one of")
    assert "resnet5O" in message
    for name in REGISTRY:
        assert repr(name) in message


def test_registry_entries_are_consistent():
    assert "resnet50" in REGISTRY and "tiny" in REGISTRY
    for name, info in REGISTRY.items():
        assert info.name == name
        assert info.min_size <= info.default_size <= 1024
        assert info.preprocess in ("caffe", "tf", "torch", "none", "unit")
        assert get_info(name) is info
    assert not REGISTRY["tiny"].pretrained


def test_resolve_size_defaults_and_bounds():
    assert resolve_size(get_info("resnet50"), None) == 224
    assert resolve_size(get_info("efficientnet_b3"), None) == 300
    assert resolve_size(get_info("resnet50"), 32) == 32
    with pytest.raises(UserError, match="image_size") as info:
        resolve_size(get_info("inception_v3"), 64)
    assert "75" in str(info.value) and "inception_v3" in str(info.value) and "64" in str(info.value)
    with pytest.raises(UserError, match="between 16 and 1024"):
        resolve_size(get_info("tiny"), 8)
    with pytest.raises(UserError, match="image_size=2048"):
        resolve_size(get_info("resnet50"), 2048)


@pytest.mark.parametrize("value", ["imagenet", "none", "w.weights.h5", "s3://b/k/m.weights.h5"])
def test_weights_arg_accepts(value):
    assert check_weights_arg(value) == value


@pytest.mark.parametrize("value", ["Imagenet", "model.h5", "model.keras", "", "weights.h5.bak"])
def test_weights_arg_rejects_with_the_value_named(value):
    with pytest.raises(UserError, match="`weights` must be") as info:
        check_weights_arg(value)
    assert repr(value) in str(info.value)


def test_build_with_bad_weights_value_is_a_user_error():
    with pytest.raises(UserError, match="`weights` must be"):
        build_backbone("tiny", 32, weights="random")


def test_tiny_has_no_imagenet_weights():
    with pytest.raises(UserError, match="no ImageNet weights"):
        build_backbone("tiny", 32, weights="imagenet")


def test_imagenet_download_failure_is_a_user_error(monkeypatch):
    def offline(info):
        def build(shape, weights):
            raise OSError("network is unreachable")
        return build

    monkeypatch.setattr(backbones, "_constructor", offline)
    with pytest.raises(UserError, match="could not get ImageNet weights for 'resnet50'"):
        build_backbone("resnet50", 32, weights="imagenet")


# --------------------------------------------------------------------------- building


def test_tiny_builds():
    model = build_backbone("tiny", 32, weights="none")
    assert model.input_shape == (None, 32, 32, 3)
    assert model.output_shape == (None, 4, 4, 64)
    out = model(np.zeros((2, 32, 32, 3), dtype="float32"), training=False)
    assert tuple(out.shape) == (2, 4, 4, 64)


@pytest.mark.parametrize("name, channels", [("resnet50", 2048), ("mobilenet_v2", 1280)])
def test_application_backbones_build_without_weights_at_small_sizes(name, channels):
    model = build_backbone(name, 32, weights="none")
    assert model.input_shape == (None, 32, 32, 3)
    assert model.output_shape == (None, 1, 1, channels)


# --------------------------------------------------------------------------- weights files


@needs_mobilenet_weights
def test_offline_mobilenet_weights_load_into_mobilenet_v2_at_160():
    model = build_backbone("mobilenet_v2", 160, weights=str(MOBILENET_160))
    fresh = build_backbone("mobilenet_v2", 160, weights="none")
    loaded, random = model.get_weights(), fresh.get_weights()
    assert len(loaded) == len(random)
    assert any(not np.array_equal(a, b) for a, b in zip(loaded, random))


@needs_mobilenet_weights
def test_offline_mobilenet_weights_do_not_fit_resnet50():
    with pytest.raises(UserError, match="does not fit") as info:
        build_backbone("resnet50", 32, weights=str(MOBILENET_160))
    assert "resnet50" in str(info.value)


def test_missing_weights_file_is_a_user_error(tmp_path):
    path = tmp_path / "nope.weights.h5"
    with pytest.raises(UserError, match="weights file not found") as info:
        build_backbone("tiny", 32, weights=str(path))
    assert str(path) in str(info.value)


def test_missing_weights_file_on_s3_is_a_user_error(s3_bucket):
    with pytest.raises(UserError, match="weights file not found"):
        build_backbone("tiny", 32, weights=f"{s3_bucket}/missing.weights.h5")


def test_weights_of_another_model_do_not_fit(tmp_path):
    import keras

    other = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    path = tmp_path / "other.weights.h5"
    other.save_weights(str(path))
    with pytest.raises(UserError, match="does not fit backbone 'tiny'"):
        build_backbone("tiny", 32, weights=str(path))


def test_local_weights_file_round_trip(tmp_path):
    source = build_backbone("tiny", 32, weights="none")
    path = tmp_path / "tiny.weights.h5"
    source.save_weights(str(path))
    model = build_backbone("tiny", 48, weights=str(path))  # convolutional: any size fits
    for a, b in zip(source.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_weights_from_s3(s3_bucket, tmp_path):
    from headstart.shared.storage.store import open_store

    source = build_backbone("tiny", 32, weights="none")
    path = tmp_path / "tiny.weights.h5"
    source.save_weights(str(path))
    open_store(s3_bucket).upload_file("models/tiny.weights.h5", path)

    model = build_backbone("tiny", 32, weights=f"{s3_bucket}/models/tiny.weights.h5")
    for a, b in zip(source.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)
    x = np.random.default_rng(0).uniform(0, 1, (1, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(model(x, training=False), source(x, training=False), atol=1e-6)


def test_weights_from_s3_leave_no_temporary_copy(s3_bucket, tmp_path, monkeypatch):
    import tempfile

    from headstart.shared.storage.store import open_store

    source = build_backbone("tiny", 32, weights="none")
    path = tmp_path / "tiny.weights.h5"
    source.save_weights(str(path))
    open_store(s3_bucket).upload_file("tiny.weights.h5", path)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    build_backbone("tiny", 32, weights=f"{s3_bucket}/tiny.weights.h5")
    assert list(scratch.iterdir()) == []
    with pytest.raises(UserError, match="does not fit"):
        build_backbone("resnet50", 32, weights=f"{s3_bucket}/tiny.weights.h5")
    assert list(scratch.iterdir()) == []


def test_load_backbone_weights_into_existing_model(tmp_path):
    source = build_backbone("tiny", 32, weights="none")
    path = tmp_path / "t.weights.h5"
    source.save_weights(str(path))
    target = build_backbone("tiny", 32, weights="none")
    load_backbone_weights(target, "tiny", str(path))
    for a, b in zip(source.get_weights(), target.get_weights()):
        np.testing.assert_array_equal(a, b)


# --------------------------------------------------------------------------- every registry entry

# The heaviest builds (seconds each on 2 cores) are marked so a quick local loop can skip them
# with -m "not heavy_backbone"; CI runs them all.
_HEAVY = {"resnet101", "efficientnet_b3", "inception_v3", "xception", "convnext_tiny", "densenet121"}


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.heavy_backbone) if n in _HEAVY
                                  else n for n in sorted(REGISTRY)])
def test_every_backbone_builds_saves_and_predicts(name, tmp_path):
    """Build each registry entry (no weights, its smallest input), assemble the classifier, save
    it as model.keras, load it back in safe mode and push a batch of raw 0-255 images through."""
    import keras

    from headstart.shared.model.classifier import assemble

    info = get_info(name)
    size = info.min_size
    clf = assemble(build_backbone(name, size, weights="none"), info, size, n_classes=3, head_width=8)
    path = tmp_path / "model.keras"
    clf.model.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    batch = np.random.default_rng(0).uniform(0, 255, (2, size + 5, size + 3, 3)).astype("float32")
    probs = np.asarray(loaded(batch, training=False))
    assert probs.shape == (2, 3)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-4)
    if name not in _HEAVY:  # a second graph run costs seconds on the big ones
        np.testing.assert_allclose(probs, np.asarray(clf.model(batch, training=False)), atol=1e-4)
