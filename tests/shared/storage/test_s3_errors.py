"""S3 problems are one-line user errors naming the URI (exit 2), not botocore tracebacks."""
from __future__ import annotations

import logging
import socket

import pytest

from headstart.shared.runtime.errors import EXIT_USER_ERROR, UserError
from headstart.shared.storage.store import open_store


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # nothing listens once the socket is closed


def _one_line(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert "\n" not in text and len(text) < 400, text
    return text


def test_unreachable_endpoint(monkeypatch) -> None:
    endpoint = f"http://127.0.0.1:{_closed_port()}"
    monkeypatch.setenv("HEADSTART_S3_ENDPOINT", endpoint)
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")  # refused at once; do not wait out retries
    store = open_store("s3://some-bucket/data")
    for call in (lambda: store.read_bytes("a.jpg"), lambda: store.write_text("a", "x"),
                 lambda: list(store.list()), lambda: store.exists("a")):
        with pytest.raises(UserError, match="cannot reach the S3 endpoint") as exc:
            call()
        assert endpoint in _one_line(exc) and "s3://some-bucket/data" in str(exc.value)


def test_no_credentials(monkeypatch, tmp_path) -> None:
    import boto3

    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)  # it caches credentials it found before
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SECURITY_TOKEN", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HEADSTART_S3_ENDPOINT", f"http://127.0.0.1:{_closed_port()}")
    with pytest.raises(UserError, match="no usable AWS credentials") as exc:
        open_store("s3://some-bucket/data").read_bytes("a.jpg")
    assert "s3://some-bucket/data/a.jpg" in _one_line(exc)


def test_no_such_bucket(s3_bucket) -> None:
    store = open_store("s3://no-such-bucket-here/x")
    for call in (lambda: store.read_bytes("k"), lambda: store.write_text("k", "v"),
                 lambda: list(store.list()), lambda: store.move("a", "b")):
        with pytest.raises(UserError, match="bucket does not exist: 'no-such-bucket-here'") as exc:
            call()
        _one_line(exc)


def test_access_denied(s3_bucket, monkeypatch) -> None:
    import boto3
    from moto.core import set_initial_no_auth_action_count

    iam = boto3.client("iam")
    iam.create_user(UserName="nobody")
    key = iam.create_access_key(UserName="nobody")["AccessKey"]
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key["AccessKeyId"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", key["SecretAccessKey"])
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_SECURITY_TOKEN", raising=False)

    @set_initial_no_auth_action_count(0)  # from now on moto checks IAM: "nobody" may do nothing
    def denied() -> None:
        store = open_store(s3_bucket)
        for call in (lambda: store.read_bytes("k"), lambda: store.write_text("k", "v"),
                     lambda: list(store.list())):
            with pytest.raises(UserError, match="S3 refused access to s3://") as exc:
                call()
            _one_line(exc)

    denied()


def test_a_job_reading_a_missing_bucket_exits_2_with_one_line(s3_bucket, caplog) -> None:
    from headstart.jobs.train.spec import TrainSpec
    from headstart.jobs.train.workflow import train
    from headstart.shared.runtime.runner import run_job

    spec = TrainSpec(dataset="s3://no-such-bucket-here/ds", out="s3://no-such-bucket-here/run",
                     backbone="tiny", weights="none")
    with caplog.at_level(logging.ERROR):
        assert run_job("train", spec, train) == EXIT_USER_ERROR
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "no-such-bucket-here" in errors[0].getMessage()
    assert "\n" not in errors[0].getMessage() and errors[0].exc_info is None
