"""move_object on both backends."""
from __future__ import annotations

from headstart.shared.storage.objectmove import move_object


def test_move_replaces_and_removes_the_source(store) -> None:
    store.write_bytes("a/src.bin", b"new")
    store.write_bytes("b/dst.bin", b"old")
    move_object(store, "a/src.bin", "b/dst.bin")
    assert store.read_bytes("b/dst.bin") == b"new"
    assert not store.exists("a/src.bin")
