"""One storage contract, run against both backends (local folder and S3 in moto)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from headstart.shared.storage import store as storage
from headstart.shared.runtime.errors import UserError
from headstart.shared.storage.s3 import S3Store
from headstart.shared.storage.store import LocalStore, join, open_store, split_uri

# --------------------------------------------------------------------------- contract


def test_bytes_roundtrip(store):
    store.write_bytes("a.bin", b"\x00\x01\xff")
    assert store.read_bytes("a.bin") == b"\x00\x01\xff"


def test_text_roundtrip_is_utf8(store):
    store.write_text("dir/t.txt", "héllo ✓\n")
    assert store.read_text("dir/t.txt") == "héllo ✓\n"
    assert store.read_bytes("dir/t.txt") == "héllo ✓\n".encode()


def test_empty_object(store):
    store.write_bytes("empty", b"")
    assert store.exists("empty")
    assert store.read_bytes("empty") == b""
    assert store.size("empty") == 0


def test_overwrite_replaces_content(store):
    store.write_text("k", "old and longer")
    store.write_text("k", "new")
    assert store.read_text("k") == "new"
    assert store.size("k") == 3


def test_missing_key_raises_file_not_found(store):
    with pytest.raises(FileNotFoundError):
        store.read_bytes("nope.txt")
    with pytest.raises(FileNotFoundError):
        store.read_text("deep/nope.txt")


def test_missing_key_size_raises_file_not_found(store):
    with pytest.raises(FileNotFoundError):
        store.size("nope.txt")


def test_download_missing_key_raises_file_not_found(store, tmp_path):
    with pytest.raises(FileNotFoundError):
        store.download_file("nope.txt", tmp_path / "dl" / "x")
    assert not (tmp_path / "dl" / "x").exists()


def test_exists(store):
    assert not store.exists("x/y.txt")
    store.write_text("x/y.txt", "1")
    assert store.exists("x/y.txt")
    assert not store.exists("x")  # a folder is not an object
    assert not store.exists("x/y")


def test_leading_and_trailing_slashes_in_keys(store):
    store.write_text("/a/b.txt", "1")
    assert store.exists("a/b.txt")
    assert store.read_text("a/b.txt") == "1"
    assert list(store.list("/a/")) == ["a/b.txt"]


def test_list_is_recursive_and_sorted(store):
    for key in ["b/2.txt", "a/1.txt", "c.txt", "a/z/3.txt", "a/0.txt"]:
        store.write_text(key, key)
    assert list(store.list()) == ["a/0.txt", "a/1.txt", "a/z/3.txt", "b/2.txt", "c.txt"]


def test_list_under_folder_prefix(store):
    for key in ["a/1.txt", "a/z/3.txt", "ab/2.txt", "a.txt", "abc"]:
        store.write_text(key, key)
    assert list(store.list("a")) == ["a/1.txt", "a/z/3.txt"]
    assert list(store.list("a/")) == ["a/1.txt", "a/z/3.txt"]
    assert list(store.list("a/z")) == ["a/z/3.txt"]
    assert list(store.list("ab")) == ["ab/2.txt"]


def test_list_missing_prefix_or_empty_store(store):
    assert list(store.list()) == []
    assert list(store.list("nothing/here")) == []
    store.write_text("f", "1")
    assert list(store.list("f")) == []  # a prefix names a folder, not an object


def test_delete(store):
    store.write_text("d/x", "1")
    store.delete("d/x")
    assert not store.exists("d/x")
    assert list(store.list()) == []
    store.delete("d/x")  # absent: not an error
    store.delete("never/existed")


def test_size(store):
    store.write_bytes("s", b"12345")
    assert store.size("s") == 5


def test_child_store(store):
    child = store.child("sub/dir")
    child.write_text("f.txt", "hi")
    assert store.read_text("sub/dir/f.txt") == "hi"
    assert list(child.list()) == ["f.txt"]
    assert child.uri == join(store.uri, "sub/dir")
    assert type(child) is type(store)
    grandchild = child.child("/deeper/")
    grandchild.write_text("g", "x")
    assert list(store.list("sub")) == ["sub/dir/deeper/g", "sub/dir/f.txt"]


def test_child_sibling_prefixes_do_not_leak(store):
    store.write_text("a/1", "1")
    store.write_text("ab/2", "2")
    assert list(store.child("a").list()) == ["1"]
    assert not store.child("a").exists("b/2")


def test_upload_and_download_file(store, tmp_path):
    src = tmp_path / "src.bin"
    payload = os.urandom(3000)
    src.write_bytes(payload)
    store.upload_file("up/src.bin", src)
    assert store.read_bytes("up/src.bin") == payload
    assert store.size("up/src.bin") == len(payload)
    dest = store.download_file("up/src.bin", tmp_path / "new" / "dir" / "out.bin")
    assert dest == tmp_path / "new" / "dir" / "out.bin"
    assert dest.read_bytes() == payload
    # no temp files left next to the download
    assert sorted(p.name for p in dest.parent.iterdir()) == ["out.bin"]


def test_upload_missing_file_raises(store, tmp_path):
    with pytest.raises(FileNotFoundError):
        store.upload_file("x", tmp_path / "missing")
    assert not store.exists("x")


@pytest.mark.parametrize("key", ["../escape.txt", "a/../../b", "..", "a/.."])
def test_dotdot_keys_rejected(store, key):
    for op in (lambda: store.write_text(key, "x"), lambda: store.read_bytes(key),
               lambda: store.exists(key), lambda: list(store.list(key)), lambda: store.delete(key)):
        with pytest.raises(UserError, match=r"\.\."):
            op()


def test_dotdot_child_rejected(store):
    with pytest.raises(UserError, match=r"\.\."):
        store.child("../sibling")


def test_dots_inside_names_are_fine(store):
    store.write_text("a..b/..c", "ok")
    assert store.read_text("a..b/..c") == "ok"


# --------------------------------------------------------------------------- local atomicity


def test_local_write_leaves_no_temp_files(tmp_path):
    store = open_store(tmp_path)
    for i in range(3):
        store.write_bytes("d/f.bin", b"x" * i)
        store.upload_file("d/g.bin", store.local_path() / "d" / "f.bin")
    store.download_file("d/f.bin", tmp_path / "d" / "h.bin")
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == ["f.bin", "g.bin", "h.bin"]


def test_local_failing_write_keeps_old_content(tmp_path, monkeypatch):
    store = open_store(tmp_path)
    store.write_text("f.txt", "old")

    def boom(fd):
        raise OSError("disk full")

    monkeypatch.setattr(storage.os, "fsync", boom)
    with pytest.raises(OSError, match="disk full"):
        store.write_text("f.txt", "new")
    monkeypatch.undo()
    assert store.read_text("f.txt") == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.txt"]


def test_local_failing_upload_keeps_old_content(tmp_path, monkeypatch):
    store = open_store(tmp_path / "s")
    store.write_text("f.txt", "old")
    src = tmp_path / "src"
    src.write_text("new")

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(storage.os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        store.upload_file("f.txt", src)
    monkeypatch.undo()
    assert store.read_text("f.txt") == "old"
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == ["f.txt"]


def test_local_inflight_temp_files_not_listed(tmp_path):
    store = open_store(tmp_path)
    store.write_text("a/real.txt", "1")
    (tmp_path / "a" / ".real.txt.abc123.tmp").write_text("partial")
    (tmp_path / "a" / ".other.upload.tmp").write_text("partial")
    assert list(store.list()) == ["a/real.txt"]


def test_list_orders_full_keys_and_iter_keys_gives_the_same_set(store):
    keys = ["a.b", "a/x", "a-b/y", "a/b/c", "a0", "b/é.txt", "b/e.txt", "b/z/😀", "B/1", "a/.hidden"]
    for key in keys:
        store.write_text(key, key)
    assert list(store.list()) == sorted(keys)  # "a-b/y" < "a.b" < "a/..." < "a0": full-key order
    assert sorted(store.iter_keys()) == sorted(keys)
    assert sorted(store.iter_keys("a")) == ["a/.hidden", "a/b/c", "a/x"]
    assert list(store.iter_keys("nothing")) == []


def _walked(root: Path) -> list[str]:
    """What LocalStore.list returned before it streamed: a sorted os.walk."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        found += [(Path(dirpath) / n).relative_to(root).as_posix() for n in filenames
                  if not (n.startswith(".") and n.endswith(".tmp"))]
    return sorted(found)


