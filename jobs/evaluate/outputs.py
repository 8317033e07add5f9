"""Write the evaluate job's figures, tables and report, then publish the manifest."""
from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from typing import Any

import numpy as np

from headstart.jobs.evaluate.spec import EvaluateSpec
from headstart.shared.report import plots
from headstart.shared.report import html as report
from headstart.shared.data.images import encode_png
from headstart.shared.data.modelinput import to_uint8
from headstart.shared.data.loading import LoadedSplit, skipped_csv
from headstart.shared.storage.manifest import RunOutput
from headstart.shared.report.metrics import row_normalize
from headstart.shared.model.trained import TrainedModel
from headstart.shared.runtime.summary import Summary
from headstart.shared.storage.store import join


def worst_errors(split: LoadedSplit, probs: np.ndarray, labels: list[str], n: int) -> list[dict[str, Any]]:
    """Misclassified images, most confidently wrong first."""
    pred = probs.argmax(axis=1)
    wrong = np.flatnonzero(pred != split.labels)
    order = wrong[np.argsort(-probs[wrong, pred[wrong]], kind="stable")][:n]
    return [{"index": int(i), "key": split.keys[i], "true": labels[int(split.labels[i])],
             "predicted": labels[int(pred[i])], "probability": float(probs[i, pred[i]]),
             "true_probability": float(probs[i, split.labels[i]])} for i in order]


def _predictions_csv(split: LoadedSplit, probs: np.ndarray, labels: list[str], calibration=None) -> str:
    from headstart.shared.model.calibration import Calibration

    conf = (calibration or Calibration()).apply(probs).max(axis=1) if len(probs) else []
    buf = io.StringIO()
    w = csv.writer(buf)
    # confidence: the calibrated top-1 probability (the run's temperature scaling)
    w.writerow(["key", "true", "predicted", "probability", *[f"p_{label}" for label in labels], "confidence"])
    for key, y, p, c in zip(split.keys, split.labels, probs, conf):
        w.writerow([key, labels[int(y)], labels[int(p.argmax())], f"{p.max():.6f}",
                    *[f"{v:.6f}" for v in p], f"{c:.6f}"])
    return buf.getvalue()


def _per_class_csv(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=["label", "precision", "recall", "f1", "support"])
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def _report(spec: EvaluateSpec, trained: TrainedModel, summary: dict, figs: dict[str, bytes],
            worst: list[dict], split: LoadedSplit, extra: Sequence[tuple[str, str]] = (),
            overlays: dict[str, bytes] | None = None, seconds: float | None = None) -> str:
    overlays = overlays or {}
    rep = report.Report(f"Evaluation: {trained.meta.get('backbone')} on {spec.dataset}",
                        f"model {spec.model} · split {spec.split} · {summary['n']} images, "
                        f"{len(split.skipped)} skipped")
    rep.add("Summary", report.cards({"accuracy": summary["accuracy"], **summary["top_k"],
                                     "macro F1": summary["macro_f1"], "images": summary["n"]}))
    if trained.store.exists("training_curves.png"):
        rep.add("Training", report.figure(trained.store.read_bytes("training_curves.png"),
                                          "training curves of the model"))
    rep.add("Per class", report.table(["label", "precision", "recall", "F1", "support"],
                                      [[r["label"], r["precision"], r["recall"], r["f1"], r["support"]]
                                       for r in summary["per_class"]]))
    rep.add("Confusion matrix", report.figure(figs["confusion_matrix.png"], "counts")
            + report.figure(figs["confusion_matrix_normalized.png"], "row-normalised"))
    rep.add("Most confused pairs", report.table(
        ["true", "predicted as", "count", "share of true"],
        [[c["true"], c["predicted"], c["count"], c["rate"]] for c in summary["most_confused"]])
        if summary["most_confused"] else "<p>No confusions.</p>")
    cal = summary.get("calibration")
    if cal and "reliability.png" in figs:
        rep.add("Calibration", f"<p>Expected calibration error on this split: {cal['ece_before']:.4f} "
                f"before, {cal['ece_after']:.4f} after temperature scaling (T = {cal['temperature']:.3g}, "
                f"fitted on the {cal['fitted_on']} split at training time).</p>"
                + report.figure(figs["reliability.png"], "reliability diagram"))
    # Each tile embeds the Grad-CAM overlay when there is one (the map of the wrong class),
    # else the image: the page must work once copied away from gradcam/*.png.
    tiles = [(overlays.get(w.get("gradcam") or "") or encode_png(to_uint8(split.images[w["index"]])),
              f"{w['key'].rsplit('/', 1)[-1]}: true {w['true']}, predicted {w['predicted']} "
              f"({w['probability']:.2f})", None, False) for w in worst]
    note = ("<p class='muted'>Grad-CAM of the predicted (wrong) class over each image.</p>"
            if overlays else "")
    rep.add("Worst misclassifications", note + report.gallery(tiles) if tiles
            else "<p>None: every image is right.</p>")
    for heading, body in extra:  # explanations (jobs/evaluate/explain.py)
        rep.add(heading, body)
    if split.skipped:
        rep.add("Skipped images", report.table(["key", "status", "reason"],
                                               [[s.key, s.status, s.reason] for s in split.skipped]))
    rep.add("Configuration", report.configuration(spec.dump(), {
        "dataset": spec.dataset, "split": spec.split, "model": spec.model,
        "backbone": f"{trained.meta.get('backbone')} ({trained.meta.get('weights')} weights)",
        "image size": trained.image_size, "images": summary["n"], "skipped images": len(split.skipped),
        "seconds": seconds}))
    return rep.render()


