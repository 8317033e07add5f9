"""Fixtures shared by the whole test suite.

* Every test runs with fake AWS credentials and without any S3 endpoint override or
  ``HEADSTART_*`` variable from the developer's shell (autouse), so no test can reach real
  AWS or be steered by the environment it was started from.
* ``s3_bucket``: an in-process moto mock (``mock_aws``) with a created bucket; yields
  ``s3://<bucket>/prefix``.
* ``moto_server``: a real HTTP moto server (one per session, state reset per test) with
  ``HEADSTART_S3_ENDPOINT`` and fake credentials exported, for tests that start
  subprocesses (``mock_aws`` does not cross process boundaries).
* ``store_uri``: a store root parametrized over ``local`` (tmp_path) and ``s3`` (moto), to
  run one contract test against both backends.
"""
from __future__ import annotations

import os
import urllib.request
from dataclasses import dataclass
from typing import Iterator

import pytest

TEST_BUCKET = "headstart-test"
TEST_REGION = "us-east-1"

FAKE_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SECURITY_TOKEN": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": TEST_REGION,
    "AWS_REGION": TEST_REGION,
}
# Variables that could point boto3 at real credentials or a real endpoint.
_SCRUBBED = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE",
             "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
             "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3")


@pytest.fixture(autouse=True)
def fake_aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Fake AWS credentials, no real config files, no endpoint override, no HEADSTART_* leaks."""
    for name in _SCRUBBED:
        monkeypatch.delenv(name, raising=False)
    for name in list(os.environ):
        if name.startswith("HEADSTART_"):
            monkeypatch.delenv(name, raising=False)
    for name, value in FAKE_AWS_ENV.items():
        monkeypatch.setenv(name, value)
    nowhere = tmp_path_factory.getbasetemp() / "no-aws-config"
    monkeypatch.setenv("AWS_CONFIG_FILE", str(nowhere))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(nowhere))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    # Nor the developer's Headstart config file (it may name an S3 endpoint or a stack).
    empty = tmp_path_factory.getbasetemp() / "empty-headstart-config.yaml"
    empty.touch()  # named and empty: a named file that is missing is a user error
    monkeypatch.setenv("HEADSTART_CONFIG", str(empty))


@pytest.fixture
def s3_bucket() -> Iterator[str]:
    """``s3://headstart-test/prefix`` inside an in-process moto mock (bucket created)."""
    import boto3
    from moto import mock_aws

    with mock_aws():
        boto3.client("s3", region_name=TEST_REGION).create_bucket(Bucket=TEST_BUCKET)
        yield f"s3://{TEST_BUCKET}/prefix"


@dataclass(frozen=True)
class MotoServer:
    """A running moto server: ``endpoint`` (http://127.0.0.1:PORT), ``env`` (the variables a
    subprocess needs) and ``client()`` (a boto3 S3 client talking to it)."""

    endpoint: str
    bucket: str

    @property
    def env(self) -> dict[str, str]:
        return {**FAKE_AWS_ENV, "HEADSTART_S3_ENDPOINT": self.endpoint}

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/prefix"

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name=TEST_REGION,
                            aws_access_key_id="testing", aws_secret_access_key="testing")

    def reset(self) -> None:
        req = urllib.request.Request(f"{self.endpoint}/moto-api/reset", method="POST")
        urllib.request.urlopen(req, timeout=10).close()


@pytest.fixture(scope="session")
def _moto_server_session() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def moto_server(_moto_server_session: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[MotoServer]:
    """A moto S3 server over HTTP with a fresh state and bucket ``headstart-test``.

    Exports ``HEADSTART_S3_ENDPOINT`` and fake credentials (so subprocesses started with
    ``os.environ`` and in-process ``open_store("s3://...")`` both reach it). Use
    ``moto_server.uri`` (``s3://headstart-test/prefix``) and ``moto_server.env``.
    """
    server = MotoServer(endpoint=_moto_server_session, bucket=TEST_BUCKET)
    server.reset()
    for name, value in server.env.items():
        monkeypatch.setenv(name, value)
    server.client().create_bucket(Bucket=TEST_BUCKET)
    yield server
    server.reset()


@pytest.fixture(params=["local", "s3"])
def store_uri(request: pytest.FixtureRequest, tmp_path) -> str:
    """The root URI of an empty store: a local folder or an S3 prefix in moto."""
    if request.param == "local":
        return str(tmp_path / "store")
    return request.getfixturevalue("s3_bucket")


@pytest.fixture
def store(store_uri: str):
    """An opened :class:`headstart.shared.storage.store.Store` at ``store_uri`` (both backends)."""
    from headstart.shared.storage.store import open_store

    return open_store(store_uri)
