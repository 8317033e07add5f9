"""One storage interface over local paths / ``file://`` and ``s3://``.

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
from typing import Iterator
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

    @abstractmethod
    def exists(self, key: str) -> bool:
        """Whether an object exists at ``key``."""

    @abstractmethod
    def list(self, prefix: str = "") -> Iterator[str]:
        """Yield keys (relative to the root) under the folder ``prefix``, recursively, sorted."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Delete an object; deleting an absent key is not an error."""

    @abstractmethod
    def size(self, key: str) -> int:
        """The object's size in bytes."""

    def child(self, prefix: str) -> "Store":
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

    def is_empty(self) -> bool:
        return next(iter(self.list()), None) is None

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


def is_remote(uri: str) -> bool:
    return urlparse(str(uri)).scheme == "s3"


def _check_key(key: str) -> str:
    """Reject keys that would climb out of the store's root."""
    if any(part == ".." for part in str(key).split("/")):
        raise UserError(f"storage key must not contain '..'. Received: key={key!r}")
    return key


def _atomic_write_local(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class LocalStore(Store):
    """A directory on the local filesystem."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root).expanduser().resolve()
        self.uri = str(self.root)

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

    def upload_file(self, key: str, path: str | os.PathLike) -> None:
        dest = self._path(key)
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
        os.close(fd)
        try:
            shutil.copyfile(path, tmp)
            os.replace(tmp, dest)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list(self, prefix: str = "") -> Iterator[str]:
        base = self._path(prefix)
        if not base.is_dir():
            return
        found = []
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            for name in filenames:
                if name.startswith(".") and name.endswith(".tmp"):
                    continue  # an in-flight atomic write, not an object
                found.append((Path(dirpath) / name).relative_to(self.root).as_posix())
        yield from sorted(found)

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def size(self, key: str) -> int:
        return self._path(key).stat().st_size

    def local_path(self) -> Path:
        return self.root


class S3Store(Store):
    """A prefix in an S3 bucket (or any S3-compatible endpoint: MinIO, a moto server)."""

    def __init__(self, uri: str, client=None) -> None:
        parsed = urlparse(uri)
        if not parsed.netloc:
            raise UserError(f"S3 URI must be s3://BUCKET/PREFIX. Received: {uri!r}")
        self.bucket = parsed.netloc
        self.prefix = parsed.path.strip("/")
        self.uri = join(f"s3://{self.bucket}", self.prefix)
        self._client = client

    @property
    def client(self):
        if self._client is None:
            self._client = s3_client()
        return self._client

    def _key(self, key: str) -> str:
        _check_key(key)
        return join(self.prefix, key) if self.prefix else key.strip("/")

    def _no_bucket(self) -> UserError:
        return UserError(f"S3 bucket does not exist: {self.bucket!r} (from {self.uri})")

    @contextmanager
    def _bucket_errors(self):
        """Turn a missing bucket into a :class:`UserError` (a wrong URI, not a crash)."""
        try:
            yield
        except self.client.exceptions.NoSuchBucket as exc:
            raise self._no_bucket() from exc

    def read_bytes(self, key: str) -> bytes:
        try:
            with self._bucket_errors():
                return self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()
        except self.client.exceptions.NoSuchKey as exc:
            raise FileNotFoundError(f"{join(self.uri, key)} does not exist") from exc

    def write_bytes(self, key: str, data: bytes) -> None:
        with self._bucket_errors():
            self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)

    def upload_file(self, key: str, path: str | os.PathLike) -> None:
        from boto3.exceptions import S3UploadFailedError

        s3_key = self._key(key)
        if not Path(path).is_file():
            raise FileNotFoundError(f"{path} does not exist")
        try:
            self.client.upload_file(str(path), self.bucket, s3_key)
        except S3UploadFailedError as exc:
            if "NoSuchBucket" in str(exc):
                raise self._no_bucket() from exc
            raise

    def exists(self, key: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(key))
            return True
        except self.client.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise

    def list(self, prefix: str = "") -> Iterator[str]:
        root = f"{self.prefix}/" if self.prefix else ""
        search = self._key(prefix)
        search = f"{search}/" if search else ""
        paginator = self.client.get_paginator("list_objects_v2")
        with self._bucket_errors():
            for page in paginator.paginate(Bucket=self.bucket, Prefix=search):
                for obj in page.get("Contents", []):
                    yield obj["Key"][len(root):]

    def delete(self, key: str) -> None:
        with self._bucket_errors():
            self.client.delete_object(Bucket=self.bucket, Key=self._key(key))

    def size(self, key: str) -> int:
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        except self.client.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                raise FileNotFoundError(f"{join(self.uri, key)} does not exist") from exc
            raise
        return int(head["ContentLength"])


def s3_endpoint() -> str | None:
    """The S3 endpoint override (``HEADSTART_S3_ENDPOINT``, ``AWS_ENDPOINT_URL_S3``, or
    ``s3_endpoint`` in the config file: :mod:`headstart.shared.runtime.configfile`); None
    means AWS's own endpoint."""
    from headstart.shared.runtime.configfile import setting

    return setting("s3_endpoint", aliases=("AWS_ENDPOINT_URL_S3",))


def s3_client():
    """A boto3 S3 client, pointed at :func:`s3_endpoint` when set (MinIO, a moto server)."""
    import boto3  # imported lazily: local-only runs never need it

    return boto3.client("s3", endpoint_url=s3_endpoint())


def open_store(uri: str | os.PathLike) -> Store:
    """Open a store for a local path, a ``file://`` URI or an ``s3://`` URI."""
    text = str(uri)
    parsed = urlparse(text)
    if parsed.scheme == "s3":
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
