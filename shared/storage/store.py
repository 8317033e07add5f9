"""One storage interface over local paths / ``file://`` and ``s3://`` (:mod:`.s3`).

Every write is atomic: local files are written to a temporary sibling and renamed; S3 PUTs
are atomic by nature. Jobs never touch the filesystem or boto3 directly; they go through
:func:`open_store`.
"""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
from abc import ABC, abstractmethod
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator
from urllib.parse import urlparse

from headstart.shared.runtime.errors import UserError

log = logging.getLogger(__name__)


class Store(ABC):
    """A prefix in a storage backend; keys are ``/``-separated and relative to the root."""

    uri: str

    @abstractmethod
    def read_bytes(self, key: str) -> bytes:
        """Return an object's bytes; raise :class:`FileNotFoundError` if absent."""

    @abstractmethod
    def write_bytes(self, key: str, data: bytes) -> None:
        """Write an object atomically (readers see the old or the new bytes, never a mix)."""

    def stage_bytes(self, key: str, data: bytes) -> None:
        """Write an object atomically, durable (on local disk) only after the next
        :meth:`commit_staged`: many small writes share one flush instead of one each."""
        self.write_bytes(key, data)

    def commit_staged(self) -> None:
        """Make every :meth:`stage_bytes` write that has returned durable (no-op where each
        write already is: S3)."""
        return None

    @abstractmethod
    def exists(self, key: str) -> bool:
        """Whether an object exists at ``key``."""

    @abstractmethod
    def list(self, prefix: str = "") -> Iterator[str]:
        """Yield keys (relative to the root) under the folder ``prefix``, recursively, sorted."""

    def iter_keys(self, prefix: str = "") -> Iterator[str]:
        """Like :meth:`list`, in no particular order, streamed: memory stays flat however many
        keys there are (for sets that are collected elsewhere, or deleted as they are found)."""
        yield from self.list(prefix)

    @abstractmethod
    def delete(self, key: str) -> None:
        """Delete an object; deleting an absent key is not an error."""

    @abstractmethod
    def size(self, key: str) -> int:
        """The object's size in bytes."""

    def child(self, prefix: str) -> Store:
        """A store rooted at ``prefix`` below this one."""
        return open_store(join(self.uri, _check_key(prefix)))

    def read_text(self, key: str) -> str:
        return self.read_bytes(key).decode("utf-8")

    def write_text(self, key: str, text: str) -> None:
        self.write_bytes(key, text.encode("utf-8"))

    def upload_file(self, key: str, path: str | os.PathLike) -> None:
        """Copy a local file into the store (atomically)."""
        self.write_bytes(key, Path(path).read_bytes())

    def download_file(self, key: str, path: str | os.PathLike) -> Path:
        """Copy an object to a local file and return its path."""
        dest = Path(path)
        dest.parent.mkdir(parents=True, exist_ok=True)
        _atomic_write_local(dest, self.read_bytes(key))
        return dest

    @contextmanager
    def open(self, key: str) -> Iterator[IO[bytes]]:
        """A binary stream over one object, read as it is consumed (not all at once);
        :class:`FileNotFoundError` if absent. Use as a context manager."""
        import io

        yield io.BytesIO(self.read_bytes(key))

    @contextmanager
    def local_copy(self, key: str) -> Iterator[Path]:
        """A local file holding the object, for libraries that want a path (Keras, h5py):
        the file itself on a local store, else a temporary download removed on exit."""
        with tempfile.TemporaryDirectory(prefix="headstart-") as tmp:
            name = key.rstrip("/").rsplit("/", 1)[-1] or "object"
            yield self.download_file(key, Path(tmp) / name)

    def move(self, src: str, dst: str) -> None:
        """Move an object to ``dst`` (replaced atomically) within this store, without pulling
        it through memory where the backend can: a rename, a server-side copy."""
        self.write_bytes(dst, self.read_bytes(src))
        self.delete(src)

    def local_path(self) -> Path | None:
        """The local directory behind this store, or None for remote stores."""
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.uri!r})"


def join(uri: str, *parts: str) -> str:
    """Join URI/path segments with ``/`` without doubling separators."""
    out = uri.rstrip("/")
    for part in parts:
        part = part.strip("/")
        if part:
            out = f"{out}/{part}"
    return out


def _check_key(key: str) -> str:
    """Reject keys that would climb out of the store's root."""
    if any(part == ".." for part in str(key).split("/")):
        raise UserError(f"storage key must not contain '..'. Received: key={key!r}")
    return key


_TEMP_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)


def _temp_sibling(path: Path) -> tuple[int, str]:
    """A new temporary file next to ``path`` with the mode a plain ``open(path, "w")`` would
    give: created 0666 so the kernel applies the process umask (``mkstemp`` makes 0600, and
    a host user could not read what a container wrote; reading the umask per write cost a
    /proc read). The folder is created only when missing (a scrape writes one per image)."""
    tmp = str(path.parent / f".{path.name}.{os.urandom(6).hex()}.tmp")  # O_EXCL: never reused
    try:
        return os.open(tmp, _TEMP_FLAGS, 0o666), tmp
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        return os.open(tmp, _TEMP_FLAGS, 0o666), tmp


def _atomic_write_local(path: Path, data: bytes, durable: bool = True) -> None:
    fd, tmp = _temp_sibling(path)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            if durable:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _sorted_entries(folder: str) -> list[tuple[str, bool, str]]:
    return sorted((name + "/" if is_dir else name, is_dir, path)
                  for name, is_dir, path in _entries(folder))


