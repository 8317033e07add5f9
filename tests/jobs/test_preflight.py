"""Pre-flight checks: every check fails with one line and exit 2 before any image is decoded."""
from __future__ import annotations

import socket
from pathlib import Path

import pytest

from headstart.shared.runtime import preflight
from headstart.shared.runtime.cli import main
from headstart.shared.runtime.errors import UserError
from tests.helpers import TINY, failure


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """No Keras weights cache and a weights host that refuses connections."""
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setattr(preflight, "WEIGHTS_HOST", ("127.0.0.1", port))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras-home"))


@pytest.fixture
def no_decode(monkeypatch):
    """Fail the test if the train job reaches image decoding."""
    import headstart.jobs.train.workflow as wf

    def boom(*args, **kwargs):
        raise AssertionError("images were decoded before the pre-flight check failed")

    import headstart.jobs.train.stage as stage

    monkeypatch.setattr(wf, "load_split", boom)
    monkeypatch.setattr(stage, "stream_split", boom)  # the default recipe streams into the base


def _errors(caplog) -> str:
    return "\n".join(r.getMessage() for r in caplog.records if r.levelname == "ERROR")


def _train(dataset: str, out: Path, *flags: str) -> int:
    return main(["train", dataset, "--out", str(out), *flags])


def test_tiny_with_default_imagenet_weights(shapes_dataset, tmp_path, no_decode, capsys):
    out = tmp_path / "run"
    assert _train(shapes_dataset, out, "--backbone", "tiny", "--image-size", "32") == 2
    message = failure(out)["message"]
    assert "'tiny' has no ImageNet weights" in message and "--weights none" in message
    assert "\n" not in message


def test_missing_and_broken_weights_files(shapes_dataset, tmp_path, no_decode):
    out = tmp_path / "run"
    missing = tmp_path / "nope.weights.h5"
    assert _train(shapes_dataset, out, "--backbone", "tiny", "--image-size", "32",
                  "--weights", str(missing)) == 2
    assert failure(out)["message"] == f"weights file not found: {str(missing)!r}"
    junk = tmp_path / "junk.weights.h5"
    junk.write_bytes(b"not hdf5 at all")
    assert _train(shapes_dataset, out, "--backbone", "tiny", "--image-size", "32",
                  "--weights", str(junk)) == 2
    assert "is not a Keras .weights.h5 (HDF5) file" in failure(out)["message"]


def test_weights_of_another_model_fail_before_decoding(shapes_dataset, tmp_path, no_decode):
    import keras

    other = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    path = tmp_path / "other.weights.h5"
    other.save_weights(str(path))
    out = tmp_path / "run"
    assert _train(shapes_dataset, out, "--backbone", "tiny", "--image-size", "32",
                  "--weights", str(path)) == 2
    assert "does not fit backbone 'tiny'" in failure(out)["message"]


def test_imagenet_weights_offline(shapes_dataset, tmp_path, offline, no_decode):
    out = tmp_path / "run"
    assert _train(shapes_dataset, out, "--backbone", "mobilenet_v2", "--image-size", "32") == 2
    message = failure(out)["message"]
    assert "ImageNet weights for 'mobilenet_v2'" in message and "offline" in message
    assert "--weights PATH" in message


def test_imagenet_weights_in_the_keras_cache_pass_offline(offline, tmp_path):
    cache = preflight.keras_cache_dir()
    cache.mkdir(parents=True)
    (cache / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5").write_bytes(b"x")
    preflight.check_backbone("mobilenet_v2", "imagenet", 224)
    with pytest.raises(UserError, match="'resnet50' are not in"):
        preflight.check_backbone("resnet50", "imagenet", 224)


def test_output_not_writable(shapes_dataset, tmp_path, no_decode, caplog):
    blocker = tmp_path / "a-file"
    blocker.write_text("in the way")
    assert _train(shapes_dataset, blocker / "run", *TINY) == 2
    assert f"cannot write to --out {str(blocker / 'run')!r}" in _errors(caplog)


def test_dataset_missing_or_empty(tmp_path, no_decode, caplog):
    assert _train(str(tmp_path / "nowhere"), tmp_path / "run", *TINY) == 2
    assert f"dataset {str(tmp_path / 'nowhere')!r} does not exist" in _errors(caplog)
    (tmp_path / "empty").mkdir()
    assert _train(str(tmp_path / "empty"), tmp_path / "run", *TINY) == 2
    assert f"dataset {str(tmp_path / 'empty')!r} is empty" in _errors(caplog)


def test_s3_output_and_input_without_bucket(s3_bucket):
    preflight.check_output(f"{s3_bucket}/run")  # the bucket exists: fine, and the probe is gone
    from headstart.shared.storage.store import open_store

    assert list(open_store(f"{s3_bucket}/run").list()) == []
    with pytest.raises(UserError, match="cannot write to --out 's3://no-such-bucket/run'"):
        preflight.check_output("s3://no-such-bucket/run")
    with pytest.raises(UserError, match="no-such-bucket"):
        preflight.check_input("s3://no-such-bucket/data", "dataset")


def test_other_jobs_check_their_output_first(trained_run, shapes_dataset, tmp_path, caplog):
    blocker = tmp_path / "a-file"
    blocker.write_text("in the way")
    for job in (["evaluate", trained_run, shapes_dataset], ["gradcam", trained_run, shapes_dataset],
                ["similarity", trained_run, shapes_dataset]):
        assert main([*job, "--out", str(blocker / job[0])]) == 2
        assert f"cannot write to --out {str(blocker / job[0])!r}" in _errors(caplog)
