"""The S3 backend of :class:`~headstart.shared.storage.store.Store` (any S3-compatible endpoint)."""
from __future__ import annotations

import os
from contextlib import contextmanager
from io import RawIOBase
from pathlib import Path
from typing import IO, Iterator
from urllib.parse import urlparse

from headstart.shared.runtime.errors import UserError
from headstart.shared.storage.store import Store, _check_key, join


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
            error = _client_error(code, exc.response.get("Error", {}).get("Message", ""), self.bucket, where)
            if error is None:
                raise
            raise error from None
        except S3UploadFailedError as exc:  # wraps the ClientError in its text
            code = next((c for c in (*_ACCESS_DENIED, "NoSuchBucket") if c in str(exc)), "")
            error = _client_error(code, "", self.bucket, where)
            if error is None:
                raise
            raise error from None
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

    def readinto(self, buf) -> int:
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