def _entries(folder: str) -> Iterator[tuple[str, bool, str]]:
    """(name, is_dir, path) of a folder's objects and subfolders, streamed by
    ``os.scandir``, as ``os.walk`` saw them: hidden folders, links to folders and
    in-flight atomic writes skipped, unreadable folders empty."""
    try:
        with os.scandir(folder) as it:
            for entry in it:
                if entry.is_dir(follow_symlinks=True):
                    if not entry.name.startswith(".") and not entry.is_symlink():
                        yield entry.name, True, entry.path
                elif not (entry.name.startswith(".") and entry.name.endswith(".tmp")):
                    yield entry.name, False, entry.path  # else an in-flight atomic write
    except OSError:
        return  # removed while listing, or unreadable (os.walk skipped those too)


def _sync_filesystem(path: Path) -> None:
    """Flush the filesystem holding ``path`` (``syncfs``; ``sync`` where it is missing)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        fd = os.open(path, os.O_RDONLY)
        try:
            if libc.syncfs(fd) == 0:
                return
        finally:
            os.close(fd)
    except (OSError, AttributeError):
        pass
    os.sync()


class LocalStore(Store):
    """A directory on the local filesystem."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root).expanduser().resolve()
        self.uri = str(self.root)
        self._staged = False

    def _path(self, key: str) -> Path:
        key = _check_key(key).strip("/")
        return self.root / key if key else self.root

    def read_bytes(self, key: str) -> bytes:
        path = self._path(key)
        if not path.is_file():
            raise FileNotFoundError(f"{path} does not exist")
        return path.read_bytes()

    def write_bytes(self, key: str, data: bytes) -> None:
        _atomic_write_local(self._path(key), data)

    def stage_bytes(self, key: str, data: bytes) -> None:
        # No fsync here: it cost ~8 ms of disk wait per scraped image, one at a time.
        _atomic_write_local(self._path(key), data, durable=False)
        self._staged = True

    def commit_staged(self) -> None:
        # Cleared before the flush: a write that set it before this point is flushed below.
        if self._staged:
            self._staged = False
            _sync_filesystem(self.root)

    def upload_file(self, key: str, path: str | os.PathLike) -> None:
        dest = self._path(key)
        fd, tmp = _temp_sibling(dest)
        os.close(fd)
        try:
            shutil.copyfile(path, tmp)
            os.replace(tmp, dest)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def exists(self, key: str) -> bool:
        return os.path.isfile(self._os_path(key))

    def _os_path(self, key: str) -> str:
        """``_path`` as a plain string, for the per-object calls a merge makes a million times:
        pathlib interns every path component (``sys.intern``), so distinct file names would
        churn the interpreter's intern table."""
        key = _check_key(key).strip("/")
        return os.path.join(self.uri, key) if key else self.uri

    def list(self, prefix: str = "") -> Iterator[str]:
        """Streamed in sorted order one folder at a time: a folder's entries are sorted by the
        key they lead to (``name`` for a file, ``name/`` for a folder), which is the order
        of the full keys, so only the folders on the current path are held, never the tree."""
        base = self._os_path(prefix)
        if not os.path.isdir(base):
            return
        root = len(os.path.join(self.uri, ""))
        stack: list[Iterator[tuple[str, bool, str]]] = [iter(_sorted_entries(base))]
        while stack:
            entry = next(stack[-1], None)
            if entry is None:
                stack.pop()
            elif entry[1]:
                stack.append(iter(_sorted_entries(entry[2])))
            else:
                yield entry[2][root:].replace(os.sep, "/")

    def iter_keys(self, prefix: str = "") -> Iterator[str]:
        base = self._os_path(prefix)
        if not os.path.isdir(base):
            return
        folders = [base]  # depth-first; each folder's entries streamed, never collected
        root = len(os.path.join(self.uri, ""))
        while folders:
            for _name, is_dir, path in _entries(folders.pop()):
                if is_dir:
                    folders.append(path)
                else:
                    yield path[root:].replace(os.sep, "/")

    def delete(self, key: str) -> None:
        try:
            os.unlink(self._os_path(key))
        except FileNotFoundError:
            pass

    @contextmanager
    def open(self, key: str) -> Iterator[IO[bytes]]:
        path = self._path(key)
        if not path.is_file():
            raise FileNotFoundError(f"{path} does not exist")
        with open(path, "rb") as fh:
            yield fh

    @contextmanager
    def local_copy(self, key: str) -> Iterator[Path]:
        path = self._path(key)
        if not path.is_file():
            raise FileNotFoundError(f"{path} does not exist")
        yield path

    def move(self, src: str, dst: str) -> None:
        source, target = self._os_path(src), self._os_path(dst)
        if not os.path.isfile(source):
            raise FileNotFoundError(f"{source} does not exist")
        os.makedirs(os.path.dirname(target), exist_ok=True)
        os.replace(source, target)

    def size(self, key: str) -> int:
        return os.stat(self._os_path(key)).st_size

    def local_path(self) -> Path:
        return self.root


def open_store(uri: str | os.PathLike) -> Store:
    """Open a store for a local path, a ``file://`` URI or an ``s3://`` URI."""
    text = str(uri)
    parsed = urlparse(text)
    if parsed.scheme == "s3":
        from headstart.shared.storage.s3 import S3Store  # boto3 only when S3 is used

        return S3Store(text)
    if parsed.scheme == "file":
        return LocalStore(parsed.path)
    if parsed.scheme and len(parsed.scheme) > 1:
        raise UserError(
            f"storage URI must be a local path, file:// or s3://. Received: {text!r}"
        )
    return LocalStore(text)


def split_uri(uri: str) -> tuple[Store, str]:
    """Split ``.../dir/name`` into (store of ``dir``, ``name``)."""
    text = str(uri).rstrip("/")
    head, sep, name = text.rpartition("/")
    if not head:
        head = "/" if sep else "."
    return open_store(head), name
