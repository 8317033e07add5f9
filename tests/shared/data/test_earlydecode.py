"""The forked early decoder: same pixels as read_image, failures and overflow left to the
parent, bounded stop, only where fork is safe; and the batched resize equals one image at a time."""
from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from headstart.shared.data import earlydecode
from headstart.shared.data.datasets import Item
from headstart.shared.data.images import Skipped, read_image
from headstart.shared.data.loading import Prefetch, stream_split
from headstart.shared.storage.store import open_store

SIZE = 32

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="fork: POSIX only")


def _items(root: Path) -> list[Item]:
    store = open_store(str(root))
    return [Item(k, k.split("/")[0]) for k in sorted(store.list()) if k.endswith((".jpg", ".png"))]


@pytest.fixture
def mixed(tmp_path) -> Path:
    """Shapes images (64 px), one corrupt file, and a few of other sizes (one over 2x the input)."""
    from PIL import Image

    from headstart.jobs.demo.workflow import generate_shapes

    root = Path(generate_shapes(str(tmp_path / "data"), per_label=4))
    label = sorted(p for p in root.iterdir() if p.is_dir())[0]
    (label / "0001-broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    rng = np.random.default_rng(0)
    for i, (w, h) in enumerate([(50, 40), (50, 40), (200, 90), (17, 23)]):
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(label / f"0002-odd{i}.png")
    return root


def _wait_done(early: earlydecode.EarlyDecode, n: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while earlydecode._DONE.unpack_from(early._map, 8)[0] < n and time.monotonic() < deadline:
        time.sleep(0.01)


def test_child_decodes_what_read_image_does_and_leaves_failures_to_the_parent(mixed):
    store = open_store(str(mixed))
    items = _items(mixed)
    early = earlydecode.EarlyDecode(store, items, SIZE, 8, 10**8)
    try:
        _wait_done(early, len(items))
        assert early.stop() == len(items)
        assert early.first_at is not None and early.first_at <= time.time()
        for i, item in enumerate(items):
            want = read_image(store, item.key, item.label, target=SIZE)
            got = early.get(i)
            if isinstance(want, Skipped):
                assert got is None  # the parent decodes it again and records why
            else:
                np.testing.assert_array_equal(got, want)
    finally:
        early.close()


def test_a_full_map_leaves_the_rest_to_the_parent_and_stop_is_prompt(mixed):
    store = open_store(str(mixed))
    items = _items(mixed)
    first = read_image(store, items[0].key, items[0].label, target=SIZE)
    early = earlydecode.EarlyDecode(store, items, SIZE, 8, 10**8, room=first.nbytes)  # room for one
    try:
        _wait_done(early, len(items))
        assert early.stop() == len(items)
        np.testing.assert_array_equal(early.get(0), first)
        assert all(early.get(i) is None for i in range(1, len(items)))
    finally:
        early.close()
    many = items * 200
    early = earlydecode.EarlyDecode(store, many, SIZE, 8, 10**8)
    t0 = time.monotonic()
    done = early.stop()
    assert time.monotonic() - t0 < earlydecode.STOP_WAIT_S and done < len(many)
    early.close()


def test_prefetch_with_an_early_child_gives_the_same_results(mixed, monkeypatch):
    monkeypatch.setattr(earlydecode, "usable", lambda store: True)
    store = open_store(str(mixed))
    items = _items(mixed)
    prefetch = Prefetch(store, items, SIZE, workers=2, early=True)
    assert prefetch._early is not None
    time.sleep(0.5)
    try:
        got = list(prefetch.take(len(items)))
    finally:
        prefetch.close()
    assert prefetch.first_at is not None
    for item, result in zip(items, got):
        want = read_image(store, item.key, item.label, target=SIZE)
        if isinstance(want, Skipped):
            assert isinstance(result, Skipped) and result.reason == want.reason
        else:
            np.testing.assert_array_equal(result, want)


def test_fork_only_where_it_is_safe(mixed, monkeypatch):
    store = open_store(str(mixed))
    import tensorflow  # noqa: F401 - loaded: its thread pools make a fork unsafe

    assert not earlydecode.usable(store)
    monkeypatch.delitem(__import__("sys").modules, "tensorflow")
    monkeypatch.setattr(earlydecode, "usable_cpus", lambda: 2)
    monkeypatch.setattr(threading, "active_count", lambda: 1)  # other tests may leave threads
    assert earlydecode.usable(store)
    monkeypatch.setattr(threading, "active_count", lambda: 2)
    assert not earlydecode.usable(store)  # another thread could hold a lock the child needs
    monkeypatch.setattr(threading, "active_count", lambda: 1)
    monkeypatch.setenv("HEADSTART_EARLY_DECODE", "0")
    assert not earlydecode.usable(store)
    monkeypatch.delenv("HEADSTART_EARLY_DECODE")
    monkeypatch.setattr(earlydecode, "usable_cpus", lambda: 1)
    assert not earlydecode.usable(store)
    assert not earlydecode.usable(object())  # not a local store


def test_batched_resize_equals_the_model_resize_one_image_at_a_time(mixed):
    from headstart.shared.data.modelinput import resizer

    store = open_store(str(mixed))
    items = _items(mixed)
    labels = sorted({i.label for i in items})
    stream = stream_split(store, "train", items, labels, SIZE, batch=5, workers=2)
    got = np.concatenate(list(stream))
    resize = resizer(SIZE)
    want = [resize(r) for i in items
            if not isinstance(r := read_image(store, i.key, i.label, target=SIZE), Skipped)]
    assert len(stream.split.skipped) == 1 and len(got) == len(want) == len(items) - 1
    shapes = {getattr(read_image(store, i.key, i.label, target=SIZE), "shape", None) for i in items} - {None}
    assert len(shapes) >= 4  # runs of one shape, of two, and single images
    np.testing.assert_allclose(got, np.stack(want), atol=1e-4)
