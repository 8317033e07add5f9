"""Decoding streams into the frozen base: same features as decoding everything first, bounded
look-ahead, split metadata complete, timing stamps in metrics.json, scratch and BLAS helpers."""
from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from headstart.shared.data.datasets import Item, SplitConfig, discover
from headstart.shared.data.loading import Prefetch, load_split, stream_split
from headstart.shared.storage.store import open_store

SIZE = 32


def _clf():
    from headstart.shared.model.backbones import build_backbone, get_info
    from headstart.shared.model.classifier import assemble

    import keras

    keras.utils.set_random_seed(0)
    return assemble(build_backbone("tiny", SIZE, "none"), get_info("tiny"), SIZE, 4)


def _spec(dataset: str, tmp_path: Path, augment_views: int = 0):
    return SimpleNamespace(dataset=dataset, batch_size=None, min_side=8, max_pixels=10**8,
                           augment_views=augment_views, seed=3, cache_dir=str(tmp_path / "cache"))


def _with_a_bad_file(shapes_dataset: str, tmp_path: Path) -> str:
    """A copy of the shapes dataset with one corrupt file among the images."""
    import shutil

    root = tmp_path / "data"
    shutil.copytree(shapes_dataset, root)
    label = sorted(p for p in root.iterdir() if p.is_dir())[0]
    (label / "0000-broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    return str(root)


@pytest.mark.parametrize("augment_views", [0, 1])
def test_streamed_features_equal_decode_everything_first(shapes_dataset, tmp_path, augment_views):
    from headstart.jobs.train.spec import TrainSpec
    from headstart.jobs.train.stage import split_features, start_decode
    from headstart.shared.model.features import augmenter, extract_features
    from headstart.shared.model.selection import pooled

    dataset = _with_a_bad_file(shapes_dataset, tmp_path)
    index = discover(dataset, SplitConfig.from_spec(TrainSpec(dataset=dataset, out="unused")))
    clf = _clf()
    spec = _spec(dataset, tmp_path, augment_views)
    source = start_decode(spec, index, SIZE)
    try:
        streamed = {name: (split, maps) for name, split, maps in
                    split_features(spec, index, clf, source, SIZE)}
    finally:
        source.close()
    store = open_store(dataset)
    skipped = 0
    for name, items in index.splits.items():
        split = load_split(store, name, items, index.labels, SIZE)
        views = 1 + augment_views if name == "train" else 1
        aug = augmenter(spec.seed) if name == "train" and augment_views else None
        maps = extract_features(clf.extractor, split.images, 8, name, views, aug)
        got_split, got_maps = streamed[name]
        assert got_split.streamed and len(got_split.images) == 0  # no pixels kept
        assert got_split.keys == split.keys
        np.testing.assert_array_equal(got_split.labels, split.labels)
        assert [s.key for s in got_split.skipped] == [s.key for s in split.skipped]
        # pooled as they come: the same bits as pooling the float16 maps afterwards
        n, v, _, _, c = maps.shape
        assert got_maps.shape == (n, v, 1, 1, c) and got_maps.dtype == np.float32
        np.testing.assert_array_equal(got_maps[:, 0, 0, 0], pooled(maps)[:, 0])  # bit for bit
        if aug is not None:  # same augmenter, same seed, same batches: the same views
            np.testing.assert_array_equal(got_maps[:, :, 0, 0], pooled(maps))
        skipped += len(split.skipped)
    assert skipped == 1


class CountingStore:
    """A store wrapper counting reads, to see how far ahead the decoder runs."""

    def __init__(self, store) -> None:
        self.store, self.reads, self.lock = store, 0, threading.Lock()

    def read_bytes(self, key: str) -> bytes:
        with self.lock:
            self.reads += 1
        return self.store.read_bytes(key)

    def __getattr__(self, name):
        return getattr(self.store, name)


def test_prefetch_decodes_in_order_and_at_most_ahead_images_ahead(shapes_dataset):
    store = open_store(shapes_dataset)
    items = [Item(k, k.split("/")[0]) for k in sorted(store.list()) if k.endswith(".jpg")][:12]
    counting = CountingStore(store)
    prefetch = Prefetch(counting, items, SIZE, workers=2, ahead=3)
    try:
        time.sleep(0.5)
        assert counting.reads == 3  # started at once, stopped at the bound
        first = list(prefetch.take(2))
        assert prefetch.first_at is not None
        time.sleep(0.3)
        assert counting.reads == 5
        rest = list(prefetch.take(10))
        with pytest.raises(IndexError):
            next(prefetch.take(1))
    finally:
        prefetch.close()
    from headstart.shared.data.images import read_image

    expected = [read_image(store, i.key, i.label, target=SIZE) for i in items]
    for got, want in zip(first + rest, expected):
        np.testing.assert_array_equal(got, want)


def test_stream_split_batches_and_metadata(shapes_dataset):
    store = open_store(shapes_dataset)
    keys = [k for k in sorted(store.list()) if k.endswith(".jpg")][:11]
    items = [Item(k, k.split("/")[0]) for k in keys]
    labels = sorted({i.label for i in items})
    stream = stream_split(store, "train", items, labels, SIZE, batch=4, workers=2)
    assert len(stream.split) == 0  # nothing known before it is consumed
    batches = list(stream)
    assert [len(b) for b in batches] == [4, 4, 3]
    assert all(b.dtype == np.float32 and b.shape[1:] == (SIZE, SIZE, 3) for b in batches)
    whole = load_split(store, "train", items, labels, SIZE, workers=2)
    np.testing.assert_array_equal(np.concatenate(batches), whole.images)
    assert stream.split.keys == whole.keys and stream.split.labels.tolist() == whole.labels.tolist()


def test_train_run_records_its_stage_timing(trained_run):
    timing = json.loads((Path(trained_run) / "metrics.json").read_text())["timing"]
    for key in ("import_s", "build_s", "decode_s", "features_s", "first_image_s", "selection_s",
                "outputs_s", "total_s", "process_age_s"):
        assert key in timing and timing[key] >= 0, key
    assert timing["first_image_s"] < timing["total_s"]
    # decode and the base's pass overlap: together they are the stage's wall, inside the total
    assert timing["decode_s"] + timing["features_s"] < timing["total_s"]
    # the outputs come after the pass, inside the total too
    assert timing["decode_s"] + timing["features_s"] + timing["outputs_s"] < timing["total_s"]


def test_forced_memmap_leaves_no_file_behind(tmp_path):
    from headstart.shared.data.scratch import allocate

    a = allocate((10, 4), np.float16, str(tmp_path), "features", memmap=True)
    a[:] = 1.5
    assert isinstance(a, np.memmap) and float(a.sum()) == 60.0
    assert os.listdir(tmp_path) == []
    assert allocate((0, 4), np.float16, str(tmp_path), "features", memmap=True).shape == (0, 4)


def test_blas_threads_sets_and_restores():
    from headstart.shared.model.blas import _openblas_libs, blas_threads

    libs = _openblas_libs()
    if not libs:
        pytest.skip("numpy is not on OpenBLAS here")
    before = [get() for get, _ in libs]
    with blas_threads(1):
        assert [get() for get, _ in libs] == [1] * len(libs)
    assert [get() for get, _ in libs] == before


@pytest.mark.parametrize("test_fraction", [0.25, 0.0])
def test_the_head_choice_starts_once_the_fit_splits_are_cached(shapes_dataset, tmp_path, test_fraction):
    from headstart.jobs.train.spec import TrainSpec
    from headstart.jobs.train.stage import Clock, start_decode, streamed_pass
    from headstart.shared.model.selection_step import choose

    index = discover(shapes_dataset, SplitConfig.from_spec(TrainSpec(
        dataset=shapes_dataset, out="unused", test_fraction=test_fraction)))
    spec = SimpleNamespace(**vars(_spec(shapes_dataset, tmp_path)), class_weights=None, label_smoothing=0.0)
    source = start_decode(spec, index, SIZE)
    try:
        splits, maps, choice = streamed_pass(spec, index, _clf(), source, SIZE, Clock())
    finally:
        source.close()
    if "test" not in index.splits:  # nothing left to overlap: the recipe chooses after the pass
        assert choice is None
        return
    assert list(splits) == list(index.splits) and choice is not None
    got = choice.result(timeout=60)
    fit = {k: maps[k] for k in ("train", "valid")}
    want = choose(fit, {k: splits[k].labels for k in fit}, 4, seed=spec.seed, class_weights=None,
                  label_smoothing=0.0)
    assert got.selection.chosen == want.selection.chosen and got.selection.table == want.selection.table
    for a, b in zip(got.selection.weights, want.selection.weights):
        np.testing.assert_array_equal(a, b)
    assert set(got.pooled) == {"train", "valid"}
