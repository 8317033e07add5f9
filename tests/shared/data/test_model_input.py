"""One preprocessing path: what every loader hands the backbone equals what the saved model
computes from ``decode_image`` itself, and the in-model resize converts to builtin TFLite."""
from __future__ import annotations

import numpy as np
import pytest

from headstart.shared.data.datasets import Item
from headstart.shared.data.images import decode_image
from headstart.shared.data.imagesets import ImageRef, iter_chunks
from headstart.shared.data.loading import load_split
from headstart.shared.data.modelinput import resize_layer, resizer, to_uint8
from headstart.shared.storage.store import open_store
from tests.helpers import encode

SIZE = 32
# (height, width, format): smaller and larger than the input, both aspect ratios, and sources
# >= 2x the input (shrunk while decoding: DCT-domain for JPEG, box filter for PNG).
SHAPES = [(20, 50, "PNG"), (32, 32, "PNG"), (64, 40, "JPEG"), (90, 200, "JPEG"),
          (300, 130, "PNG"), (33, 31, "WEBP"), (257, 513, "JPEG")]


def picture(h: int, w: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    smooth = np.stack([x * 255 / max(w - 1, 1), y * 255 / max(h - 1, 1), (x + y) % 64 * 4], -1)
    return np.clip(smooth + rng.normal(0, 20, (h, w, 3)), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    import keras

    from headstart.shared.model.backbones import build_backbone, get_info
    from headstart.shared.model.classifier import assemble

    keras.utils.set_random_seed(3)
    clf = assemble(build_backbone("tiny", SIZE, "none"), get_info("tiny"), SIZE, 3, head_width=16)
    path = tmp_path_factory.mktemp("m") / "model.keras"
    clf.model.save(path)
    return keras.models.load_model(path)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("mixed")
    store = open_store(str(root))
    out = {}
    for i, (h, w, fmt) in enumerate(SHAPES):
        key = f"{'abc'[i % 3]}/img{i}.{fmt.lower()}"
        data = encode(picture(h, w, i), fmt, **({"quality": 90} if fmt != "PNG" else {}))
        store.write_bytes(key, data)
        out[key] = data
    return store, out


def plain_keras(model, data: bytes) -> np.ndarray:
    """What a user gets: the saved model applied to the decoded image, one at a time."""
    image = decode_image(data, target=SIZE)
    return np.asarray(model(image[None].astype(np.float32), training=False))[0]


def test_load_split_gives_the_saved_models_probabilities(saved_model, files):
    from headstart.shared.model.predict import predict_arrays

    store, data = files
    items = [Item(k, k.split("/")[0]) for k in data]
    split = load_split(store, "t", items, ["a", "b", "c"], SIZE, model=saved_model, workers=3)
    assert split.images.shape == (len(SHAPES), SIZE, SIZE, 3) and split.images.dtype == np.float32
    probs = predict_arrays(saved_model, split.images, batch_size=4)
    expected = np.stack([plain_keras(saved_model, data[k]) for k in split.keys])
    np.testing.assert_allclose(probs, expected, atol=1e-5)
    assert np.abs(probs - expected).max() < 1e-5


def test_image_sets_give_the_saved_models_probabilities(saved_model, files):
    from headstart.shared.model.predict import predict_arrays

    store, data = files
    refs = [ImageRef(store.uri, k) for k in data]
    chunks = list(iter_chunks(refs, SIZE, 48, chunk=3, model=saved_model))
    assert [len(c.refs) for c in chunks] == [3, 3, 1]
    for chunk in chunks:
        assert chunk.display.shape[1:] == (48, 48, 3) and chunk.display.dtype == np.uint8
        probs = predict_arrays(saved_model, chunk.model, batch_size=2)
        expected = np.stack([plain_keras(saved_model, data[r.key]) for r in chunk.refs])
        np.testing.assert_allclose(probs, expected, atol=1e-5)


def test_loaders_do_not_round_or_pil_resize(files):
    store, data = files
    key = next(k for k in data if k.endswith("img0.png"))  # 20 x 50: upsampled by the layer
    split = load_split(store, "t", [Item(key, "a")], ["a"], SIZE)
    exact = resizer(SIZE)(decode_image(data[key], target=SIZE))
    np.testing.assert_array_equal(split.images[0], exact)
    assert not np.allclose(split.images[0], np.rint(split.images[0]))  # float, not uint8
    assert to_uint8(split.images[:1]).dtype == np.uint8


def test_same_size_images_pass_the_resize_unchanged():
    x = picture(SIZE, SIZE, 9)
    np.testing.assert_array_equal(resizer(SIZE)(x), x.astype(np.float32))


def test_models_own_resize_layer_is_used(files):
    """An older model's settings (plain bilinear) are honoured: parity with that model too."""
    import keras

    inp = keras.Input((None, None, 3))
    old = keras.Model(inp, keras.layers.Resizing(SIZE, SIZE, antialias=False, name="resize")(inp))
    image = decode_image(files[1][next(iter(files[1]))], target=SIZE)
    np.testing.assert_allclose(resizer(SIZE, old)(image), np.asarray(old(image[None].astype("float32")))[0],
                               atol=1e-6)
    assert not np.allclose(resizer(SIZE, old)(image), resizer(SIZE)(image), atol=1e-3)


def _tflite_probs(flat: bytes, image: np.ndarray) -> np.ndarray:
    import tensorflow as tf

    interpreter = tf.lite.Interpreter(model_content=flat)
    detail = interpreter.get_input_details()[0]
    interpreter.resize_tensor_input(detail["index"], [1, *image.shape])
    interpreter.allocate_tensors()
    interpreter.set_tensor(detail["index"], image[None].astype(np.float32))
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])[0]


def test_in_model_resize_converts_to_builtin_tflite(saved_model):
    """The saved layer antialiases (no TFLite builtin); export's portable copy swaps in the
    bilinear builtin, which equals it at the input size and when upscaling."""
    import tensorflow as tf

    from headstart.jobs.export.convert import portable

    assert resize_layer(SIZE).get_config()["antialias"] is True
    model, replaced = portable(saved_model)
    assert replaced
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]  # no Flex, no custom
    flat = converter.convert()
    for h, w in ((SIZE, SIZE), (20, 30), (SIZE, 24)):  # identity and upscales: same pixels
        image = picture(h, w, 1).astype(np.float32)
        np.testing.assert_allclose(_tflite_probs(flat, image), np.asarray(saved_model(image[None]))[0],
                                   atol=1e-4)
    big = resizer(SIZE, saved_model)(picture(90, 200, 1))  # a large image, resized as jobs do
    np.testing.assert_allclose(_tflite_probs(flat, big), np.asarray(saved_model(big[None]))[0], atol=1e-4)


def test_antialiased_layer_does_not_convert_as_is(saved_model):
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(saved_model)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    with pytest.raises(Exception, match="ScaleAndTranslate"):
        converter.convert()


@pytest.mark.parametrize("h, w", [(20, 20), (SIZE, SIZE), (20, 50), (90, 200), (SIZE, SIZE + 1), (7, 31)])
def test_resizer_equals_the_models_antialiased_layer(h, w):
    """Upscales take the plain bilinear op (the antialiased kernel is bilinear there): the
    same values within float rounding; downscales run the layer itself, bit for bit."""
    image = picture(h, w, 5)
    got = resizer(SIZE)(image)
    want = np.asarray(resize_layer(SIZE)(image[None].astype(np.float32)))[0]
    if h > SIZE or w > SIZE:
        np.testing.assert_array_equal(got, want)
    else:
        np.testing.assert_allclose(got, want, atol=1e-4)
