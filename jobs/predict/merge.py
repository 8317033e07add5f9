"""``headstart predict-merge``: join the shards of a sharded predict into one set of outputs.

Every shard ``shard-0000I-of-0000N/`` of ``OUT`` must be published (same N, none missing);
their predictions.csv files are concatenated in shard order (streamed through a local file),
counts summed and the report rebuilt from the shards' least-confident galleries.
"""
from __future__ import annotations

import csv
import io
import json
import logging
import os
import tempfile

from headstart.jobs.predict.outputs import (GALLERY_INDEX, PREDICTIONS, Gallery, render_report,
                                            skipped_csv, upload_file)
from headstart.jobs.predict.spec import PredictMergeSpec
from headstart.shared.data.images import Skipped
from headstart.shared.data.sharding import published_shards
from headstart.shared.runtime.errors import UserError
from headstart.shared.storage.manifest import RunOutput, is_published
from headstart.shared.runtime.summary import Summary
from headstart.shared.storage.store import join, open_store

log = logging.getLogger("headstart.predict")


def find_shards(root) -> list[str]:
    """The shard folder names under ``root``; all of one count, every index present."""
    names = published_shards(root.list(), root.uri, "shard(s)")
    if not names:
        raise UserError(f"no published predict shards (shard-*-of-*/manifest.json) under {root.uri!r}")
    return names


def merge(spec: PredictMergeSpec) -> Summary:
    """Merge the shards under ``spec.out`` into ``spec.out`` itself; manifest last."""
    root = open_store(spec.out)
    names = find_shards(root)
    shards = [root.child(n) for n in names]
    for name, store in zip(names, shards):
        job = json.loads(store.read_text("manifest.json")).get("job")
        if job != "predict" or not is_published(store):
            raise UserError(f"{spec.out}/{name} is a {job!r} run, expected `headstart predict` output")
    summaries = [json.loads(s.read_text("summary.json")) for s in shards]
    headers = {tuple(next(csv.reader(io.StringIO(s.read_text(PREDICTIONS).split("\n", 1)[0]))))
               for s in shards}
    if len(headers) > 1 or len({tuple(x["labels"]) for x in summaries}) > 1:
        raise UserError(f"the shards under {spec.out!r} come from different models or --top-k")
    out = RunOutput(root, "predict")
    out.unpublish()
    fd, path = tempfile.mkstemp(prefix="merged-", suffix=".csv")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            for i, store in enumerate(shards):
                text = store.read_text(PREDICTIONS)
                fh.write(text if i == 0 else text.split("\n", 1)[1] if "\n" in text else "")
        upload_file(out, PREDICTIONS, path)
    finally:
        os.unlink(path)
    skipped = [Skipped(r["key"], r["label"], r["status"], r["reason"])
               for s in shards for r in csv.DictReader(io.StringIO(s.read_text("skipped.csv")))]
    gallery = Gallery(spec.gallery_per_label)
    for store in shards:
        for tile in json.loads(store.read_text(GALLERY_INDEX)):
            gallery.offer(tile["label"], tile["confidence"], tile["caption"], store.read_bytes(tile["file"]))
    summary = _merged_summary(summaries, len(names))
    out.write_text("skipped.csv", skipped_csv(skipped))
    gallery.write(out)
    out.write_json("summary.json", summary)
    out.write_text("report.html", render_report(
        f"Predictions: {len(names)} shards merged", f"{spec.out} · {summary['images']} images",
        summary, gallery, skipped))
    out.publish(images=summary["images"], skipped=summary["skipped"], merged_shards=len(names))
    log.info("merged %d shards: %d images (%d skipped, %d low confidence) -> %s", len(names),
             summary["images"], summary["skipped"], summary["low_confidence"], out.uri)
    return Summary(job="predict-merge", out=out.uri,
                   produced=f"predictions of {summary['images']} images from {len(names)} shards + report",
                   metric="low confidence", value=summary["low_confidence"], report=join(out.uri, "report.html"),
                   details={"images": summary["images"], "skipped": summary["skipped"], "shards": len(names)})


def _merged_summary(summaries: list[dict], n_shards: int) -> dict:
    first = summaries[0]
    labels = first["labels"]
    n = sum(s["images"] for s in summaries)
    doc = {"images": n, "skipped": sum(s["skipped"] for s in summaries),
           "low_confidence": sum(s["low_confidence"] for s in summaries),
           "min_confidence": first["min_confidence"], "temperature": first["temperature"],
           "mean_confidence": sum((s["mean_confidence"] or 0) * s["images"] for s in summaries) / n if n else None,
           "counts": {k: sum(s["counts"].get(k, 0) for s in summaries) for k in labels},
           "low_confidence_by_label": {k: sum(s["low_confidence_by_label"].get(k, 0) for s in summaries)
                                       for k in labels},
           "labels": labels, "top_k": first["top_k"], "shards": n_shards, "tta": first.get("tta")}
    labelled = sum(s.get("labelled", 0) for s in summaries)
    if labelled:
        doc["labelled"] = labelled
        doc["accuracy"] = sum(s.get("accuracy", 0) * s.get("labelled", 0) for s in summaries) / labelled
    return doc