def test_local_listing_streams_what_os_walk_saw(tmp_path):
    for rel in ["x/.git/config", "x/.keep", "x/.a.tmp", "x/y/1", "x/y-z", "x/y.z", "z/9", "x/ä/ö"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(rel)
    (tmp_path / "linked").symlink_to(tmp_path / "z", target_is_directory=True)  # os.walk skipped it
    (tmp_path / "x" / "file_link").symlink_to(tmp_path / "z" / "9")
    store = open_store(tmp_path)
    assert list(store.list()) == _walked(tmp_path)
    assert sorted(store.iter_keys()) == _walked(tmp_path)
    listing = store.list("x")
    assert next(listing) == "x/.keep"  # a generator: nothing below is read before it is needed
    assert list(listing) == [k for k in _walked(tmp_path) if k.startswith("x/")][1:]


def test_local_store_paths(tmp_path, monkeypatch):
    store = open_store(f"file://{tmp_path}")
    assert isinstance(store, LocalStore)
    assert store.local_path() == tmp_path.resolve()
    store.write_text("x", "1")
    assert (tmp_path / "x").read_text() == "1"
    monkeypatch.chdir(tmp_path)
    assert open_store("rel").local_path() == tmp_path.resolve() / "rel"


# --------------------------------------------------------------------------- URIs and errors


@pytest.mark.parametrize("uri", ["gs://bucket/x", "http://example.com/x", "ftp://h/x"])
def test_bad_scheme_is_user_error(uri):
    with pytest.raises(UserError, match="Received"):
        open_store(uri)


def test_s3_uri_without_bucket_is_user_error():
    with pytest.raises(UserError):
        open_store("s3:///prefix")


def test_s3_store_uri_normalised(s3_bucket):
    store = open_store("s3://headstart-test/a/b/")
    assert isinstance(store, S3Store)
    assert store.uri == "s3://headstart-test/a/b"
    assert store.local_path() is None
    bucket_root = open_store("s3://headstart-test")
    bucket_root.write_text("top.txt", "1")
    assert list(bucket_root.list()) == ["top.txt"]


def test_s3_missing_bucket_is_user_error(s3_bucket):
    store = open_store("s3://no-such-bucket/p")
    with pytest.raises(UserError, match="no-such-bucket"):
        store.read_bytes("x")
    with pytest.raises(UserError, match="no-such-bucket"):
        list(store.list())
    with pytest.raises(UserError, match="no-such-bucket"):
        store.write_text("x", "1")


def test_split_uri(tmp_path, s3_bucket):
    store, name = split_uri(f"{tmp_path}/dir/spec.yaml")
    assert (store.uri, name) == (str(tmp_path / "dir"), "spec.yaml")
    store, name = split_uri("s3://headstart-test/p/spec.yaml")
    assert (store.uri, name) == ("s3://headstart-test/p", "spec.yaml")
    store, name = split_uri("spec.yaml")
    assert (store.local_path(), name) == (Path.cwd(), "spec.yaml")


def test_split_uri_top_level_absolute_path():
    store, name = split_uri("/spec.yaml")
    assert (store.local_path(), name) == (Path("/"), "spec.yaml")


def test_join():
    assert join("s3://b/p/", "/x/", "", "y") == "s3://b/p/x/y"
    assert join("/tmp/a", "b/") == "/tmp/a/b"


# --------------------------------------------------------------------------- endpoint override


def test_s3_endpoint_override_reaches_moto_server_from_subprocess(moto_server):
    """HEADSTART_S3_ENDPOINT is honoured: a separate process writes, we read it back."""
    code = (
        "from headstart.shared.storage.store import open_store\n"
        f"s = open_store({moto_server.uri!r})\n"
        "s.write_text('from-child.txt', 'hello')\n"
        "print(list(s.list()))\n"
    )
    env = {**os.environ, **moto_server.env}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=60, cwd=Path(__file__).resolve().parents[3])
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().replace("'", '"')) == ["from-child.txt"]
    body = moto_server.client().get_object(Bucket=moto_server.bucket, Key="prefix/from-child.txt")
    assert body["Body"].read() == b"hello"
    # and in-process stores see the same server through the exported variables
    assert open_store(moto_server.uri).read_text("from-child.txt") == "hello"


