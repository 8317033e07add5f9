"""Export workflow: trained run -> SavedModel -> TFLite / ONNX -> parity on the test split -> manifest.

Outputs go to ``OUT/export/<format>[-<quantize>]/``: the model file(s), ``labels.json`` and
``parity.json`` (top-1 agreement with ``model.keras``, max |dp|, test accuracy of both, size,
ms per image), manifest last. The parity images are the run's own test split, decoded the
way evaluate decodes them.
"""
from __future__ import annotations

import json
import logging
import os
import tempfile
import time

import numpy as np

from headstart.jobs.export.spec import ExportSpec
from headstart.shared.model.trained import MODEL_FILE
from headstart.shared.runtime.errors import UserError
from headstart.shared.runtime.summary import Summary
from headstart.shared.storage.manifest import RunOutput
from headstart.shared.storage.store import open_store

log = logging.getLogger("headstart.export")

# top-1 agreement with model.keras on the test split that an export should reach
TARGETS = {"none": 0.995, "float16": 0.995, "int8": 0.97}
FILES = {"tflite": "model.tflite", "onnx": "model.onnx"}


def export_name(spec: ExportSpec) -> str:
    return spec.format + ("" if spec.quantize == "none" else f"-{spec.quantize}")


def _check(spec: ExportSpec) -> None:
    """Argument checks before any model or image loads."""
    from headstart.jobs.export.convert import require

    if spec.quantize != "none" and spec.format != "tflite":
        raise UserError(f"`quantize` {spec.quantize!r} applies to --format tflite only. "
                        f"Received: format={spec.format!r}")
    given = sorted({"int8_agreement", "int8_check_images"} & spec.model_fields_set)
    if given and spec.quantize != "int8":
        raise UserError(f"`{given[0]}` applies to --quantize int8 only. Received: quantize={spec.quantize!r}")
    if spec.format == "onnx":
        require("tf2onnx")
        require("onnxruntime")


def _evenly(items: list, n: int | None) -> list:
    if n is None or n >= len(items):
        return items
    return [items[int(i)] for i in np.linspace(0, len(items) - 1, n).round()]


def _splits(spec: ExportSpec, trained):
    """(test split, representative images or None, int8 check split or None), decoded as
    evaluate decodes them. The check set never overlaps the parity split or the
    representative set (:func:`_check_set`)."""
    from headstart.shared.data.datasets import discover
    from headstart.shared.data.loading import load_split

    dataset = spec.dataset or trained.train_spec.get("dataset")
    if not dataset:
        raise UserError(f"{spec.model!r} does not record its dataset: pass --dataset")
    index = discover(dataset, trained.split_config())
    unknown = sorted(set(index.labels) - set(trained.labels))
    if unknown:
        raise UserError(f"dataset {dataset!r} has labels the model was not trained on: {unknown}")
    name = next((s for s in ("test", "valid") if s in index.splits), None)
    if name is None:
        raise UserError(f"dataset {dataset!r} has no test or valid split for the parity check")
    store = open_store(dataset)

    def load(split: str, items: list):
        return load_split(store, split, items, trained.labels, trained.image_size, spec.min_side,
                          model=trained.model)

    test = load(name, _evenly(index.splits[name], spec.parity_images))
    if len(test) == 0:
        raise UserError(f"no usable images in the {name} split of {dataset!r}")
    rep = check = None
    if spec.quantize == "int8":
        train = index.splits.get("train", [])
        chosen = _evenly(train, spec.representative)
        rep = load("train", chosen).images
        if spec.int8_agreement > 0:
            check = _check_set(spec, index, name, chosen, load, dataset)
    return test, rep, check


