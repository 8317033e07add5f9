"""The fast path's feature cache and the seeded batch sequences both training paths use."""
from __future__ import annotations


import numpy as np
import pytest

from headstart.shared.data import scratch
from headstart.shared.model.backbones import build_backbone, get_info
from headstart.shared.model import features
from headstart.shared.model.features import ArrayBatches, augmenter, extract_batch, extract_features, largest_activation
from headstart.shared.model.classifier import assemble

SIZE = 32


@pytest.fixture(scope="module")
def classifier():
    info = get_info("tiny")
    return assemble(build_backbone("tiny", SIZE, "none"), info, SIZE, n_classes=3, head_width=8)


def images(n: int, seed: int = 0) -> np.ndarray:
    # Smooth-ish pictures so flips/rotations visibly change them.
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:SIZE, 0:SIZE]
    base = np.stack([x * 8, y * 8, (x * y) % 256], axis=-1)
    return np.stack([(base + rng.integers(0, 60, 3)) % 256 for _ in range(n)]).astype(np.uint8)


# --------------------------------------------------------------------------- extract_features


def test_the_cpu_batch_fits_the_largest_activation_in_the_budget(monkeypatch) -> None:
    import keras

    inner = keras.Sequential([keras.Input((20, 20, 3)), keras.layers.Conv2D(50, 3, padding="same")])
    outer = keras.Sequential([keras.Input((20, 20, 3)), inner, keras.layers.MaxPooling2D(2),
                              keras.layers.Conv2D(8, 1)])
    assert largest_activation(outer) == 20 * 20 * 50  # found inside the nested model
    monkeypatch.setattr(features, "on_gpu", lambda: False)
    per_image = 4 * 20 * 20 * 50
    monkeypatch.setattr(features, "CPU_BATCH_BYTES", 10 * per_image + per_image // 2)
    assert extract_batch(outer, 256) == 10  # the CPU batch is the cache's, not the head's
    monkeypatch.setattr(features, "CPU_BATCH_BYTES", per_image)
    assert extract_batch(outer) == features.CPU_MIN_BATCH
    monkeypatch.setattr(features, "CPU_BATCH_BYTES", 10**6 * per_image)
    assert extract_batch(outer) == features.EXTRACT_BATCH
    monkeypatch.setattr(features, "on_gpu", lambda: True)
    assert extract_batch(outer, 8) == features.EXTRACT_BATCH and extract_batch(outer, 256) == 256


def test_features_do_not_depend_on_how_the_stream_is_cut(classifier) -> None:
    from headstart.shared.model.features import extract_batches

    data = images(23)
    whole = extract_features(classifier.extractor, data, batch_size=4, desc="feat")
    step = extract_batch(classifier.extractor, 4)
    cuts = (data[i:i + step].astype(np.float32) for i in range(0, len(data), step))
    assert np.array_equal(extract_batches(classifier.extractor, cuts, len(data), 4, "feat"), whole)


def test_extract_features_shape_dtype_and_plain_view(classifier):
    data = images(5)
    feats = extract_features(classifier.extractor, data, batch_size=2, desc="feat",
                             views=3, augment=augmenter(seed=1))
    assert feats.shape == (5, 3, 4, 4, 64)
    assert feats.dtype == np.float16
    plain = np.asarray(classifier.extractor(data.astype("float32"), training=False))
    np.testing.assert_allclose(feats[:, 0].astype("float32"), plain, rtol=2e-3, atol=2e-3)
    for v in (1, 2):
        assert not np.allclose(feats[:, v].astype("float32"), plain, atol=1e-2), v
    assert not np.allclose(feats[:, 1], feats[:, 2], atol=1e-2)


def test_extract_features_single_view_needs_no_augmenter(classifier):
    data = images(3, seed=1)
    feats = extract_features(classifier.extractor, data, batch_size=8, desc="feat")
    assert feats.shape == (3, 1, 4, 4, 64) and feats.dtype == np.float16
    plain = np.asarray(classifier.extractor(data.astype("float32"), training=False))
    np.testing.assert_allclose(feats[:, 0].astype("float32"), plain, rtol=2e-3, atol=2e-3)


def test_extract_features_memmap_path(classifier, tmp_path, monkeypatch):
    data = images(4, seed=2)
    in_memory = extract_features(classifier.extractor, data, batch_size=3, desc="feat")
    monkeypatch.setattr(scratch, "MEMMAP_BYTES", 0)
    mapped = extract_features(classifier.extractor, data, batch_size=3, desc="feat",
                              cache_dir=str(tmp_path))
    assert isinstance(mapped, np.memmap)
    assert list(tmp_path.glob("features-*.npy"))
    np.testing.assert_array_equal(np.asarray(mapped), in_memory)


def test_extract_features_empty(classifier):
    feats = extract_features(classifier.extractor, np.zeros((0, SIZE, SIZE, 3), np.uint8), batch_size=4,
                             desc="feat")
    assert feats.shape == (0, 1, 4, 4, 64)


def test_augmenter_keeps_shape_and_changes_pixels():
    aug = augmenter(seed=3)
    x = images(2).astype("float32")
    out = np.asarray(aug(x, training=True))
    assert out.shape == x.shape
    assert not np.allclose(out, x)
    np.testing.assert_allclose(np.asarray(aug(x, training=False)), x)


# --------------------------------------------------------------------------- ArrayBatches


def view_data(n: int, views: int) -> np.ndarray:
    """data[i, v] = [i, v]: every batch row says which sample and view it came from."""
    i, v = np.meshgrid(np.arange(n), np.arange(views), indexing="ij")
    return np.stack([i, v], axis=-1).astype(np.float16)


def epoch(batches: ArrayBatches) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = zip(*(batches[i] for i in range(len(batches))))
    return np.concatenate(xs), np.concatenate(ys)


def test_every_sample_once_per_epoch_with_its_label_and_one_view():
    n, views, batch = 11, 3, 4
    labels = np.arange(n, dtype=np.int32) * 10
    ds = ArrayBatches(view_data(n, views), labels, batch_size=batch, seed=5, has_views=True)
    assert len(ds) == 3
    seen_views = set()
    for e in range(4):
        ds.set_epoch(e)
        parts = [ds[i] for i in range(len(ds))]
        # Every training batch has one shape (one traced step): the last is topped up from the
        # start of the epoch's order, so each sample comes once plus those few repeats.
        assert [len(y) for _, y in parts] == [batch] * 3
        x, y = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
        assert x.dtype == np.float32 and x.shape == (len(ds) * batch, 2)
        samples = x[:, 0].astype(int)
        counts = np.bincount(samples, minlength=n)
        assert counts.min() == 1 and counts.sum() == len(ds) * batch
        assert set(np.flatnonzero(counts == 2)) == set(ds.order[: len(ds) * batch - n].tolist())
        np.testing.assert_array_equal(y, samples * 10)                    # labels stay paired
        np.testing.assert_array_equal(x[:, 1].astype(int), ds.view[samples])  # one view per sample
        assert set(x[:, 1].astype(int)) <= set(range(views))
        seen_views |= set(x[:, 1].astype(int).tolist())
    assert seen_views == set(range(views))


def test_exact_multiple_of_the_batch_size_has_no_repeats():
    ds = ArrayBatches(view_data(12, 2), np.arange(12), batch_size=4, seed=1, has_views=True)
    x, y = epoch(ds)
    assert sorted(y.tolist()) == list(range(12))
    small = ArrayBatches(view_data(3, 2), np.arange(3), batch_size=8, seed=1, has_views=True)
    assert len(small) == 1 and sorted(small[0][1].tolist()) == [0, 1, 2]  # fewer than one batch


def test_order_depends_only_on_seed_and_epoch():
    n = 20
    data, labels = view_data(n, 2), np.arange(n)
    a = ArrayBatches(data, labels, batch_size=6, seed=1, has_views=True)
    b = ArrayBatches(data, labels, batch_size=6, seed=1, has_views=True)
    other_seed = ArrayBatches(data, labels, batch_size=6, seed=2, has_views=True)
    for e in (0, 3):
        a.set_epoch(e)
        b.set_epoch(e)
        other_seed.set_epoch(e)
        xa, ya = epoch(a)
        xb, yb = epoch(b)
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
        assert not np.array_equal(epoch(other_seed)[1], ya)
    a.set_epoch(0)
    first = epoch(a)[1]
    a.set_epoch(1)
    second = epoch(a)[1]
    assert not np.array_equal(first, second)
    a.set_epoch(0)  # resuming at an epoch replays it exactly
    np.testing.assert_array_equal(epoch(a)[1], first)


def test_batches_are_sorted_indices_within_a_batch():
    ds = ArrayBatches(np.arange(10, dtype=np.float32)[:, None], np.arange(10), batch_size=4, seed=0)
    for i in range(len(ds)):
        _, y = ds[i]
        assert list(y) == sorted(y)


def test_no_shuffle_is_in_order_with_view_zero():
    n = 7
    ds = ArrayBatches(view_data(n, 3), np.arange(n), batch_size=3, seed=9, shuffle=False, has_views=True)
    ds.set_epoch(4)
    x, y = epoch(ds)
    np.testing.assert_array_equal(y, np.arange(n))
    np.testing.assert_array_equal(x[:, 1], 0)
    assert [len(ds[i][1]) for i in range(len(ds))] == [3, 3, 1]


def test_plain_arrays_without_views():
    data = np.arange(8 * 2 * 2 * 3, dtype=np.uint8).reshape(8, 2, 2, 3)
    ds = ArrayBatches(data, np.arange(8), batch_size=4, seed=0)
    x, y = epoch(ds)
    assert x.shape == (8, 2, 2, 3) and x.dtype == np.float32
    assert sorted(y.tolist()) == list(range(8))
    np.testing.assert_array_equal(x, data[y].astype(np.float32))


def test_augment_is_applied_per_batch():
    x = images(4).astype(np.float32)
    ds = ArrayBatches(x, np.arange(4), batch_size=4, seed=0, augment=augmenter(seed=0))
    out, y = ds[0]
    assert out.shape == x.shape and not np.allclose(out, x[y])


# --------------------------------------------------------------------------- predict_arrays


def test_predict_arrays_batches_match_one_call(classifier):
    from headstart.shared.model.predict import predict_arrays

    data = images(5, seed=4)
    probs = predict_arrays(classifier.model, data, batch_size=2)
    assert probs.shape == (5, 3)
    np.testing.assert_allclose(probs, np.asarray(classifier.model(data.astype("float32"), training=False)),
                               atol=1e-5)
    empty = predict_arrays(classifier.model, data[:0])
    assert empty.shape == (0, 3)


def test_compiled_call_casts_in_the_graph_to_the_same_bits(classifier):
    from headstart.shared.model.features import compiled_call

    data = images(6, seed=2).astype(np.float32)
    f32 = np.asarray(compiled_call(classifier.extractor)(data))
    f16 = np.asarray(compiled_call(classifier.extractor, dtype="float16")(data))
    assert f32.dtype == np.float32 and f16.dtype == np.float16
    np.testing.assert_array_equal(f16.view(np.uint16), f32.astype(np.float16).view(np.uint16))