def test_aws_endpoint_url_s3_is_honoured(moto_server, monkeypatch):
    monkeypatch.delenv("HEADSTART_S3_ENDPOINT")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", moto_server.endpoint)
    open_store(moto_server.uri).write_text("k", "v")
    assert open_store(moto_server.uri).read_text("k") == "v"


def test_s3_endpoint_precedence(tmp_path, monkeypatch) -> None:
    from headstart.shared.storage.s3 import s3_endpoint

    config = tmp_path / "cloud.yaml"
    config.write_text("s3_endpoint: http://from-config:9000\n")
    monkeypatch.setenv("HEADSTART_CONFIG", str(config))
    assert s3_endpoint() == "http://from-config:9000"
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://from-aws-env:9000")
    assert s3_endpoint() == "http://from-aws-env:9000"
    monkeypatch.setenv("HEADSTART_S3_ENDPOINT", "http://from-headstart-env:9000")
    assert s3_endpoint() == "http://from-headstart-env:9000"
    monkeypatch.delenv("HEADSTART_S3_ENDPOINT")
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3")
    monkeypatch.setenv("HEADSTART_CONFIG", str(tmp_path / "absent.yaml"))
    with pytest.raises(UserError, match="missing file"):  # named but absent: say so
        s3_endpoint()
    monkeypatch.delenv("HEADSTART_CONFIG")
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.config/headstart/cloud.yaml
    assert s3_endpoint() is None
