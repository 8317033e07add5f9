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
from io import RawIOBase
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


def _umask() -> int:
    """The process umask (Linux: read, not set, so threads never see a changed one)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _temp_sibling(path: Path) -> tuple[int, str]:
    """A temporary file next to ``path`` with the mode a plain ``open(path, "w")`` would give:
    ``mkstemp`` creates 0600, so a host user could not read what a container wrote."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.fchmod(fd, 0o666 & ~_umask())
    return fd, tmp


def _atomic_write_local(path: Path, data: bytes) -> None:
    fd, tmp = _temp_sibling(path)
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
        fd, tmp = _temp_sibling(dest)
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
        source, target = self._path(src), self._path(dst)
        if not source.is_file():
            raise FileNotFoundError(f"{source} does not exist")
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(source, target)

    def size(self, key: str) -> int:
        return self._path(key).stat().st_size

    def local_path(self) -> Path:
        return self.root


class S3Store(Store):
    """A prefix in an S3 bucket (or any S3-compatible endpoint: MinIO, a moto server).

    Every call goes through :meth:`_errors`: a missing key is :class:`FileNotFoundError`;
    no credentials, an unreachable endpoint, a missing bucket or a refused request are one-line
    :class:`UserError` s (exit 2) naming the URI, not botocore tracebacks.
    """

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

    @contextmanager
    def _errors(self, key: str = ""):
        """Translate botocore failures of a call about ``key`` (see the class docstring)."""
        from boto3.exceptions import S3UploadFailedError
        from botocore.exceptions import (BotoCoreError, ClientError, ConnectionError as BotoConnectionError,
                                         NoCredentialsError, PartialCredentialsError)

        where = join(self.uri, key) if key else self.uri
        try:
            yield
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in _MISSING_KEY:
                raise FileNotFoundError(f"{where} does not exist") from exc
            raise _client_error(code, exc.response.get("Error", {}).get("Message", ""), self.bucket,
                                where) or exc
        except S3UploadFailedError as exc:  # wraps the ClientError in its text
            code = next((c for c in (*_ACCESS_DENIED, "NoSuchBucket") if c in str(exc)), "")
            raise _client_error(code, "", self.bucket, where) or exc
        except (NoCredentialsError, PartialCredentialsError) as exc:
            raise UserError(f"no usable AWS credentials for {where} ({exc}); set AWS_PROFILE or "
                            "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or run on a role") from None
        except BotoConnectionError as exc:  # refused, DNS, timeouts: botocore already retried
            endpoint = self.client.meta.endpoint_url
            raise UserError(f"cannot reach the S3 endpoint {endpoint} for {where}: {exc}; check "
                            "the network, or HEADSTART_S3_ENDPOINT / s3_endpoint in the config "
                            "file") from None
        except BotoCoreError as exc:
            raise UserError(f"S3 request for {where} failed: {exc}") from None

    def read_bytes(self, key: str) -> bytes:
        with self._errors(key):
            return self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()

    def write_bytes(self, key: str, data: bytes) -> None:
        with self._errors(key):
            self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)

    def upload_file(self, key: str, path: str | os.PathLike) -> None:
        s3_key = self._key(key)
        if not Path(path).is_file():
            raise FileNotFoundError(f"{path} does not exist")
        with self._errors(key):
            self.client.upload_file(str(path), self.bucket, s3_key)

    def exists(self, key: str) -> bool:
        try:
            with self._errors(key):
                self.client.head_object(Bucket=self.bucket, Key=self._key(key))
            return True
        except FileNotFoundError:
            return False

    def list(self, prefix: str = "") -> Iterator[str]:
        root = f"{self.prefix}/" if self.prefix else ""
        search = self._key(prefix)
        search = f"{search}/" if search else ""
        paginator = self.client.get_paginator("list_objects_v2")
        with self._errors(prefix):
            for page in paginator.paginate(Bucket=self.bucket, Prefix=search):
                for obj in page.get("Contents", []):
                    yield obj["Key"][len(root):]

    def delete(self, key: str) -> None:
        with self._errors(key):
            self.client.delete_object(Bucket=self.bucket, Key=self._key(key))

    def size(self, key: str) -> int:
        with self._errors(key):
            head = self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        return int(head["ContentLength"])

    @contextmanager
    def open(self, key: str) -> Iterator[IO[bytes]]:
        import io

        with self._errors(key):
            body = self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"]
        try:
            with self._errors(key):  # the stream reads lazily: later reads can fail too
                yield io.BufferedReader(_RawBody(body), buffer_size=1 << 20)
        finally:
            body.close()

    def move(self, src: str, dst: str) -> None:
        with self._errors(src):
            self.client.copy_object(Bucket=self.bucket, Key=self._key(dst),
                                    CopySource={"Bucket": self.bucket, "Key": self._key(src)})
        self.delete(src)


_MISSING_KEY = {"404", "NoSuchKey", "NotFound"}
_ACCESS_DENIED = {"403", "AccessDenied", "AllAccessDisabled", "InvalidAccessKeyId",
                  "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken", "AccountProblem"}


def _client_error(code: str, message: str, bucket: str, where: str) -> UserError | None:
    """The user error an S3 error code stands for, or None (a crash: let it propagate)."""
    if code == "NoSuchBucket":
        return UserError(f"S3 bucket does not exist: {bucket!r} (from {where})")
    if code in _ACCESS_DENIED:
        detail = f": {message}" if message else ""
        return UserError(f"S3 refused access to {where} ({code}{detail}); check the credentials "
                         "and the bucket policy")
    return None


class _RawBody(RawIOBase):
    """Adapts a botocore ``StreamingBody`` to the raw-IO interface buffered readers want."""

    def __init__(self, body) -> None:
        self.body = body

    def readable(self) -> bool:
        return True

    def readinto(self, buf) -> int:  # type: ignore[override]
        data = self.body.read(len(buf))
        buf[:len(data)] = data
        return len(data)


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
