"""Collect the predict job's rows as batches arrive and write its files; manifest last.

Rows go straight to a local CSV file (uploaded once at the end), counts are running totals,
and the gallery keeps only the ``gallery_per_label`` least confident thumbnails per label
in a bounded heap: memory stays flat however many images a shard predicts.
"""
from __future__ import annotations

import csv
import hashlib
import heapq
import json
import os
import re
import tempfile
from collections import Counter
from typing import Any

import numpy as np

from headstart.shared.data.images import encode_png
from headstart.shared.data.imagesets import ImageRef, display_picture
from headstart.shared.data.images import Skipped
from headstart.shared.data.loading import skipped_csv as shared_skipped_csv
from headstart.shared.report import html as report
from headstart.shared.storage.manifest import RunOutput

PREDICTIONS = "predictions.csv"
GALLERY_INDEX = "gallery.json"


def header(top_k: int) -> list[str]:
    """Columns of predictions.csv (``probability`` raw top-1, ``confidence`` calibrated)."""
    cols = ["key", "image", "true", "predicted", "probability", "confidence", "low_confidence"]
    for i in range(1, top_k + 1):
        cols += [f"label_{i}", f"prob_{i}"]
    return cols


def label_slug(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", label).strip("._") or "label"


def skipped_csv(skipped: list[Skipped]) -> str:
    """The one ``skipped.csv`` format of every job (no dataset split here)."""
    return shared_skipped_csv({None: skipped})


def upload_file(out: RunOutput, key: str, path: str) -> None:
    """Upload a local file as an output, hashing it in blocks (never whole in memory)."""
    digest, size = hashlib.sha256(), 0
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
            size += len(block)
    out.store.upload_file(key, path)
    out.record(key, size, digest.hexdigest())


class Gallery:
    """The ``per_label`` least confident images of each predicted label (a max-heap each)."""

    def __init__(self, per_label: int) -> None:
        self.per_label = per_label
        self.heaps: dict[str, list[tuple[float, int, str, Any]]] = {}
        self._seq = 0

    def offer(self, label: str, confidence: float, caption: str, thumb) -> None:
        """Keep the image if it is among the least confident so far. ``thumb``: PNG bytes, an
        image array, or a function making the array (called only when the image is kept)."""
        if self.per_label == 0:
            return
        heap = self.heaps.setdefault(label, [])
        if len(heap) >= self.per_label and -heap[0][0] <= confidence:
            return  # at least as confident as every kept one: not shown
        # PNGs are encoded at write time: most kept tiles are displaced later (a PNG costs
        # ~4 ms, a quarter of a MobileNet forward pass per image on a CPU).
        picture = thumb() if callable(thumb) else thumb
        self._seq += 1
        item = (-confidence, self._seq, caption, picture)
        if len(heap) >= self.per_label:
            heapq.heapreplace(heap, item)
        else:
            heapq.heappush(heap, item)

    def ordered(self) -> dict[str, list[tuple[float, str, bytes]]]:
        """label -> [(confidence, caption, png)], least confident first."""
        for heap in self.heaps.values():  # encode the kept arrays once (the heap order is unchanged)
            for i, (c, seq, cap, pic) in enumerate(heap):
                if not isinstance(pic, bytes):
                    heap[i] = (c, seq, cap, encode_png(np.asarray(pic)))
        return {label: [(-c, cap, png) for c, _, cap, png in sorted(heap, key=lambda t: (-t[0], t[1]))]
                for label, heap in sorted(self.heaps.items())}

    def write(self, out: RunOutput) -> None:
        """``gallery/<label>/<n>.png`` plus ``gallery.json`` (what a merge rebuilds the report from)."""
        index = []
        for label, tiles in self.ordered().items():
            for n, (conf, caption, png) in enumerate(tiles):
                key = f"gallery/{label_slug(label)}/{n:04d}.png"
                out.write_bytes(key, png)
                index.append({"label": label, "confidence": conf, "caption": caption, "file": key})
        out.write_json(GALLERY_INDEX, index)


def render_report(title: str, subtitle: str, summary: dict[str, Any], gallery: Gallery,
                  skipped: list[Skipped]) -> str:
    """The self-contained report: summary cards, counts per label, one gallery per label."""
    rep = report.Report(title, subtitle)
    rep.add("Summary", report.cards({k: v for k, v in summary.items()
                                     if isinstance(v, (int, float)) and not isinstance(v, bool)}))
    counts = summary.get("counts", {})
    low = summary.get("low_confidence_by_label", {})
    rep.add("Predicted labels", report.table(["label", "images", "low confidence"],
                                             [[k, v, low.get(k, 0)] for k, v in counts.items()]))
    for label, tiles in gallery.ordered().items():
        rep.add(f"Predicted {label} ({counts.get(label, len(tiles))} images, least confident first)",
                report.gallery([(png, caption, None) for _, caption, png in tiles]))
    if skipped:
        rep.add("Skipped images", report.table(["key", "status", "reason"],
                                               [[s.key, s.status, s.reason] for s in skipped[:1000]]))
    return rep.render()


class Predictions:
    """Running results of one predict run (or shard)."""

    def __init__(self, labels: list[str], calibration, top_k: int, min_confidence: float,
                 gallery_per_label: int, thumb_size: int | None = None) -> None:
        """``thumb_size``: the batches' extras are whole decoded images, shrunk to this side
        only for the few the gallery keeps (else they are thumbnails already)."""
        self.labels, self.calibration = labels, calibration
        self.thumb_size = thumb_size
        self.top_k, self.min_confidence = min(top_k, len(labels)), min_confidence
        self.counts: Counter = Counter()
        self.low: Counter = Counter()
        self.gallery = Gallery(gallery_per_label)
        self.skipped: list[Skipped] = []
        self.n = self.n_labelled = self.n_correct = 0
        self.conf_sum = 0.0
        fd, self.path = tempfile.mkstemp(prefix="predictions-", suffix=".csv")
        self._fh = os.fdopen(fd, "w", newline="", encoding="utf-8")
        self._csv = csv.writer(self._fh)
        self._csv.writerow(header(self.top_k))

    def add(self, refs: list[ImageRef], probs: np.ndarray, thumbs: list[np.ndarray],
            skipped: list[Skipped]) -> None:
        """Record one batch: CSV rows, counts, gallery candidates, skipped files."""
        self.skipped += skipped
        if not refs:
            return
        conf = self.calibration.apply(probs).max(axis=1)
        order = np.argsort(-probs, axis=1, kind="stable")[:, :self.top_k]
        for i, ref in enumerate(refs):
            top = order[i]
            pred = self.labels[int(top[0])]
            low = bool(conf[i] < self.min_confidence)
            row = [ref.key, ref.uri, ref.label or "", pred, f"{probs[i, top[0]]:.8f}",
                   f"{conf[i]:.8f}", int(low)]
            for j in top:
                row += [self.labels[int(j)], f"{probs[i, j]:.8f}"]
            self._csv.writerow(row)
            self.n += 1
            self.conf_sum += float(conf[i])
            self.counts[pred] += 1
            self.low[pred] += low
            if ref.label in self.labels:
                self.n_labelled += 1
                self.n_correct += ref.label == pred
            name = ref.key.rsplit("/", 1)[-1]
            caption = f"{name}: {pred} {conf[i]:.2f}" + (f" (true {ref.label})" if ref.label else "")
            self.gallery.offer(pred, float(conf[i]), caption, self._thumb(thumbs[i]))

    def _thumb(self, picture: np.ndarray):
        if self.thumb_size is None:
            return picture
        size = self.thumb_size
        return lambda: display_picture(picture, size)

    def summary(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "images": self.n, "skipped": len(self.skipped),
            "low_confidence": int(sum(self.low.values())), "min_confidence": self.min_confidence,
            "mean_confidence": self.conf_sum / self.n if self.n else None,
            "temperature": self.calibration.temperature,
            "counts": {label: self.counts.get(label, 0) for label in self.labels},
            "low_confidence_by_label": {label: int(self.low.get(label, 0)) for label in self.labels},
            "labels": self.labels, "top_k": self.top_k}
        if self.n_labelled:
            doc["labelled"] = self.n_labelled
            doc["accuracy"] = self.n_correct / self.n_labelled
        return doc

    def publish(self, out: RunOutput, spec_yaml: str, title: str, subtitle: str, **extra: Any) -> dict:
        """Every file, manifest last. Returns the summary."""
        self._fh.close()
        try:
            upload_file(out, PREDICTIONS, self.path)
        finally:
            os.unlink(self.path)
        summary = {**self.summary(), **extra}
        out.write_text("skipped.csv", skipped_csv(self.skipped))
        self.gallery.write(out)
        out.write_json("summary.json", summary)
        out.write_text("spec.yaml", spec_yaml)
        out.write_text("report.html", render_report(title, subtitle, summary, self.gallery, self.skipped))
        out.publish(images=self.n, skipped=len(self.skipped), **extra)
        return summary

    def discard(self) -> None:
        """Drop the partial CSV (a failed run publishes nothing)."""
        if not self._fh.closed:
            self._fh.close()
        if os.path.exists(self.path):
            os.unlink(self.path)


def read_json(out: RunOutput, key: str) -> Any:
    return json.loads(out.store.read_text(key))
