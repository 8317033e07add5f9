"""Streaming prediction: ordered bounded decode pool, batches, failures kept, flip TTA."""
from __future__ import annotations

import threading
import time

import keras
import numpy as np

from headstart.shared.model.predict import ordered_map, stream_batches, tta_call


def test_ordered_map_keeps_order_and_bounds_in_flight() -> None:
    lock, state = threading.Lock(), {"running": 0, "peak": 0, "submitted": 0}

    def slow(i: int) -> int:
        with lock:
            state["running"] += 1
            state["peak"] = max(state["peak"], state["running"])
        time.sleep(0.002 * (i % 3))  # out-of-order completion
        with lock:
            state["running"] -= 1
        return i * i

    def items():
        for i in range(60):
            state["submitted"] += 1
            yield i
    got = []
    for value in ordered_map(slow, items(), workers=4, window=6):
        got.append(value)
        assert state["submitted"] - len(got) <= 6  # never more than the window ahead
    assert got == [i * i for i in range(60)] and state["peak"] <= 4


def _model() -> keras.Model:
    keras.utils.set_random_seed(0)
    x = keras.Input((None, None, 3))
    y = keras.layers.Conv2D(4, 3)(x)
    y = keras.layers.GlobalAveragePooling2D()(y)
    return keras.Model(x, keras.layers.Dense(3, activation="softmax")(y))


def test_stream_batches_and_tta() -> None:
    model = _model()
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 1, (11, 8, 8, 3)).astype(np.float32)  # small: the softmax does not saturate
    bad = {3, 7}

    def decode(i: int):
        return f"bad {i}" if i in bad else (images[i], i)
    batches = list(stream_batches(model, list(range(11)), decode, batch_size=4, workers=2))
    kept = [i for b in batches for i in b[0]]
    assert kept == [i for i in range(11) if i not in bad]
    assert [f for b in batches for f in b[3]] == ["bad 3", "bad 7"]
    assert all(len(b[0]) <= 4 for b in batches) and [e for b in batches for e in b[2]] == kept
    probs = np.concatenate([b[1] for b in batches])
    want = np.asarray(model(images[kept], training=False))
    assert np.abs(probs - want).max() < 1e-5
    flip = list(stream_batches(model, list(range(11)), decode, batch_size=4, tta=True))
    tta = np.concatenate([b[1] for b in flip])
    mirrored = np.asarray(model(images[kept][:, :, ::-1], training=False))
    assert np.abs(tta - (want + mirrored) / 2).max() < 1e-5
    assert np.abs(tta - want).max() > 1e-6  # the mirror really changed something
    call = tta_call(lambda x: np.asarray(model(x, training=False)), False)
    assert np.abs(call(images[:2]) - want[:2]).max() < 1e-5


def test_stream_batches_group_mixed_shapes_in_order() -> None:
    """A model that resizes itself takes a batch of raw images of one size; a batch of mixed
    sizes goes through it once per size, and the rows come back in input order."""
    inp = keras.Input((None, None, 3))
    model = keras.Model(inp, _model()(keras.layers.Resizing(8, 8, antialias=True)(inp)))
    rng = np.random.default_rng(1)
    shapes = [(12, 12), (8, 8), (12, 12), (5, 9), (12, 12), (8, 8), (12, 12)]
    images = [rng.uniform(0, 1, (*s, 3)).astype(np.float32) for s in shapes]
    batches = list(stream_batches(model, list(range(len(images))), lambda i: (images[i], i),
                                  batch_size=5, workers=2))
    probs = np.concatenate([b[1] for b in batches])
    want = np.concatenate([np.asarray(model(im[None], training=False)) for im in images])
    assert [i for b in batches for i in b[0]] == list(range(len(images)))
    assert np.abs(probs - want).max() < 1e-5


def test_batch_resize_decoder_keeps_the_common_shape_raw(tmp_path) -> None:
    """``image_decoder(batch_resize=True)``: the first decoded shape comes back decoded (the
    model resizes it), any other shape resized by the model's layer; both give the plain
    model's probabilities."""
    from headstart.shared.data.imagesets import ImageRef, image_decoder
    from headstart.shared.data.modelinput import resize_layer
    from tests.helpers import encode

    rng = np.random.default_rng(2)
    sizes = [(40, 30), (40, 30), (20, 60), (40, 30)]
    for i, (h, w) in enumerate(sizes):
        (tmp_path / f"{i}.png").write_bytes(encode(rng.integers(0, 255, (h, w, 3), dtype=np.uint8), "PNG"))
    inp = keras.Input((None, None, 3))
    model = keras.Model(inp, _model()(resize_layer(16)(inp)))
    decode = image_decoder(16, 0, model=model, batch_resize=True)
    refs = [ImageRef(str(tmp_path), f"{i}.png") for i in range(len(sizes))]
    got = [decode(r)[0] for r in refs]
    assert [g.shape[:2] for g in got] == [(40, 30), (40, 30), (16, 16), (40, 30)]
    assert got[0].dtype == np.uint8 and got[2].dtype == np.float32
    batches = list(stream_batches(model, refs, decode, batch_size=4, workers=2))
    probs = np.concatenate([b[1] for b in batches])
    plain = np.concatenate([np.asarray(model(image_decoder(16, 0, model=model)(r)[1][None].astype(np.float32)))
                            for r in refs])
    assert np.abs(probs - plain).max() < 1e-5
