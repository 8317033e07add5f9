"""Grad-CAM library: localisation on a constructed model, batching, targets, nested backbones,
faithfulness, overlays, sharding and image-set resolution."""
from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
keras = pytest.importorskip("keras")

from headstart.shared.explain.camgraph import build_cam_graph, find_target_layer  # noqa: E402
from headstart.shared.runtime.errors import UserError  # noqa: E402
from headstart.shared.explain.gradcam import METHODS, PREDICTED, make_cam, peak_location, upsample  # noqa: E402

SIZE = 32
REGION = (slice(4, 7), slice(1, 4))      # feature cells (8x8 grid) the class score may see
PATCH = (slice(20, 28), slice(8, 16))    # pixels of the evidence inside REGION
DISTRACTOR = (slice(0, 8), slice(20, 32))  # an equally bright patch outside REGION


@keras.saving.register_keras_serializable(package="headstart_tests")
class FixedMask(keras.layers.Layer):
    """Zeroes every feature cell outside a fixed region."""

    def __init__(self, mask, **kwargs):
        super().__init__(**kwargs)
        self.mask = np.asarray(mask, "float32")

    def call(self, x):
        return x * self.mask[None, :, :, None]

    def get_config(self):
        return {**super().get_config(), "mask": self.mask.tolist()}


def region_model() -> keras.Model:
    """A classifier whose class-0 score depends only on REGION of the image (class 1: negated)."""
    from headstart.shared.model.backbones import get_info
    from headstart.shared.model.classifier import assemble

    mask = np.zeros((8, 8), "float32")
    mask[REGION] = 1
    inp = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.AveragePooling2D(4, name="pool")(inp)
    x = keras.layers.Conv2D(4, 1, kernel_initializer="ones", name="feat")(x)
    x = keras.layers.ReLU(name="feat_relu")(x)
    x = FixedMask(mask, name="masked")(x)
    clf = assemble(keras.Model(inp, x), get_info("tiny"), SIZE, 2, head_width=4)
    clf.model.get_layer("head_dense").set_weights([np.eye(4, dtype="float32"), np.zeros(4, "float32")])
    clf.model.get_layer("predictions").set_weights([np.tile([[1.0, -1.0]], (4, 1)).astype("float32"),
                                                    np.zeros(2, "float32")])
    return clf.model


def region_images(n: int = 3) -> np.ndarray:
    rng = np.random.default_rng(1)
    images = rng.uniform(0, 20, (n, SIZE, SIZE, 3)).astype("float32")
    images[:, PATCH[0], PATCH[1]] = 255
    images[:, DISTRACTOR[0], DISTRACTOR[1]] = 255
    return images


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> keras.Model:
    """A saved-and-reloaded Headstart model with the nested tiny backbone (random weights)."""
    from headstart.shared.model.backbones import build_backbone, get_info
    from headstart.shared.model.classifier import assemble

    keras.utils.set_random_seed(3)
    clf = assemble(build_backbone("tiny", SIZE, "none"), get_info("tiny"), SIZE, 3, head_width=8)
    path = tmp_path_factory.mktemp("model") / "model.keras"
    clf.model.save(path)
    return keras.models.load_model(path)


@pytest.mark.parametrize("method", sorted(METHODS))
def test_heatmap_peaks_where_the_class_evidence_is(method: str) -> None:
    model = region_model()
    result = make_cam(method, build_cam_graph(model))(region_images())
    assert result.heatmaps.shape == (3, 8, 8)
    assert (result.targets == 0).all()
    for heat in result.heatmaps:
        row, col = np.unravel_index(np.argmax(heat), heat.shape)
        assert row in (5, 6) and col in (2, 3), (method, heat.round(2))  # PATCH cells
        assert heat[0:2, 5:8].max() == 0  # the distractor cannot raise the score


def test_gradcam_at_an_earlier_layer_covers_the_evidence() -> None:
    # Before the mask the distractor is active too; Grad-CAM's spatially averaged weights
    # cannot tell them apart (a known limit of the method), but the evidence must be lit.
    model = region_model()
    result = make_cam("gradcam", build_cam_graph(model, "feat_relu"))(region_images())
    heat = result.heatmaps[0]
    assert heat[5:7, 2:4].min() > 0.9
    x, y = peak_location(heat)
    assert 0 <= x <= 1 and 0 <= y <= 1


