"""Write the train job's outputs, then publish the manifest last."""
from __future__ import annotations

import csv
import io
import logging
import os
import tempfile
import time


from headstart.jobs.train.run import TrainRun
from headstart.shared.storage.manifest import RunOutput
from headstart.shared.data.loading import LoadedSplit, skipped_csv
from headstart.shared.report.metrics import summarize
from headstart.shared.model.classifier import BACKBONE_LAYER, Classifier
from headstart.shared.report import html as report
from headstart.shared.report.plots import training_curves
from headstart.shared.runtime.summary import Summary
from headstart.shared.storage.store import join
from headstart.shared.model.predict import predict_arrays
from headstart.shared.model.recipe import RecipeResult
from headstart.shared.model.trained import (CURVES_FILE, HISTORY_FILE, LABELS_FILE, METRICS_FILE,
                                            MODEL_FILE, SKIPPED_FILE, SPEC_FILE, SPLITS_FILE)

log = logging.getLogger("headstart.train")



def _model_bytes(clf: Classifier) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, MODEL_FILE)
        clf.model.save(path)
        with open(path, "rb") as fh:
            return fh.read()


def splits_csv(splits: dict[str, LoadedSplit], labels: list[str]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["split", "key", "label"])
    for name, split in splits.items():
        for key, y in zip(split.keys, split.labels):
            writer.writerow([name, key, labels[int(y)]])
    return buf.getvalue()


def split_metrics(clf: Classifier, splits: dict[str, LoadedSplit], result: RecipeResult,
                  labels: list[str], batch_size: int, probs_out: dict | None = None) -> dict[str, dict]:
    """Loss/accuracy/F1 per split, from cached features when they still describe the base.
    ``probs_out`` (optional) receives each scored split's probabilities."""
    out = {}
    for name, split in splits.items():
        if name == "train" and name not in result.features:
            continue  # a whole extra forward pass over train is not worth it on the slow path
        if name in result.features:
            probs = predict_arrays(result.scorer or clf.head, result.features[name], batch_size,
                                   f"score {name}")
        else:
            probs = predict_arrays(clf.model, split.images, batch_size, f"score {name}")
        if probs_out is not None:
            probs_out[name] = probs
        summary = summarize(split.labels, probs, labels)
        out[name] = {k: summary[k] for k in ("n", "accuracy", "loss", "macro_f1", "top_k")}
    return out


def _selection_comment(result: RecipeResult) -> str:
    """What the default recipe chose and why, as YAML comments (the spec itself stays loadable)."""
    if result.selection is None:
        return ""
    sel = result.selection
    return (f"# selection (recipe: default; full table in metrics.json): {sel.chosen.label()}\n"
            f"# why: {sel.reason}\n")


def _calibrate(out: RunOutput, metrics_doc: dict, splits: dict[str, LoadedSplit], probs: dict,
               result: RecipeResult) -> None:
    """Fit temperature scaling on probabilities the model was not fitted on: the validation
    split (reference recipe), or out-of-fold probabilities of train+valid (default recipe,
    which refits on both). Writes calibration.json, reliability.png and ECE before/after in
    metrics.json (predict and evaluate apply the temperature)."""
    from headstart.shared.model import calibration as cal

    valid = splits.get("valid")
    held: tuple | None = None
    if result.held_out is not None:
        held = (*result.held_out, "train+valid out-of-fold")
    elif result.selection is None and valid is not None and len(valid) and "valid" in probs:
        held = (probs["valid"], valid.labels, "valid")
    fitted = cal.fit(held[0], held[1], held[2]) if held is not None else cal.Calibration()
    out.write_text(cal.CALIBRATION_FILE, fitted.to_json())
    if fitted.n and held is not None:
        out.write_bytes("reliability.png", cal.reliability_png(held[0], held[1], fitted, held[2]))
        log.info("calibration: temperature %.3f on %s, ECE %.4f -> %.4f", fitted.temperature,
                 held[2], fitted.ece_before, fitted.ece_after)
    elif result.selection is not None:
        log.info("calibration: none (the chosen head has no out-of-fold probabilities; valid is in-sample)")
    metrics_doc["calibration"] = {k: getattr(fitted, k) for k in (
        "temperature", "fitted_on", "n", "ece_before", "ece_after", "nll_before", "nll_after")}