def _check_set(spec: ExportSpec, index, name: str, chosen: list, load, dataset: str):
    """The int8 check set: up to ``int8_check_images`` validation images (when the parity split
    is test), then training images outside the representative set ``chosen``."""
    from headstart.shared.data.loading import LoadedSplit

    train = index.splits.get("train", [])
    # Both are held out from calibration and from the parity split. Measured: training
    # images' int8 agreement matches the validation split's (notes/int8.md), and 3-4x more
    # images cut the check's sampling noise.
    taken = {id(item) for item in chosen}
    pool = (list(index.splits.get("valid", [])) if name == "test" else []) + \
        [item for item in train if id(item) not in taken]
    if not pool:
        raise UserError(f"--int8-agreement {spec.int8_agreement}: no held-out images for "
                        f"its check set (no valid split, and every training image is in "
                        f"the representative set): lower --representative or pass 0")
    picked = {id(item) for item in _evenly(pool, spec.int8_check_images)}
    valid = {id(item) for item in index.splits.get("valid", [])} if name == "test" else set()
    parts = [load(split, [i for i in pool if id(i) in picked and (id(i) in valid) == (split == "valid")])
             for split in ("valid", "train")]
    parts = [part for part in parts if len(part)]
    if not parts:
        raise UserError(f"no usable images for the int8 check set of {dataset!r}")
    return LoadedSplit("+".join(part.name for part in parts),
                        np.concatenate([part.images for part in parts]),
                        np.concatenate([part.labels for part in parts]),
                        [key for part in parts for key in part.keys])


def _probs(fn, images: np.ndarray, batch_size: int) -> np.ndarray:
    return np.concatenate([np.asarray(fn(np.asarray(images[i:i + batch_size], np.float32)))
                           for i in range(0, len(images), batch_size)])