@pytest.mark.parametrize("method", ["gradcam", "gradcam++"])
def test_batched_equals_per_image(tiny_model, method: str) -> None:
    images = np.random.default_rng(0).uniform(0, 255, (6, 40, 40, 3)).astype("float32")
    cam = make_cam(method, build_cam_graph(tiny_model))
    batched = cam(images)
    single = [cam(images[i:i + 1]) for i in range(len(images))]
    np.testing.assert_allclose(batched.heatmaps, np.concatenate([s.heatmaps for s in single]), atol=1e-4)
    np.testing.assert_allclose(batched.probs, np.concatenate([s.probs for s in single]), atol=1e-5)
    run = cam.run(images, batch_size=4)
    np.testing.assert_allclose(run.heatmaps, batched.heatmaps, atol=1e-4)


def test_target_selection(tiny_model) -> None:
    images = np.random.default_rng(2).uniform(0, 255, (4, SIZE, SIZE, 3)).astype("float32")
    cam = make_cam("gradcam", build_cam_graph(tiny_model))
    predicted = cam(images)
    np.testing.assert_array_equal(predicted.targets, predicted.probs.argmax(axis=1))
    chosen = cam(images, [2, 1, 0, PREDICTED])
    assert chosen.targets.tolist()[:3] == [2, 1, 0]
    assert chosen.targets[3] == predicted.targets[3]
    other = (predicted.targets + 1) % 3
    assert not np.allclose(cam(images, other).heatmaps, predicted.heatmaps)
    # the region model's class 1 score falls with the evidence: no positive map anywhere
    assert make_cam("gradcam", build_cam_graph(region_model()))(region_images(), [1, 1, 1]).heatmaps.max() == 0


def test_nested_backbone_graph_reproduces_the_model(tiny_model) -> None:
    assert isinstance(tiny_model.get_layer("backbone"), keras.Model)
    graph = build_cam_graph(tiny_model)
    assert graph.layer_name == "block3_relu" and graph.feature_shape == (4, 4)
    assert graph.check(tiny_model) < 1e-5
    earlier = build_cam_graph(tiny_model, "block2_relu")
    assert earlier.feature_shape == (8, 8) and earlier.check(tiny_model) < 1e-5
    assert make_cam("gradcam", earlier)(np.zeros((2, 50, 60, 3), "float32")).heatmaps.shape == (2, 8, 8)


def test_flat_model_without_nested_backbone() -> None:
    inp = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Conv2D(4, 3, strides=2, activation="relu", name="conv")(inp)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inp, keras.layers.Dense(3, activation="softmax")(x))
    graph = build_cam_graph(model)
    assert graph.layer_name == "conv" and graph.check(model) < 1e-5


def test_bad_layer_and_method_are_user_errors(tiny_model) -> None:
    with pytest.raises(UserError, match="layer='nope'"):
        find_target_layer(tiny_model, "nope")
    with pytest.raises(UserError, match="method='scorecam'"):
        make_cam("scorecam", build_cam_graph(tiny_model))


def test_faithfulness_prefers_the_heatmap_over_random_masks() -> None:
    from headstart.shared.explain.faithfulness import faithfulness, model_predictor, top_mask

    mask = top_mask(np.random.default_rng(0).random((2, 10, 10)), 0.2)
    assert mask.sum(axis=(1, 2)).tolist() == [20, 20]
    model = region_model()
    images = region_images()
    result = make_cam("gradcam", build_cam_graph(model))(images)
    base = result.probs[np.arange(3), result.targets]
    faith = faithfulness(model_predictor(model), images, result.heatmaps, result.targets, base)
    assert (faith.drop_top > faith.drop_random).all()
    np.testing.assert_allclose(faith.score, faith.drop_top - faith.drop_random, atol=1e-6)


def test_upsample_and_overlay_png() -> None:
    import io

    from PIL import Image

    from headstart.shared.explain.overlay import overlay_png

    heat = upsample(np.eye(4, dtype="float32")[None], 64, 64)
    assert heat.shape == (1, 64, 64) and 0 <= heat.min() <= heat.max() <= 1
    png = overlay_png(np.zeros((64, 64, 3), np.uint8), heat[0], "daisy 0.93")
    img = Image.open(io.BytesIO(png))
    assert img.width == 64 and img.height > 64  # the caption bar sits below the image
    with pytest.raises(UserError, match="colormap='nope'"):
        overlay_png(np.zeros((8, 8, 3), np.uint8), heat[0], "x", cmap="nope")
