"""Bad inputs to ``headstart train``: exit 2, one clear line, _FAILURE.json, no manifest."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from headstart.shared.runtime.cli import main
from tests.helpers import MOBILENET_160 as MOBILENET
from tests.helpers import TINY, failure


def _expect_user_error(args: list[str], out: Path, *needles: str) -> str:
    assert main(["train", *args, "--out", str(out)]) == 2
    record = failure(out)
    assert record["kind"] == "user_error" and record["exit_code"] == 2
    for needle in needles:
        assert needle in record["message"], record["message"]
    assert not (out / "manifest.json").exists()
    return record["message"]


def test_missing_dataset(tmp_path: Path) -> None:
    _expect_user_error([str(tmp_path / "nope"), *TINY], tmp_path / "out", "nope")


def test_unknown_backbone(shapes_dataset: str, tmp_path: Path) -> None:
    _expect_user_error([shapes_dataset, "--backbone", "resnet9000"], tmp_path / "out",
                       "`backbone` must be one of", "resnet9000")


def test_image_size_too_small(shapes_dataset: str, tmp_path: Path) -> None:
    _expect_user_error([shapes_dataset, "--backbone", "inception_v3", "--weights", "none",
                        "--image-size", "50"], tmp_path / "out", "image_size", "50")


def test_bad_weights_value(shapes_dataset: str, tmp_path: Path, capsys) -> None:
    # Rejected while the spec is validated, before any output folder exists.
    assert main(["train", shapes_dataset, "--out", str(tmp_path / "o"), "--weights", "resnet.bin"]) == 2
    assert "resnet.bin" in capsys.readouterr().err


def test_negative_epochs(shapes_dataset: str, tmp_path: Path, capsys) -> None:
    assert main(["train", shapes_dataset, "--out", str(tmp_path / "o"), "--epochs", "-1"]) == 2
    assert "epochs" in capsys.readouterr().err


def test_empty_label_folder(shapes_dataset: str, tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(shapes_dataset, data)
    (data / "empty_label").mkdir()
    _expect_user_error([str(data), *TINY], tmp_path / "out", "'empty_label' has 0")


def test_label_with_too_few_images(shapes_dataset: str, tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(shapes_dataset, data)
    (data / "lonely").mkdir()
    shutil.copy(next((data / "circle").iterdir()), data / "lonely" / "only.jpg")
    _expect_user_error([str(data), *TINY], tmp_path / "out", "'lonely' has 1")


def test_labels_differ_across_splits(shapes_dataset: str, tmp_path: Path) -> None:
    data = tmp_path / "data"
    for split in ("train", "valid"):
        for label in ("circle", "square") if split == "train" else ("circle", "cross"):
            shutil.copytree(Path(shapes_dataset) / label, data / split / label)
    _expect_user_error([str(data), *TINY], tmp_path / "out", "labels differ", "cross")


def test_no_images(tmp_path: Path) -> None:
    (tmp_path / "data" / "a").mkdir(parents=True)
    (tmp_path / "data" / "a" / "readme.txt").write_text("not an image")
    (tmp_path / "data" / "b").mkdir()
    (tmp_path / "data" / "b" / "x.jpg").write_bytes(b"nope")
    _expect_user_error([str(tmp_path / "data"), *TINY], tmp_path / "out", "too few images")


@pytest.mark.skipif(not MOBILENET.is_file(), reason="../shared/models (handed material) is absent")
def test_weights_for_another_architecture(shapes_dataset: str, tmp_path: Path) -> None:
    _expect_user_error([shapes_dataset, "--backbone", "resnet50", "--image-size", "160",
                        "--weights", str(MOBILENET)], tmp_path / "out", "does not fit", "resnet50")


def test_missing_weights_file(shapes_dataset: str, tmp_path: Path) -> None:
    _expect_user_error([shapes_dataset, "--backbone", "mobilenet_v2", "--image-size", "32",
                        "--weights", str(tmp_path / "gone.weights.h5")], tmp_path / "out", "not found")


def test_unknown_class_weight_label_fails_before_the_model_is_built(shapes_dataset: str, tmp_path: Path,
                                                                   monkeypatch) -> None:
    # The labels are known once the dataset is listed: no import, build or backbone pass first.
    from headstart.jobs.train import workflow

    def no_build(*args, **kwargs):
        raise AssertionError("the model was built before the class weights were checked")

    monkeypatch.setattr(workflow, "_build", no_build)
    message = _expect_user_error([shapes_dataset, *TINY, "--class-weights", "dog=2"], tmp_path / "out",
                                 "dog", "class_weights")
    assert "labels are" in message
