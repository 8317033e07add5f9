"""End-to-end tests of ``headstart export`` on the tiny trained model."""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from headstart.shared.runtime.cli import main
from tests.helpers import failure

HAVE_ONNX = all(importlib.util.find_spec(m) for m in ("tf2onnx", "onnxruntime"))


def _parity(folder: Path) -> dict:
    return json.loads((folder / "parity.json").read_text())


def _keras_probs(run: str, x: np.ndarray) -> np.ndarray:
    import keras

    return np.asarray(keras.models.load_model(Path(run, "model.keras"))(x, training=False))


@pytest.mark.parametrize("quantize", ["none", "float16"])
def test_tflite(trained_run: str, tmp_path: Path, quantize: str) -> None:
    import tensorflow as tf

    args = ["export", trained_run, "--format", "tflite", "--out", str(tmp_path), "--batch-size", "4"]
    assert main(args + ([] if quantize == "none" else ["--quantize", quantize, "--representative", "16"])) == 0
    folder = tmp_path / "export" / ("tflite" if quantize == "none" else f"tflite-{quantize}")
    doc = _parity(folder)
    assert doc["quantize"] == quantize and doc["split"] == "test" and doc["images"] == 8
    assert doc["top1_agreement"] >= doc["target_agreement"] and doc["meets_target"]
    tol = {"none": 1e-5, "float16": 5e-3, "int8": 0.05}[quantize]
    assert doc["max_abs_dp"] < tol
    assert doc["size_bytes"] == (folder / "model.tflite").stat().st_size and doc["ms_per_image"] > 0
    published = json.loads((folder / "manifest.json").read_text())["files"]
    assert {"model.tflite", "parity.json", "labels.json"} <= set(published)
    # The exported model takes any image size, like model.keras (32px is its native size).
    interp = tf.lite.Interpreter(model_path=str(folder / "model.tflite"))
    inp = interp.get_input_details()[0]
    x = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
    interp.resize_tensor_input(inp["index"], [2, 32, 32, 3])
    interp.allocate_tensors()
    interp.set_tensor(inp["index"], x)
    interp.invoke()
    got = interp.get_tensor(interp.get_output_details()[0]["index"])
    assert np.abs(got - _keras_probs(trained_run, x)).max() < tol
    interp.resize_tensor_input(inp["index"], [1, 50, 70, 3])
    interp.allocate_tensors()
    interp.set_tensor(inp["index"], np.full((1, 50, 70, 3), 128, np.float32))
    interp.invoke()
    assert interp.get_tensor(interp.get_output_details()[0]["index"]).shape == (1, 4)


