"""The IMAGES argument: dataset splits, plain folders, URI lists; chunked decoding."""
from __future__ import annotations

import numpy as np
import pytest

from headstart.shared.data.datasets import SplitConfig
from headstart.shared.runtime.errors import UserError
from headstart.shared.data.images import encode_png
from headstart.shared.data.imagesets import ImageRef, iter_chunks, resolve_images, slug
from headstart.shared.storage.store import open_store


def _png(value: int = 100, size: int = 20) -> bytes:
    return encode_png(np.full((size, size, 3), value, np.uint8))


def test_dataset_folder_list_and_single(tmp_path) -> None:
    store = open_store(tmp_path / "ds")
    for label in ("a", "b"):
        for i in range(6):
            store.write_bytes(f"{label}/{i}.png", _png(i * 10))
    cfg = SplitConfig(valid_fraction=0.2, test_fraction=0.2, seed=1)
    test = resolve_images(str(tmp_path / "ds"), "test", cfg)
    assert test and all(r.split == "test" and r.label in ("a", "b") for r in test)
    assert len(resolve_images(str(tmp_path / "ds"), "all", cfg)) == 12
    with pytest.raises(UserError, match="'nope'"):
        resolve_images(str(tmp_path / "ds"), "nope", cfg)
    flat = open_store(tmp_path / "flat")
    flat.write_bytes("x.png", _png())
    flat.write_bytes("y.png", _png())
    assert [r.key for r in resolve_images(str(tmp_path / "flat"))] == ["x.png", "y.png"]
    (tmp_path / "list.txt").write_text("# images\nflat/x.png\n\n" + str(tmp_path / "flat/y.png") + "\n")
    listed = resolve_images(str(tmp_path / "list.txt"))
    assert [r.uri for r in listed] == [str(tmp_path / "flat/x.png"), str(tmp_path / "flat/y.png")]
    assert len(resolve_images(f"{tmp_path}/flat/x.png,{tmp_path}/flat/y.png")) == 2
    assert len(resolve_images(f"{tmp_path}/flat/x.png")) == 1
    with pytest.raises(UserError, match="no images found"):
        resolve_images(str(tmp_path / "missing"))


def test_chunks_decode_and_skip(tmp_path) -> None:
    store = open_store(tmp_path)
    store.write_bytes("ok.png", _png(size=40))
    store.write_bytes("bad.png", b"not an image")
    refs = [ImageRef(store.uri, k) for k in ("ok.png", "bad.png", "ok.png")]
    chunks = list(iter_chunks(refs, 16, 24, chunk=2))
    assert [len(c.refs) for c in chunks] == [1, 1] and len(chunks[0].skipped) == 1
    assert chunks[0].model.shape == (1, 16, 16, 3) and chunks[0].display.shape == (1, 24, 24, 3)


def test_slug_is_unique_and_safe() -> None:
    taken: set[str] = set()
    a = slug(ImageRef("/r", "daisy/a b.jpg"), taken)
    b = slug(ImageRef("/s", "daisy/a b.jpg"), taken)
    assert a == "daisy__a_b" and b == "daisy__a_b-2"
