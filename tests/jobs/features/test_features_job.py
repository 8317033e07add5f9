"""``headstart features`` (sharded backbone pass) and ``train --features`` (head from the shards)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from headstart.shared.runtime.cli import main
from tests.helpers import TINY, failure


def _metrics(run: Path | str) -> dict:
    return json.loads(Path(run, "metrics.json").read_text())


@pytest.fixture(scope="module")
def shards(shapes_dataset: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """Two feature shards of the shapes dataset (pooled only), run as --shard 0/2 and 1/2."""
    out = str(tmp_path_factory.mktemp("feat") / "features")
    for i in (0, 1):
        assert main(["features", shapes_dataset, "--out", out, *TINY, "--shard", f"{i}/2",
                     "--batch-size", "5"]) == 0
    return out


def test_shards_cover_every_image_once_with_their_split(shards: str, trained_run: str) -> None:
    rows = []
    for i in (0, 1):
        shard = Path(shards, f"shard-0000{i}-of-00002")
        assert json.loads((shard / "manifest.json").read_text())["job"] == "features"
        lines = (shard / "rows.csv").read_text().splitlines()[1:]
        pooled = np.load(shard / "pooled.npy")
        assert pooled.dtype == np.float16 and pooled.shape == (len(lines), 2, 64)
        assert not (shard / "spatial.npy").exists()
        rows += [tuple(line.split(",")[:1] + line.split(",")[2:3]) for line in lines]
    expected = {tuple(line.split(",")[:2]) for line in
                Path(trained_run, "splits.csv").read_text().splitlines()[1:]}
    assert len(rows) == len(set(rows)) and set(rows) == expected


def assert_same_choice(cached: dict, images: dict) -> None:
    """The same head choice up to the shards' float16 pooled means (the images path pools its
    float16 maps in float32): every candidate's CV accuracy within a few held-out images, and
    the head chosen from shards within one image of the best from images. (The tiny random
    backbone sits at chance, where one image can reorder near-tied candidates.)"""
    def table(metrics):
        return {(c["kind"], c["width"], c["c"], c["steps"]): c["cv_accuracy"]
                for c in metrics["selection"]["candidates"]}
    a, b = table(cached), table(images)
    one = 1.5 / (images["splits"]["train"]["n"] + images["splits"]["valid"]["n"])
    assert a.keys() == b.keys() and max(abs(a[k] - b[k]) for k in a) <= 5 * one
    chosen = cached["selection"]["chosen"]
    assert b[(chosen["kind"], chosen["width"], chosen["c"], chosen["steps"])] >= max(b.values()) - 2 * one


def test_train_from_shards_matches_training_from_images(shards: str, shapes_dataset: str,
                                                        trained_run: str, tmp_path: Path) -> None:
    out = tmp_path / "from-shards"
    # trained_run is `train DATASET *TINY --epochs 2` from images; the same spec from shards:
    assert main(["train", shapes_dataset, "--out", str(out), *TINY, "--epochs", "2",
                 "--features", shards]) == 0
    cached, images = _metrics(out), _metrics(trained_run)
    assert_same_choice(cached, images)
    chosen = cached["selection"]["chosen"]
    for split in ("train", "valid", "test"):
        assert abs(cached["splits"][split]["accuracy"] - images["splits"][split]["accuracy"]) <= 0.05
    assert cached["timing"]["decode_s"] < images["timing"]["decode_s"]
    assert Path(out, "splits.csv").read_text() == Path(trained_run, "splits.csv").read_text()
    # model.keras holds the backbone: usable on raw images like any run, and close to the other.
    import keras

    from headstart.shared.data.images import decode_image

    files = sorted(Path(shapes_dataset).glob("*/*"))[:6]
    batch = np.stack([decode_image(f.read_bytes()).astype("float32") for f in files])
    from headstart.shared.model.featureshards import weights_digest

    ma, mb = keras.models.load_model(out / "model.keras"), keras.models.load_model(Path(trained_run, "model.keras"))
    assert weights_digest(ma.get_layer("backbone")) == weights_digest(mb.get_layer("backbone"))
    a, b = np.asarray(ma(batch)), np.asarray(mb(batch))
    assert a.shape == b.shape and np.allclose(a.sum(1), 1, atol=1e-5)
    if chosen == images["selection"]["chosen"]:  # the same head: the same model up to float16
        assert np.allclose(a, b, atol=0.02)


def test_array_child_retry_and_changed_settings(shapes_dataset: str, tmp_path: Path, monkeypatch) -> None:
    out = tmp_path / "feat"
    monkeypatch.setenv("AWS_BATCH_JOB_ARRAY_INDEX", "1")
    common = ["features", shapes_dataset, "--out", str(out), *TINY, "--shard-count", "3"]
    assert main(common) == 0
    shard = out / "shard-00001-of-00003"
    first = (shard / "manifest.json").read_text()
    assert main(common) == 0  # a retried child: the published shard stands
    assert (shard / "manifest.json").read_text() == first
    assert main([*common, "--image-size", "48"]) == 2
    assert "other settings" in failure(out)["message"]
    # train needs every shard: 0 and 2 are missing
    run = tmp_path / "run"
    assert main(["train", shapes_dataset, "--out", str(run), *TINY, "--features", str(out)]) == 2
    assert "missing feature shard(s) [0, 2] of 3" in failure(run)["message"]


@pytest.mark.parametrize(("flags", "named"), [
    (["--image-size", "40"], "image_size=32"),
    (["--valid-fraction", "0.3"], "valid_fraction=0.15"),
    (["--recipe", "reference"], "--spatial"),
    (["--fine-tune-layers", "2"], "fine_tune_layers"),
    (["--augment-views", "1"], "augment_views"),
])
def test_mismatched_or_pixel_needing_runs_are_refused(shards: str, shapes_dataset: str, tmp_path: Path,
                                                      flags: list[str], named: str, capsys,
                                                      caplog) -> None:
    run = tmp_path / "run"
    assert main(["train", shapes_dataset, "--out", str(run), *TINY, *flags, "--features", shards]) == 2
    assert named in caplog.text + capsys.readouterr().err  # one line naming the setting
    assert not (run / "manifest.json").exists()


def test_another_backbone_is_refused_by_its_weights_digest(shards: str, shapes_dataset: str,
                                                           tmp_path: Path) -> None:
    tampered = tmp_path / "tampered"
    import shutil

    shutil.copytree(shards, tampered)
    for meta_file in tampered.glob("shard-*/features.json"):
        meta = json.loads(meta_file.read_text())
        meta["digest"] = "0" * 32  # as if another set of weights had computed them
        meta_file.write_text(json.dumps(meta))
    run = tmp_path / "run"
    assert main(["train", shapes_dataset, "--out", str(run), *TINY, "--features", str(tampered)]) == 2
    assert "weights digest" in failure(run)["message"]


def test_reference_recipe_trains_from_spatial_shards(shapes_dataset: str, tmp_path: Path) -> None:
    feat = tmp_path / "spatial"
    assert main(["features", shapes_dataset, "--out", str(feat), *TINY, "--spatial"]) == 0
    maps = np.load(feat / "spatial.npy")
    assert maps.dtype == np.float16 and maps.ndim == 4  # unsharded: OUT itself is the shard
    run = tmp_path / "run"
    assert main(["train", shapes_dataset, "--out", str(run), *TINY, "--recipe", "reference",
                 "--epochs", "2", "--features", str(feat)]) == 0
    history = json.loads((run / "history.json").read_text())["history"]
    assert len(history["val_loss"]) == 2 and _metrics(run)["splits"]["test"]["n"] > 0


def test_an_array_job_writes_shards_to_s3_and_train_reads_them_there(shapes_dataset: str, s3_bucket: str,
                                                                    trained_run: str, monkeypatch) -> None:
    from headstart.shared.storage.store import open_store

    prefix = f"{s3_bucket}/run/features"
    for child in ("0", "1"):  # what AWS Batch runs: one container per array index
        monkeypatch.setenv("AWS_BATCH_JOB_ARRAY_INDEX", child)
        assert main(["features", shapes_dataset, "--out", prefix, *TINY, "--shard-count", "2"]) == 0
    monkeypatch.delenv("AWS_BATCH_JOB_ARRAY_INDEX")
    keys = set(open_store(prefix).list())
    assert {"shard-00000-of-00002/manifest.json", "shard-00001-of-00002/pooled.npy"} <= keys
    model = f"{s3_bucket}/run/model"
    assert main(["train", shapes_dataset, "--out", model, *TINY, "--epochs", "2", "--features", prefix]) == 0
    metrics = json.loads(open_store(model).read_text("metrics.json"))
    assert_same_choice(metrics, _metrics(trained_run))


def test_split_and_backbone_options_are_trains():
    """The shards carry the split train will use: same defaults and bounds, field by field."""
    from headstart.jobs.features.spec import FeaturesSpec
    from headstart.jobs.train.spec import TrainSpec
    from headstart.shared.model.featureshards import SPLIT_KEYS

    for name in (*SPLIT_KEYS, "backbone", "weights", "image_size"):
        mine, trains = FeaturesSpec.model_fields[name], TrainSpec.model_fields[name]
        assert (mine.annotation, mine.default, mine.metadata) == (trains.annotation, trains.default,
                                                                  trains.metadata), name


def test_shards_of_an_older_decode_and_resize_are_refused(shards: str, shapes_dataset: str,
                                                          tmp_path: Path) -> None:
    """Features computed with another resize (e.g. the bilinear layer before the antialiased
    one) would not be what the saved model computes: refused, naming the setting."""
    import shutil

    from headstart.shared.data.modelinput import preprocessing_tag

    assert preprocessing_tag() == "bilinear-antialias/gap2"
    old = tmp_path / "old"
    shutil.copytree(shards, old)
    for meta_file in old.glob("shard-*/features.json"):
        meta = json.loads(meta_file.read_text())
        assert meta["resize"] == preprocessing_tag()
        del meta["resize"]  # as the shards of the previous release were written
        meta_file.write_text(json.dumps(meta))
    run = tmp_path / "run"
    assert main(["train", shapes_dataset, "--out", str(run), *TINY, "--features", str(old)]) == 2
    assert "resize=None" in failure(run)["message"]