def test_tflite_int8_converts_and_reports(trained_run: str, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    """int8 with the head kept float: the search grows the float set from none until the check
    set agrees (this chance-level tiny model has near-uniform probabilities, so top-1 flips
    easily: how far it goes is the model's, the invariants are the search's); with
    ``--int8-agreement 0`` the whole backbone runs int8 and the file is really quantized."""
    import tensorflow as tf

    capsys.readouterr()
    assert main(["export", trained_run, "--format", "tflite", "--quantize", "int8", "--out", str(tmp_path),
                 "--representative", "16", "--int8-check-images", "6"]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    folder = tmp_path / "export" / "tflite-int8"
    doc = _parity(folder)
    assert doc["quantize"] == "int8" and doc["images"] == 8 and doc["target_agreement"] == 0.97
    assert doc["top1_agreement"] >= 0.97 and doc["meets_target"], doc
    assert doc["max_abs_dp"] < 0.05 and doc["float_ops"] == ["MEAN", "FULLY_CONNECTED", "SOFTMAX"]
    assert doc["size_bytes"] == (folder / "model.tflite").stat().st_size and doc["convert_seconds"] > 0
    q = doc["int8"]
    assert q["check_split"] == "valid+train" and q["check_images"] == 6 and q["target_hard_agreement"] == 0.985
    floats = [s["float_layers"] for s in q["steps"]]
    assert floats[0] == 0 and floats == sorted(set(floats)) and floats[-1] <= q["backbone_layers"]
    assert all(s["hard_agreement"] < 0.985 for s in q["steps"][:-1])  # it stops at the first that meets
    assert q["steps"][-1]["hard_agreement"] >= 0.985 and q["meets_check_target"]
    assert q["float_layers"] == floats[-1] and len(q["float_tensors"]) == floats[-1]
    assert q["order"] == "input-first" and q["backbone_layers"] >= 4 and q["conv_layers"] >= 1
    assert f"({q['float_layers']} of {q['backbone_layers']} backbone layers float, " in line

    whole = tmp_path / "whole"
    assert main(["export", trained_run, "--format", "tflite", "--quantize", "int8", "--out", str(whole),
                 "--representative", "16", "--int8-agreement", "0"]) == 0
    folder = whole / "export" / "tflite-int8"
    q = _parity(folder)["int8"]
    assert q["float_layers"] == 0 and q["float_tensors"] == [] and q["conv_layers_int8"] == q["conv_layers"]
    fp32 = tmp_path / "f"
    assert main(["export", trained_run, "--format", "tflite", "--out", str(fp32)]) == 0
    assert _parity(folder)["size_bytes"] < _parity(fp32 / "export" / "tflite")["size_bytes"]  # really quantized
    assert "int8" not in _parity(fp32 / "export" / "tflite")
    interp = tf.lite.Interpreter(model_path=str(folder / "model.tflite"))
    ops = {d["op_name"] for d in interp._get_ops_details()}
    int8 = {t["name"] for t in interp.get_tensor_details() if t["dtype"] == np.int8}
    assert {"CONV_2D", "QUANTIZE", "DEQUANTIZE", "FULLY_CONNECTED"} <= ops
    assert any("conv" in n.lower() or "relu" in n.lower() for n in int8)  # the backbone runs int8


def test_int8_agreement_option(trained_run: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``--int8-agreement 0``: one conversion, no check set; bad values exit 2 before any work."""
    assert main(["export", trained_run, "--format", "tflite", "--quantize", "int8", "--out", str(tmp_path),
                 "--representative", "8", "--int8-agreement", "0", "--parity-images", "4"]) == 0
    q = _parity(tmp_path / "export" / "tflite-int8")["int8"]
    assert q["steps"] == [] and q["check_images"] == 0 and q["check_split"] is None
    assert q["float_layers"] == 0 and not q["meets_check_target"] and q["target_hard_agreement"] == 0
    for bad in ("1.5", "-0.1", "high"):
        out = tmp_path / f"bad{bad}"
        capsys.readouterr()
        assert main(["export", trained_run, "--format", "tflite", "--quantize", "int8", "--out", str(out),
                     "--int8-agreement", bad]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "int8_agreement" in err[0] and bad in err[0], err
        assert not (out / "export").exists()
    out = tmp_path / "not-int8"  # an int8 option without --quantize int8 would be silently ignored
    assert main(["export", trained_run, "--format", "tflite", "--quantize", "float16", "--out", str(out),
                 "--int8-check-images", "50"]) == 2
    assert "int8_check_images" in failure(out)["message"] and not (out / "export").exists()


def test_savedmodel_and_bad_arguments(trained_run: str, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["export", trained_run, "--format", "savedmodel", "--out", str(tmp_path),
                 "--parity-images", "5"]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]  # the job's own summary line
    assert line.startswith("export: savedmodel model + parity.json -> ") and "test top-1 agreement 1.000" in line
    folder = tmp_path / "export" / "savedmodel"
    doc = _parity(folder)
    assert doc["images"] == 5 and doc["max_abs_dp"] < 1e-6 and (folder / "saved_model.pb").is_file()
    bad = tmp_path / "bad"
    assert main(["export", trained_run, "--format", "savedmodel", "--quantize", "int8", "--out", str(bad)]) == 2
    assert "quantize" in failure(bad)["message"]
    assert main(["export", trained_run, "--format", "coreml", "--out", str(bad)]) == 2
    assert main(["export", trained_run, "--format", "tflite", "--dataset", str(tmp_path / "none"),
                 "--out", str(bad)]) == 2
    blocker = tmp_path / "a-file"
    blocker.write_text("x")  # --out under a file: refused by the pre-flight, before any conversion
    assert main(["export", trained_run, "--format", "savedmodel", "--out", str(blocker / "o")]) == 2


def test_onnx_missing_extra(trained_run: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tf2onnx", None)  # import tf2onnx now raises ImportError
    out = tmp_path / "x"
    assert main(["export", trained_run, "--format", "onnx", "--out", str(out)]) == 2
    message = failure(out)["message"]
    assert "headstart[onnx]" in message and "tf2onnx" in message
    assert not (out / "export").exists()  # refused before anything was written


@pytest.mark.skipif(not HAVE_ONNX, reason="the [onnx] extra is not installed")
def test_onnx(trained_run: str, tmp_path: Path) -> None:
    import onnxruntime as ort

    assert main(["export", trained_run, "--format", "onnx", "--out", str(tmp_path)]) == 0
    folder = tmp_path / "export" / "onnx"
    doc = _parity(folder)
    assert doc["top1_agreement"] >= 0.995 and doc["max_abs_dp"] < 1e-5
    sess = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(1).uniform(0, 255, (3, 32, 32, 3)).astype(np.float32)
    got = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    assert np.abs(got - _keras_probs(trained_run, x)).max() < 1e-5
