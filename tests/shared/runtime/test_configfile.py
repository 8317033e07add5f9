"""One config-file reader for storage and cloud settings: env > file > default."""
from __future__ import annotations

import pytest

from headstart.shared.runtime.configfile import read_config, setting
from headstart.shared.runtime.errors import UserError


def test_env_beats_file_beats_default(tmp_path) -> None:
    path = tmp_path / "cloud.yaml"
    path.write_text("s3_endpoint: http://file:9000\nregion: eu-west-1\n")
    env = {"HEADSTART_CONFIG": str(path)}
    assert setting("s3_endpoint", env=env) == "http://file:9000"
    assert setting("bucket", "dflt", env=env) == "dflt"
    assert setting("region", env={**env, "HEADSTART_REGION": "us-east-2"}) == "us-east-2"
    assert setting("s3_endpoint", aliases=("AWS_ENDPOINT_URL_S3",),
                   env={**env, "AWS_ENDPOINT_URL_S3": "http://aws:1"}) == "http://aws:1"
    with pytest.raises(KeyError):
        setting("s3_endpiont", env=env)


@pytest.mark.parametrize("text, match", [
    ("s3_endpoint: [unclosed\n", "not readable YAML"),
    ("- a list\n", "must be a mapping"),
    ("s3_endpiont: http://x\n", r"unknown setting\(s\) \['s3_endpiont'\]"),
    (b"\xff\xfe bad", "not readable YAML"),
])
def test_bad_files_are_one_line_user_errors(tmp_path, text, match) -> None:
    path = tmp_path / "cloud.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(UserError, match=match) as info:
        read_config({"HEADSTART_CONFIG": str(path)})
    assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_missing_named_file_is_an_error_and_no_file_is_empty(tmp_path, monkeypatch) -> None:
    with pytest.raises(UserError, match="missing file"):
        read_config({"HEADSTART_CONFIG": str(tmp_path / "absent.yaml")})
    monkeypatch.setenv("HOME", str(tmp_path))  # the default path is under ~
    assert read_config({}) == {}
    (tmp_path / ".config/headstart").mkdir(parents=True)
    (tmp_path / ".config/headstart/cloud.yaml").write_text("stack: s\n")
    assert read_config({}) == {"stack": "s"}


def test_storage_and_cloud_read_the_same_file(tmp_path, monkeypatch) -> None:
    from headstart.infra.cloud.settings import CloudSpec, resolve
    from headstart.shared.storage.s3 import s3_endpoint

    path = tmp_path / "cloud.yaml"
    path.write_text("s3_endpoint: http://minio:9000\nbucket: b\nstack: mine\nregion: eu-west-1\n")
    monkeypatch.setenv("HEADSTART_CONFIG", str(path))
    monkeypatch.delenv("HEADSTART_S3_ENDPOINT", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    cloud = resolve(CloudSpec())  # failed with "must map settings" while s3_endpoint was there
    assert (cloud.stack, cloud.region, cloud.get("bucket")) == ("mine", "eu-west-1", "b")
    assert s3_endpoint() == "http://minio:9000"