def write_outputs(*, spec: EvaluateSpec, out: RunOutput, trained: TrainedModel, split: LoadedSplit,
                  probs: np.ndarray, summary: dict, seconds: float | None = None) -> Summary:
    """Figures, metrics, predictions, skip list, spec and report; manifest last."""
    labels = trained.labels
    matrix = np.asarray(summary["confusion_matrix"])
    figs = {"confusion_matrix.png": plots.confusion_matrix(matrix, labels, normalized=False),
            "confusion_matrix_normalized.png": plots.confusion_matrix(row_normalize(matrix), labels, True)}
    worst = worst_errors(split, probs, labels, spec.worst)
    from headstart.jobs.evaluate.explain import explain  # Grad-CAM links of `worst` + similarity section

    extra, overlays = explain(out, trained, split, worst)
    from headstart.shared.model.calibration import reliability_png

    figs["reliability.png"] = reliability_png(probs, split.labels, trained.calibration,
                                              f"{split.name} split")
    for name, png in figs.items():
        out.write_bytes(name, png)
    if worst:
        out.write_bytes("worst_misclassified.png", plots.image_grid(
            [to_uint8(split.images[w["index"]]) for w in worst],
            [f"{w['true']} → {w['predicted']} {w['probability']:.2f}" for w in worst]))
    out.write_json("confusion_matrix.json", {"labels": labels, "counts": matrix.tolist(),
                                             "normalized": row_normalize(matrix).round(6).tolist()})
    out.write_json("metrics.json", {k: v for k, v in summary.items() if k != "confusion_matrix"})
    out.write_json("worst_misclassified.json", worst)
    out.write_text("per_class.csv", _per_class_csv(summary["per_class"]))
    out.write_text("predictions.csv", _predictions_csv(split, probs, labels, trained.calibration))
    out.write_text("skipped.csv", skipped_csv({split.name: split.skipped}))
    out.write_text("spec.yaml", spec.to_yaml())
    out.write_text("report.html", _report(spec, trained, summary, figs, worst, split, extra,
                                          overlays, seconds))
    out.publish(accuracy=summary["accuracy"], n=summary["n"], split=spec.split)
    return Summary(job="evaluate", out=out.uri, produced=f"metrics of {summary['n']} images + report",
                   metric=f"{split.name} accuracy", value=summary["accuracy"],
                   report=join(out.uri, "report.html"),
                   details={"macro_f1": summary["macro_f1"], "images": summary["n"]})