def write_outputs(run: TrainRun, clf: Classifier, result: RecipeResult) -> Summary:
    """Model, labels, history, curves, metrics, spec and skip list; manifest last."""
    from headstart.shared.model.backbones import get_info

    spec, out, index, splits = run.spec, run.out, run.index, run.splits
    t_outputs = time.monotonic()

    info = get_info(spec.backbone)
    split_probs: dict = {}
    metrics = split_metrics(clf, splits, result, index.labels, spec.batch_size, split_probs)
    head = result.phases.get("head")
    n_train = len(splits["train"])
    metrics_doc = {
        "splits": metrics,
        "best_epoch": {k: p.best_epoch for k, p in result.phases.items()},
        "stopped_early": {k: p.stopped_early for k, p in result.phases.items()},
        "path": "fast" if spec.fast_path else "slow",
        "timing": _timing(run, result),
        "head_images_per_s": head.images_per_second if head else None,
        "counts": {name: len(s) for name, s in splits.items()},
        "skipped": sum(len(s.skipped) for s in splits.values()),
        "recipe": spec.recipe,
    }
    if result.selection is not None:
        metrics_doc["selection"] = result.selection.doc()
    labels_doc = {"labels": index.labels, "backbone": spec.backbone, "backbone_layer": BACKBONE_LAYER,
                  "image_size": clf.image_size, "preprocess": info.preprocess, "weights": spec.weights,
                  "input": "RGB uint8 or float 0-255, any size (resized inside the model)"}
    _calibrate(out, metrics_doc, splits, split_probs, result)
    out.write_bytes(MODEL_FILE, _model_bytes(clf))
    out.write_json(LABELS_FILE, labels_doc)
    out.write_json(HISTORY_FILE, {"history": result.history, "phase_starts": result.phase_starts})
    best = {k: p.best_epoch for k, p in result.phases.items()}
    curves = training_curves(result.history, result.phase_starts, best)
    out.write_bytes(CURVES_FILE, curves)
    # Scoring, calibration, model, curves: the outputs' cost up to here (the rest is small text).
    metrics_doc["timing"]["outputs_s"] = time.monotonic() - t_outputs
    metrics_doc["timing"]["total_s"] = time.monotonic() - run.started  # the outputs included
    out.write_json(METRICS_FILE, metrics_doc)
    out.write_text(SPEC_FILE, spec.to_yaml() + _selection_comment(result))
    out.write_text(SKIPPED_FILE, skipped_csv({name: s.skipped for name, s in splits.items()}))
    out.write_text(SPLITS_FILE, splits_csv(splits, index.labels))
    out.write_text("report.html", train_report(spec, metrics_doc, curves, n_train))
    out.publish(fingerprint=run.fingerprint, labels=index.labels, layout=index.layout,
                metrics={k: v["accuracy"] for k, v in metrics.items()})
    # The default recipe fits its head on train + valid (k-fold choice, then refit): valid is
    # in-sample there, and says so, so nobody reads it as a held-out estimate.
    in_sample = {"train", "valid"} if result.selection is not None else {"train"}
    summary = ", ".join(f"{k} acc={v['accuracy']:.3f}{' (in-sample)' if k in in_sample else ''}"
                        for k, v in metrics.items())
    log.info("trained %s on %d images in %.1fs: %s -> %s", spec.backbone, n_train, metrics_doc["timing"]["total_s"],
             summary, out.uri)
    return run_summary(out.uri, {k: v["accuracy"] for k, v in metrics.items()})


def _timing(run: TrainRun, result: RecipeResult) -> dict[str, float]:
    """metrics.json ``timing``: decode, the base's pass, each phase, the run's own stamps
    (import, build, first decoded image after the command started; see jobs.train.stage);
    ``outputs_s`` and ``total_s`` are added once the outputs are written."""
    timing = {"decode_s": run.decode_s, "features_s": result.timing.get("features_s", 0.0)}
    if run.clock is not None:
        timing.update(run.clock.stages)
    if "selection_s" in result.timing:
        timing["selection_s"] = result.timing["selection_s"]
    timing.update({f"{k}_s": p.seconds for k, p in result.phases.items()})
    return timing


def run_summary(uri: str, accuracy: dict[str, float]) -> Summary:
    """The train job's closing line: test accuracy when there is a test split, else valid."""
    split = next((s for s in ("test", "valid", "train") if s in accuracy), None)
    return Summary(job="train", out=uri, produced="model.keras + report", report=join(uri, "report.html"),
                   metric=f"{split} accuracy" if split else None,
                   value=accuracy.get(split) if split else None, details={"accuracy": accuracy})


def train_report(spec, metrics: dict, curves: bytes, n_train: int) -> str:
    """report.html of a train run: headline metrics, curves (best epoch marked), configuration."""
    rep = report.Report(f"Training: {spec.backbone} on {spec.dataset}",
                        f"{n_train} training images · {metrics['path']} path")
    rep.add("Summary", report.cards({f"{k} accuracy": v["accuracy"] for k, v in metrics["splits"].items()}
                                    | {"best epoch": ", ".join(f"{k} {v}" for k, v in metrics["best_epoch"].items())}))
    rep.add("Training curves", report.figure(curves, "training curves")
            + "<p class='muted'>The dotted green line is the epoch whose weights were kept "
            "(lowest validation loss); later epochs were trained but not kept.</p>")
    rep.add("Per split", report.table(["split", "images", "accuracy", "loss", "macro F1"],
                                      [[k, v["n"], v["accuracy"], v["loss"], v["macro_f1"]]
                                       for k, v in metrics["splits"].items()]))
    timing = metrics["timing"]
    rep.add("Configuration", report.configuration(spec.dump(), {
        "dataset": spec.dataset, "backbone": f"{spec.backbone} ({spec.weights} weights)",
        "images": ", ".join(f"{k} {v}" for k, v in metrics["counts"].items()),
        "skipped images": metrics["skipped"], **{k.replace("_s", " (s)"): v for k, v in timing.items()}}))
    return rep.render()
