"""The rest of the Store interface on both backends: move, streaming open, local_copy; and
the file modes of local writes."""
from __future__ import annotations

import io
import os
import pathlib
import re
import stat

import pytest

from headstart.shared.storage.store import open_store

ROOT = pathlib.Path(__file__).resolve().parents[3]


def test_move_replaces_and_removes_the_source(store) -> None:
    store.write_bytes("a/src.bin", b"new")
    store.write_bytes("b/dst.bin", b"old")
    store.move("a/src.bin", "b/dst.bin")
    assert store.read_bytes("b/dst.bin") == b"new"
    assert not store.exists("a/src.bin")
    store.move("b/dst.bin", "c/deeper/moved.bin")  # into a folder that does not exist yet
    assert store.read_bytes("c/deeper/moved.bin") == b"new"
    with pytest.raises(FileNotFoundError):
        store.move("absent.bin", "x.bin")


def test_open_streams_an_object(store) -> None:
    data = os.urandom(3 * 2**20 + 17)  # larger than one buffered read
    store.write_bytes("big.bin", data)
    with store.open("big.bin") as fh:
        head = fh.read(10)
        rest = fh.read()
    assert head + rest == data
    with store.open("big.bin") as fh:  # text on top of the stream, as the URL-list readers do
        # newline="": random bytes hold \r, which universal-newline mode would turn into \n
        assert io.TextIOWrapper(fh, encoding="latin-1", newline="").read(5) == data[:5].decode("latin-1")
    with pytest.raises(FileNotFoundError), store.open("absent.bin"):
        pass


def test_local_copy_is_a_path_and_a_download_is_removed(store) -> None:
    store.write_bytes("w/model.keras", b"weights")
    with store.local_copy("w/model.keras") as path:
        assert path.read_bytes() == b"weights" and path.name == "model.keras"
    remote = store.local_path() is None
    assert path.exists() is not remote  # a local store hands out the file itself
    with pytest.raises(FileNotFoundError), store.local_copy("absent.bin"):
        pass


@pytest.mark.parametrize("mask", [0o022, 0o002, 0o077])
def test_local_writes_keep_the_process_umask(tmp_path, mask) -> None:
    """mkstemp makes 0600 files; outputs must read as a plain open() would have made them."""
    store = open_store(tmp_path)
    src = tmp_path / "src.bin"
    src.write_bytes(b"x")
    old = os.umask(mask)
    try:
        store.write_bytes("out/a.json", b"{}")
        store.upload_file("out/b.bin", src)
        store.download_file("out/a.json", tmp_path / "dl" / "c.json")
    finally:
        os.umask(old)
    for name in ("out/a.json", "out/b.bin", "dl/c.json"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o666 & ~mask, name


def test_nothing_reaches_into_a_store_or_switches_on_its_class() -> None:
    """Code outside the storage package uses the Store interface only."""
    pattern = re.compile(r"\._key\(|\bstore\.client\b|isinstance\([^)]*(LocalStore|S3Store)|"
                         r"import[^\n]*\b(LocalStore|S3Store)\b")
    for folder in ("shared", "jobs", "infra"):
        for path in (ROOT / folder).rglob("*.py"):
            if path.parent.name == "storage" and folder == "shared":
                continue
            found = pattern.search(path.read_text())
            assert found is None, f"{path.relative_to(ROOT)}: {found.group(0)}"
