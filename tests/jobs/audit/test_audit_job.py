"""`headstart audit` end to end (tiny backbone): findings, outputs, keep-list, train --exclude, S3."""
from __future__ import annotations

import csv
import io
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from headstart.shared.runtime.cli import main
from tests.helpers import TINY, copy_tree, encode

# The untrained tiny backbone embeds everything alike: only exact copies count as duplicates.
STRICT = ["--duplicate-threshold", "0.99999", "--leakage-threshold", "0.99999"]


@pytest.fixture(scope="module")
def planted(shapes_dataset: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The shapes dataset plus a copy within a label, a copy across labels and unhealthy files."""
    root = tmp_path_factory.mktemp("planted") / "ds"
    shutil.copytree(shapes_dataset, root)
    labels = sorted(p.name for p in root.iterdir() if p.is_dir())
    rng = np.random.default_rng(0)
    shutil.copy(root / labels[0] / "0000.jpg", root / labels[0] / "dup.jpg")
    shutil.copy(root / labels[0] / "0001.jpg", root / labels[1] / "conflict.jpg")
    (root / labels[1] / "tiny.png").write_bytes(encode(rng.integers(0, 255, (10, 12, 3), dtype=np.uint8), "PNG"))
    (root / labels[2] / "flat.png").write_bytes(encode(np.full((64, 64, 3), 128, np.uint8), "PNG"))
    (root / labels[2] / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    (root / labels[3] / "pano.png").write_bytes(encode(rng.integers(0, 255, (40, 400, 3), dtype=np.uint8), "PNG"))
    return str(root)


def _rows(text: str) -> dict[str, dict]:
    return {r["key"]: r for r in csv.DictReader(io.StringIO(text))}


def _health_only(keep_text: str) -> str:
    """The keep-list with only the file-level drops: the untrained tiny backbone's probes flag
    most images as label issues, which would leave too few to train on."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["key", "keep", "reasons"])
    for key, r in _rows(keep_text).items():
        reasons = {x for x in r["reasons"].split(";") if x} - {"label_issue", "outlier"}
        writer.writerow([key, 0 if reasons else 1, ";".join(sorted(reasons))])
    return out.getvalue()


@pytest.fixture(scope="module")
def audited(planted: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("audit") / "out"
    assert main(["audit", planted, "--out", str(out), *TINY, *STRICT, "--folds", "3", "--gallery", "5"]) == 0
    return out


def test_audit_finds_what_was_planted(audited: Path, planted: str) -> None:
    labels = sorted(p.name for p in Path(planted).iterdir() if p.is_dir())
    rows = _rows((audited / "audit.csv").read_text())
    issues = {k: set(r["issues"].split(";")) - {""} for k, r in rows.items()}
    # a copy in the same split is a duplicate, in another split leakage
    assert (issues[f"{labels[0]}/dup.jpg"] | issues[f"{labels[0]}/0000.jpg"]) & {"duplicate", "leakage"}
    assert "conflict" in issues[f"{labels[1]}/conflict.jpg"] and "conflict" in issues[f"{labels[0]}/0001.jpg"]
    assert "tiny" in issues[f"{labels[1]}/tiny.png"]
    assert "near_constant" in issues[f"{labels[2]}/flat.png"]
    assert issues[f"{labels[2]}/broken.jpg"] == {"unreadable"} and rows[f"{labels[2]}/broken.jpg"]["error"]
    assert "extreme_aspect" in issues[f"{labels[3]}/pano.png"]
    pano = f"{labels[3]}/pano.png"
    assert rows[pano]["keep"] == ("0" if issues[pano] - {"extreme_aspect"} else "1")
    for r in rows.values():  # every readable image has a suggestion and scores
        if r["error"] == "":
            assert r["suggested_label"] in labels and 0 <= float(r["label_score"]) <= 1
    keep = _rows((audited / "keep.csv").read_text())
    assert set(keep) == set(rows) and keep[f"{labels[2]}/broken.jpg"]["keep"] == "0"
    summary = json.loads((audited / "summary.json").read_text())
    assert summary["images"] == len(rows) == 16 * 4 + 6 and summary["readable"] == len(rows) - 1
    assert summary["findings"]["unreadable"] == 1 and summary["findings"]["conflict"] >= 2
    assert summary["kept"] == sum(r["keep"] == "1" for r in rows.values())
    assert summary["balance"]["counts"][labels[0]] == 17 and "5-fold" not in summary["probe"]
    html = (audited / "report.html").read_text()
    assert "Duplicates across labels" in html and "data:image/png;base64" in html and "Class balance" in html
    manifest = json.loads((audited / "manifest.json").read_text())
    assert {"audit.csv", "keep.csv", "summary.json", "report.html", "spec.yaml"} <= set(manifest["files"])


def test_label_rule_neighbours_and_threshold_options_reach_the_findings(planted: str, audited: Path,
                                                                         tmp_path: Path) -> None:
    default = json.loads((audited / "summary.json").read_text())["probe"]
    assert "15 nearest neighbours" in default and "rule threshold, given label < 0.15" in default  # 0.6 / 4 labels
    out = tmp_path / "out"
    assert main(["audit", planted, "--out", str(out), *TINY, *STRICT, "--folds", "3", "--gallery", "0",
                 "--neighbours", "0", "--label-rule", "confident_learning", "--min-given-prob", "0.3"]) == 0
    probe = json.loads((out / "summary.json").read_text())["probe"]
    assert "nearest" not in probe and "rule confident_learning, given label < 0.3" in probe


def test_train_exclude_leaves_out_what_the_audit_dropped(audited: Path, planted: str, tmp_path: Path) -> None:
    folder = tmp_path / "audit"
    folder.mkdir()
    (folder / "keep.csv").write_text(_health_only((audited / "keep.csv").read_text()))
    out = tmp_path / "run"
    assert main(["train", planted, "--out", str(out), *TINY, "--epochs", "1", "--exclude", str(folder)]) == 0
    trained = {r["key"] for r in csv.DictReader((out / "splits.csv").read_text().splitlines())}
    dropped = {k for k, r in _rows((folder / "keep.csv").read_text()).items() if r["keep"] == "0"}
    assert len(dropped) >= 4 and not trained & dropped  # unreadable, tiny, constant, a copy
    # the keep.csv file itself works too
    out2 = tmp_path / "run2"
    assert main(["train", planted, "--out", str(out2), *TINY, "--epochs", "1", "--exclude",
                 str(folder / "keep.csv")]) == 0


def test_exclude_errors_are_clear(shapes_dataset: str, audited: Path, tmp_path: Path, capsys) -> None:
    assert main(["train", shapes_dataset, "--out", str(tmp_path / "a"), *TINY, "--exclude", str(tmp_path)]) == 2
    other = tmp_path / "other"
    other.mkdir()
    (other / "keep.csv").write_text("key,keep,reasons\nnot/there.jpg,0,outlier\n")
    assert main(["train", shapes_dataset, "--out", str(tmp_path / "b"), *TINY, "--exclude", str(other)]) == 2
    (other / "keep.csv").write_text("key,keep\nx.jpg,maybe\n")
    assert main(["train", shapes_dataset, "--out", str(tmp_path / "c"), *TINY, "--exclude", str(other)]) == 2


def test_missing_cleanlab_exits_2_naming_the_extra(shapes_dataset: str, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "cleanlab", None)  # import now raises ImportError
    out = tmp_path / "out"
    assert main(["audit", shapes_dataset, "--out", str(out), *TINY]) == 2
    assert "[audit]" in json.loads((out / "_FAILURE.json").read_text())["message"]
    assert not (out / "manifest.json").exists()


def test_audit_on_s3(planted: str, moto_server) -> None:
    from headstart.shared.storage.store import open_store

    data = copy_tree(planted, f"{moto_server.uri}/data")
    out = f"{moto_server.uri}/audit"
    assert main(["audit", data, "--out", out, *TINY, *STRICT, "--folds", "2"]) == 0
    store = open_store(out)
    summary = json.loads(store.read_text("summary.json"))
    assert summary["findings"]["unreadable"] == 1 and summary["images"] == 70
    assert "keep.csv" in json.loads(store.read_text("manifest.json"))["files"]
    open_store(f"{moto_server.uri}/kept").write_text("keep.csv", _health_only(store.read_text("keep.csv")))
    run = f"{moto_server.uri}/run"
    assert main(["train", data, "--out", run, *TINY, "--epochs", "1", "--exclude", f"{moto_server.uri}/kept"]) == 0
    assert "broken.jpg" not in open_store(run).read_text("splits.csv")


# ------------------------------------------------ one preprocessing path, feature reuse


def test_audit_features_are_what_the_model_computes(tmp_path: Path) -> None:
    """The audit embeds exactly what the saved model's backbone sees: the one decode path
    (scaled decode) and the model's own resize, in float; not a PIL resize into uint8."""
    import keras

    from headstart.jobs.audit.spec import AuditSpec
    from headstart.jobs.audit.workflow import embed
    from headstart.shared.data.datasets import SplitConfig, discover
    from headstart.shared.data.images import decode_image
    from headstart.shared.data.modelinput import resizer
    from headstart.shared.model.backbones import build_backbone, get_info
    from headstart.shared.model.classifier import assemble

    rng = np.random.default_rng(4)
    for label, shapes in (("a", [(300, 200), (20, 30)]), ("b", [(32, 32), (150, 400)])):
        (tmp_path / "ds" / label).mkdir(parents=True)
        for i, (h, w) in enumerate(shapes):
            pixels = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
            (tmp_path / "ds" / label / f"{i}.png").write_bytes(encode(pixels, "PNG"))
    spec = AuditSpec(dataset=str(tmp_path / "ds"), out=str(tmp_path / "out"), backbone="tiny",
                     weights="none", image_size=32, batch_size=3)
    index = discover(spec.dataset, SplitConfig(valid_fraction=0.0, test_fraction=0.0, seed=1,
                                               max_per_label=None, min_per_label=1))
    keras.utils.set_random_seed(9)
    decoded, feats = embed(spec, index, 2, 32)
    keras.utils.set_random_seed(9)
    clf = assemble(build_backbone("tiny", 32, "none"), get_info("tiny"), 32, 2)
    resize = resizer(32, clf.model)
    images = np.stack([resize(decode_image((tmp_path / "ds" / d.item.key).read_bytes(), target=32))
                       for d in decoded])
    expected = np.asarray(clf.extractor(images)).mean(axis=(1, 2))
    assert [(d.width, d.height) for d in decoded][:2] == [(200, 300), (30, 20)]  # the source's size
    assert all(d.array is None for d in decoded)  # pixels dropped once embedded
    np.testing.assert_allclose(feats, expected, rtol=2e-3, atol=2e-3)  # float16 maps


@pytest.fixture(scope="module")
def shards_of_planted(planted: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    out = str(tmp_path_factory.mktemp("featplanted") / "features")
    assert main(["features", planted, "--out", out, *TINY]) == 0
    return out


def test_audit_reuses_feature_shards_without_a_backbone_pass(planted: str, shards_of_planted: str,
                                                              tmp_path: Path, monkeypatch) -> None:
    from headstart.shared.model import backbones

    def no_backbone(*args, **kwargs):
        raise AssertionError("audit --features must not build a backbone")

    monkeypatch.setattr(backbones, "build_backbone", no_backbone)
    out = tmp_path / "out"
    assert main(["audit", planted, "--out", str(out), *TINY, *STRICT, "--folds", "3", "--gallery", "2",
                 "--features", shards_of_planted]) == 0
    labels = sorted(p.name for p in Path(planted).iterdir() if p.is_dir())
    rows = _rows((out / "audit.csv").read_text())
    issues = {k: set(r["issues"].split(";")) - {""} for k, r in rows.items()}
    assert len(rows) == 16 * 4 + 6  # the shards' rows plus what they skipped
    assert "conflict" in issues[f"{labels[1]}/conflict.jpg"]
    assert issues[f"{labels[2]}/broken.jpg"] == {"unreadable"}
    assert "near_constant" in issues[f"{labels[2]}/flat.png"]
    splits = {r["key"]: r["split"] for r in csv.DictReader(io.StringIO(
        Path(shards_of_planted, "rows.csv").read_text()))}
    assert all(rows[k]["split"] == s for k, s in splits.items())  # the shards' splits


def test_audit_features_mismatch_exits_2(planted: str, shapes_dataset: str, shards_of_planted: str,
                                         tmp_path: Path, caplog) -> None:
    args = ["--backbone", "tiny", "--weights", "none", "--features", shards_of_planted]
    assert main(["audit", planted, "--out", str(tmp_path / "a"), *args, "--image-size", "48"]) == 2
    assert "computed with image_size=32, this run asks for image_size=48" in caplog.text
    assert main(["audit", shapes_dataset, "--out", str(tmp_path / "b"), *args, "--image-size", "32"]) == 2
    assert "are of dataset" in caplog.text
    for run in ("a", "b"):  # refused before any output: at most the failure record
        assert {p.name for p in (tmp_path / run).glob("*")} <= {"_FAILURE.json"}
