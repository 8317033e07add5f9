"""Decoding a split: by content, bad files skipped with a reason, resized by the model's own layer,
memmap path identical."""
from __future__ import annotations


import numpy as np
import pytest
from PIL import Image

from headstart.shared.data import scratch
from headstart.shared.data.datasets import Item
from headstart.shared.data.loading import LoadedSplit, load_split
from headstart.shared.data.images import decode_image
from headstart.shared.data.modelinput import resize_layer
from headstart.shared.storage.store import open_store
from tests.helpers import encode

LABELS = ["cat", "dog"]


def solid(color: tuple[int, int, int], h: int = 32, w: int = 32) -> np.ndarray:
    return np.tile(np.asarray(color, dtype=np.uint8), (h, w, 1))


def gradient(h: int = 32, w: int = 32) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 255 // max(w - 1, 1), y * 255 // max(h - 1, 1), (x * 7 + y * 3) % 256],
                    axis=-1).astype(np.uint8)


def put(store, files: dict[str, bytes]) -> list[Item]:
    for key, data in files.items():
        store.write_bytes(key, data)
    return [Item(key, key.split("/")[0]) for key in files]


def test_decodes_by_content_not_extension(store):
    png = gradient()
    files = {
        "cat/really-a-png.jpg": encode(png, "PNG"),
        "dog/really-a-gif.jpg": encode(solid((255, 0, 0)), "GIF"),
        "cat/real.jpeg": encode(solid((0, 0, 255)), "JPEG", quality=95),
        "dog/no-extension": encode(solid((0, 255, 0)), "PNG"),
    }
    split = load_split(store, "train", put(store, files), LABELS, size=32, workers=2)
    assert isinstance(split, LoadedSplit)
    assert split.name == "train"
    assert split.skipped == []
    assert split.keys == list(files)
    assert split.labels.dtype == np.int32
    assert split.labels.tolist() == [0, 1, 0, 1]
    assert split.images.shape == (4, 32, 32, 3) and split.images.dtype == np.float32
    np.testing.assert_array_equal(split.images[0], png)           # lossless: exact
    np.testing.assert_array_equal(split.images[1], solid((255, 0, 0)))
    assert np.abs(split.images[2].astype(int) - solid((0, 0, 255))).max() <= 3   # JPEG: close
    np.testing.assert_array_equal(split.images[3], solid((0, 255, 0)))
    assert len(split) == 4