def _int8(spec: ExportSpec, trained, saved: str, rep: np.ndarray, check, tmp: str):
    """Selective int8 (:mod:`headstart.jobs.export.int8`), checked on ``check`` against
    model.keras. Returns the model bytes and the ``int8`` record for parity.json."""
    from headstart.jobs.export import convert, int8
    from headstart.shared.model.features import compiled_call

    calibrated = int8.Calibrated(saved, rep, rep[:: max(1, len(rep) // 16)][:16])
    ref = _probs(compiled_call(trained.model), check.images, spec.batch_size) if check else None
    path = os.path.join(tmp, "check.tflite")

    def measure(model: bytes) -> dict:
        with open(path, "wb") as fh:
            fh.write(model)
        return int8.agreement(ref, _probs(convert.runner("tflite", path), check.images, spec.batch_size))

    found = int8.search(calibrated, measure, spec.int8_agreement)
    record = {"float_ops": list(int8.INT8_FLOAT_OPS), "order": int8.ORDER,
              "backbone_layers": len(calibrated.layers), "float_layers": len(found.float_layers),
              "float_tensors": [{"name": layer.name, "op": layer.op, "rmse_scale": round(layer.rmse_scale, 4)}
                                for layer in found.float_layers],
              "target_hard_agreement": spec.int8_agreement, "meets_check_target": found.met,
              "check_split": check.name if check else None, "check_images": len(check) if check else 0,
              "steps": found.steps}
    return found.model, record


def _timed(fn, images: np.ndarray, batch_size: int) -> tuple[np.ndarray, float]:
    """Probabilities of ``images`` batch by batch, and milliseconds per image (after a warm-up)."""
    fn(np.asarray(images[:batch_size], np.float32))  # warm-up: tracing, kernel selection
    t0, out = time.perf_counter(), []
    for start in range(0, len(images), batch_size):
        out.append(np.asarray(fn(np.asarray(images[start:start + batch_size], np.float32))))
    ms = (time.perf_counter() - t0) * 1000 / max(len(images), 1)
    return np.concatenate(out), ms


def parity(spec: ExportSpec, trained, test, fn, size_bytes: int, replaced: bool) -> dict:
    """The parity record of an exported model against ``model.keras`` on ``test``."""
    from headstart.shared.model.features import compiled_call

    ref, ms_ref = _timed(compiled_call(trained.model), test.images, spec.batch_size)
    got, ms = _timed(fn, test.images, spec.batch_size)
    agree = float(np.mean(ref.argmax(1) == got.argmax(1)))
    target = TARGETS[spec.quantize]
    keras_bytes = trained.store.size(MODEL_FILE) if trained.store.exists(MODEL_FILE) else None
    return {"format": spec.format, "quantize": spec.quantize, "split": test.name, "images": len(test),
            "top1_agreement": agree, "target_agreement": target, "meets_target": agree >= target,
            "max_abs_dp": float(np.abs(ref - got).max()),
            "accuracy_keras": float(np.mean(ref.argmax(1) == test.labels)),
            "accuracy_export": float(np.mean(got.argmax(1) == test.labels)),
            "size_bytes": size_bytes, "keras_size_bytes": keras_bytes,
            "ms_per_image": ms, "ms_per_image_keras": ms_ref, "batch_size": spec.batch_size,
            "resize_replaced": replaced, "float_ops": [],  # int8: set from its record
            "input": ("float32 RGB 0-255, (batch, height, width, 3), any size"
                      + (f"; images not at {trained.image_size}x{trained.image_size} are resized "
                         "bilinear without antialiasing (the model.keras layer antialiases): feed "
                         "images at that size, resized as the model does, for exact parity"
                         if replaced else ""))}


def _upload_tree(out: RunOutput, local: str) -> None:
    for directory, _, files in os.walk(local):
        for name in sorted(files):
            path = os.path.join(directory, name)
            with open(path, "rb") as fh:
                out.write_bytes(os.path.relpath(path, local).replace(os.sep, "/"), fh.read())


def export(spec: ExportSpec) -> Summary:
    """Run the export job described by ``spec``; returns its summary line."""
    from headstart.jobs.export import convert
    from headstart.shared.model.trained import load_trained
    from headstart.shared.runtime import preflight

    _check(spec)
    preflight.check_output(spec.out or spec.model)  # before the model loads and any image is decoded
    trained = load_trained(spec.model)
    name = export_name(spec)
    out = RunOutput(open_store(spec.out or spec.model).child(f"export/{name}"), "export")
    out.unpublish()
    test, rep, check = _splits(spec, trained)
    model, replaced = convert.portable(trained.model)
    with tempfile.TemporaryDirectory() as tmp:
        saved, dest = os.path.join(tmp, "saved"), os.path.join(tmp, "out")
        os.makedirs(dest)
        t0 = time.monotonic()
        convert.saved_model(model, saved)
        int8_record = None
        if spec.format == "savedmodel":
            os.rename(saved, dest := os.path.join(tmp, "savedmodel"))
            artifact = dest
        else:
            if spec.format == "tflite" and spec.quantize == "int8":
                data, int8_record = _int8(spec, trained, saved, rep, check, tmp)
            elif spec.format == "tflite":
                data = convert.tflite(saved, spec.quantize)
            else:
                data = convert.onnx(saved)
            artifact = os.path.join(dest, FILES[spec.format])
            with open(artifact, "wb") as fh:
                fh.write(data)
        convert_s = time.monotonic() - t0
        log.info("converted to %s in %.1fs", name, convert_s)
        doc = parity(spec, trained, test, convert.runner(spec.format, artifact),
                     convert.file_size(artifact), replaced)
        doc["convert_seconds"] = round(convert_s, 1)
        if spec.quantize == "int8":
            from headstart.jobs.export.int8 import conv_layers

            doc["int8"] = dict(int8_record or {})
            doc["int8"]["conv_layers_int8"], doc["int8"]["conv_layers"] = conv_layers(artifact)
            doc["float_ops"] = doc["int8"]["float_ops"]
        _upload_tree(out, dest)
    out.write_text("labels.json", json.dumps(trained.meta, indent=2))
    out.write_json("parity.json", doc)
    out.publish(format=spec.format, quantize=spec.quantize, top1_agreement=doc["top1_agreement"])
    flag = "meets" if doc["meets_target"] else "BELOW"
    what = name
    if "int8" in doc:
        q = doc["int8"]
        what += (f" ({q['float_layers']} of {q['backbone_layers']} backbone layers float, "
                 f"{q['conv_layers_int8']} of {q['conv_layers']} convs int8)")
    log.info("exported %s: top-1 agreement %.4f (%s target %.3f), max |dp| %.2g, accuracy %.4f vs "
             "%.4f, %.2f MB, %.2f ms/img -> %s", what, doc["top1_agreement"], flag,
             doc["target_agreement"], doc["max_abs_dp"], doc["accuracy_export"], doc["accuracy_keras"],
             doc["size_bytes"] / 1e6, doc["ms_per_image"], out.uri)
    return Summary(job="export", out=out.uri, produced=f"{what} model + parity.json",
                   metric=f"{doc['split']} top-1 agreement", value=doc["top1_agreement"],
                   details={"meets_target": doc["meets_target"], "target": doc["target_agreement"],
                            "max_abs_dp": doc["max_abs_dp"], "size_bytes": doc["size_bytes"]})