def test_bad_files_are_skipped_with_status_and_reason_rest_kept_in_order(store):
    good = encode(gradient(), "PNG")
    jpeg = encode(gradient(40, 40), "JPEG", quality=90)
    files = {
        "cat/ok1.png": good,
        "cat/corrupt.jpg": b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4,
        "dog/ok2.jpg": encode(solid((10, 200, 30)), "PNG"),
        "dog/truncated.jpg": jpeg[: len(jpeg) // 2],
        "cat/empty.jpg": b"",
        "dog/tiny.png": encode(gradient(4, 4), "PNG"),
        "cat/notes.jpg": b"this is not an image at all\n",
        "dog/ok3.gif": encode(solid((255, 255, 255)), "GIF"),
    }
    items = put(store, files) + [Item("cat/vanished.jpg", "cat")]
    split = load_split(store, "valid", items, LABELS, size=32, workers=3)

    assert split.keys == ["cat/ok1.png", "dog/ok2.jpg", "dog/ok3.gif"]
    assert split.labels.tolist() == [0, 1, 1]
    assert split.images.shape == (3, 32, 32, 3)
    np.testing.assert_array_equal(split.images[0], gradient())
    np.testing.assert_array_equal(split.images[1], solid((10, 200, 30)))
    np.testing.assert_array_equal(split.images[2], solid((255, 255, 255)))

    skipped = {s.key: s for s in split.skipped}
    assert [s.key for s in split.skipped] == [k for k in list(files) + ["cat/vanished.jpg"]
                                              if k not in split.keys]
    assert skipped["cat/corrupt.jpg"].status in ("decode_error", "not_image")
    assert skipped["dog/truncated.jpg"].status == "decode_error"
    assert skipped["cat/empty.jpg"].status == "empty"
    assert skipped["dog/tiny.png"].status == "too_small"
    assert "4x4" in skipped["dog/tiny.png"].reason
    assert skipped["cat/notes.jpg"].status == "not_image"
    assert skipped["cat/vanished.jpg"].status == "unreadable"
    for s in split.skipped:
        assert s.reason, s
        assert s.label == s.key.split("/")[0]


def test_min_side_is_configurable(tmp_path):
    store = open_store(tmp_path)
    items = put(store, {"cat/a.png": encode(gradient(12, 12), "PNG"),
                        "dog/b.png": encode(gradient(32, 32), "PNG")})
    assert len(load_split(store, "t", items, LABELS, size=16, min_side=8)) == 2
    split = load_split(store, "t", items, LABELS, size=16, min_side=16)
    assert split.keys == ["dog/b.png"] and split.skipped[0].status == "too_small"


def test_oversized_images_are_skipped(tmp_path):
    store = open_store(tmp_path)
    items = put(store, {"cat/big.png": encode(gradient(64, 64), "PNG"),
                        "dog/ok.png": encode(gradient(16, 16), "PNG")})
    split = load_split(store, "t", items, LABELS, size=16, max_pixels=32 * 32)
    assert split.keys == ["dog/ok.png"]
    assert split.skipped[0].status == "too_large"


def test_resizes_to_the_requested_size(tmp_path):
    store = open_store(tmp_path)
    big = gradient(48, 80)
    items = put(store, {"cat/wide.png": encode(big, "PNG"),
                        "dog/small.png": encode(solid((50, 100, 150), 10, 12), "PNG")})
    split = load_split(store, "t", items, LABELS, size=24)
    assert split.images.shape == (2, 24, 24, 3)
    # the model's own resize layer (float, antialiased), never a PIL resize into uint8
    decoded = decode_image(encode(big, "PNG"), target=12)  # 48x80 >= 4x12: box-shrunk to 24x40 first
    assert decoded.shape == (24, 40, 3)
    decoded = decode_image(encode(big, "PNG"), target=24)  # under 4x24: left whole for the layer
    assert decoded.shape == (48, 80, 3)
    expected = np.asarray(resize_layer(24)(decoded[None].astype(np.float32)))[0]
    np.testing.assert_array_equal(split.images[0], expected)
    pil = np.asarray(Image.fromarray(big).resize((24, 24), Image.BILINEAR))
    assert not np.array_equal(split.images[0], pil)
    np.testing.assert_allclose(split.images[1], solid((50, 100, 150), 24, 24), atol=1e-4)


def test_all_bad_gives_an_empty_split(tmp_path):
    store = open_store(tmp_path)
    items = put(store, {"cat/a.jpg": b"", "dog/b.jpg": b"nope"})
    split = load_split(store, "t", items, LABELS, size=16)
    assert len(split) == 0
    assert split.images.shape == (0, 16, 16, 3)
    assert split.labels.shape == (0,) and split.labels.dtype == np.int32
    assert len(split.skipped) == 2


def test_memmap_path_gives_identical_arrays(tmp_path, monkeypatch):
    store = open_store(tmp_path / "data")
    rng = np.random.default_rng(0)
    files = {f"{LABELS[i % 2]}/{i}.png": encode(rng.integers(0, 256, (20 + i, 30, 3), dtype=np.uint8), "PNG")
             for i in range(6)}
    files["cat/bad.jpg"] = b"garbage"
    items = put(store, files)
    in_memory = load_split(store, "train", items, LABELS, size=16)
    assert not isinstance(in_memory.images, np.memmap)

    monkeypatch.setattr(scratch, "MEMMAP_BYTES", 0)
    cache = tmp_path / "cache"
    mapped = load_split(store, "train", items, LABELS, size=16, cache_dir=str(cache))
    assert isinstance(mapped.images, np.memmap)
    assert list(cache.glob("images-*.npy")), "memmap file goes to cache_dir"
    np.testing.assert_array_equal(np.asarray(mapped.images), in_memory.images)
    np.testing.assert_array_equal(mapped.labels, in_memory.labels)
    assert mapped.keys == in_memory.keys
    assert [s.key for s in mapped.skipped] == [s.key for s in in_memory.skipped] == ["cat/bad.jpg"]


@pytest.mark.parametrize("fmt", ["BMP", "WEBP", "TIFF"])
def test_other_formats_decode(tmp_path, fmt):
    store = open_store(tmp_path)
    kwargs = {"lossless": True} if fmt == "WEBP" else {}
    items = put(store, {"cat/x.jpg": encode(gradient(), fmt, **kwargs)})
    split = load_split(store, "t", items, LABELS, size=32)
    assert split.skipped == []
    np.testing.assert_array_equal(split.images[0], gradient())
