"""Collect the gradcam job's per-image results and write its files; manifest last."""
from __future__ import annotations

import io
import json
import re
from typing import Any

import numpy as np
from PIL import Image

from headstart.jobs.gradcam.spec import GradcamSpec
from headstart.shared.report import plots
from headstart.shared.report import html as report
from headstart.shared.explain.faithfulness import Faithfulness
from headstart.shared.explain.gradcam import CamResult, peak_location, upsample
from headstart.shared.data.imagesets import Chunk, slug
from headstart.shared.data.images import encode_png
from headstart.shared.data.loading import Skipped, skipped_csv
from headstart.shared.storage.manifest import RunOutput
from headstart.shared.explain.overlay import blend, overlay_png
from headstart.shared.model.trained import TrainedModel

THUMB = 128        # side of the grid and gallery thumbnails
GALLERY = 48       # overlays embedded in the HTML page


class Collector:
    """Writes overlays as chunks arrive; keeps rows, raw heatmaps and thumbnails for the end."""

    def __init__(self, spec: GradcamSpec, trained: TrainedModel, layer: str) -> None:
        self.spec, self.labels, self.layer = spec, trained.labels, layer
        self.backbone = trained.meta.get("backbone")
        self.rows: list[dict[str, Any]] = []
        self.heatmaps: list[np.ndarray] = []
        self.skipped: list[Skipped] = []
        self.thumbs: dict[str, list[tuple[np.ndarray, str]]] = {}
        self.gallery: list[tuple[bytes, str, str]] = []
        self.pending: list[tuple[str, bytes]] = []
        self._names: set[str] = set()

    @property
    def count(self) -> int:
        return len(self.rows)

    def skip(self, skipped: list[Skipped]) -> None:
        self.skipped += skipped

    def add(self, chunk: Chunk, result: CamResult, faith: Faithfulness | None) -> None:
        """Record one chunk: overlay PNGs (queued), JSON rows, heatmaps, thumbnails."""
        size = chunk.display.shape[1]
        big = upsample(result.heatmaps, size, size)
        self.heatmaps.append(result.heatmaps.astype(np.float32))
        for i, ref in enumerate(chunk.refs):
            row = self._row(ref, result, faith, i)
            text = (f"{row['predicted']} {row['probability']:.2f}"
                    + (f" (true {ref.label})" if ref.label else "")
                    + (f" · map of {row['target']}" if row["target"] != row["predicted"] else ""))
            self.pending.append((row["overlay"], overlay_png(chunk.display[i], big[i], text,
                                                             self.spec.alpha, self.spec.colormap)))
            self._thumb(chunk.display[i], big[i], row, text)
            self.rows.append(row)

    def _row(self, ref, result: CamResult, faith: Faithfulness | None, i: int) -> dict[str, Any]:
        probs = result.probs[i]
        pred, target = int(probs.argmax()), int(result.targets[i])
        x, y = peak_location(result.heatmaps[i])
        row = {"image": ref.uri, "key": ref.key, "split": ref.split, "true": ref.label,
               "predicted": self.labels[pred], "probability": round(float(probs[pred]), 6),
               "target": self.labels[target], "target_probability": round(float(probs[target]), 6),
               "peak": {"x": round(x, 4), "y": round(y, 4), "value": round(float(result.peaks[i]), 6)},
               "overlay": f"overlays/{slug(ref, self._names)}.png"}
        if faith is not None:
            row.update(faithfulness=round(float(faith.score[i]), 6),
                       drop_top=round(float(faith.drop_top[i]), 6),
                       drop_random=round(float(faith.drop_random[i]), 6))
        return row

    def _thumb(self, image: np.ndarray, heat: np.ndarray, row: dict, text: str) -> None:
        group = row["true"] or row["predicted"]
        kept = self.thumbs.setdefault(group, [])
        if len(kept) >= self.spec.grid_per_class and len(self.gallery) >= GALLERY:
            return
        small = np.asarray(Image.fromarray(blend(image, heat, self.spec.alpha, self.spec.colormap))
                           .resize((THUMB, THUMB), Image.Resampling.BILINEAR))
        if len(kept) < self.spec.grid_per_class:
            kept.append((small, f"{row['predicted']} {row['probability']:.2f}"))
        if len(self.gallery) < GALLERY:
            self.gallery.append((encode_png(small), f"{row['key'].rsplit('/', 1)[-1]}: {text}",
                                 row["overlay"]))

    def flush(self, out: RunOutput) -> None:
        for key, png in self.pending:
            out.write_bytes(key, png)
        self.pending.clear()

    def summary(self) -> dict[str, Any]:
        labelled = [r for r in self.rows if r["true"] is not None]
        doc: dict[str, Any] = {"images": self.count, "skipped": len(self.skipped),
                               "method": self.spec.method, "layer": self.layer,
                               "target": self.spec.target, "backbone": self.backbone}
        if labelled:
            doc["accuracy"] = float(np.mean([r["true"] == r["predicted"] for r in labelled]))
        if self.rows and "faithfulness" in self.rows[0]:
            for k in ("faithfulness", "drop_top", "drop_random"):
                doc[f"mean_{k}"] = float(np.mean([r[k] for r in self.rows]))
            doc["mask_fraction"] = self.spec.mask_fraction
        return doc

    def publish(self, out: RunOutput, **extra: Any) -> None:
        """Overlays, heatmaps.npz, results.jsonl, grids, report, summary; manifest last."""
        self.flush(out)
        buf = io.BytesIO()
        np.savez_compressed(buf, heatmaps=np.concatenate(self.heatmaps),
                            images=np.asarray([r["image"] for r in self.rows]),
                            targets=np.asarray([self.labels.index(r["target"]) for r in self.rows]),
                            labels=np.asarray(self.labels))
        out.write_bytes("heatmaps.npz", buf.getvalue())
        out.write_text("results.jsonl", "".join(json.dumps(r, sort_keys=True) + "\n" for r in self.rows))
        grids = {}
        for group, tiles in sorted(self.thumbs.items()):
            name = f"grids/{re.sub(r'[^A-Za-z0-9._-]+', '_', group)}.png"
            grids[group] = plots.image_grid([t for t, _ in tiles], [c for _, c in tiles])
            out.write_bytes(name, grids[group])
        summary = {**self.summary(), **extra}
        out.write_json("summary.json", summary)
        out.write_text("skipped.csv", skipped_csv({None: self.skipped}))
        out.write_text("spec.yaml", self.spec.to_yaml())
        out.write_text("report.html", self._report(summary, grids))
        out.publish(images=self.count, method=self.spec.method, **extra)

    def _report(self, summary: dict[str, Any], grids: dict[str, bytes]) -> str:
        rep = report.Report(f"Grad-CAM ({self.spec.method}): {self.backbone} on {self.spec.images}",
                            f"model {self.spec.model} · layer {self.layer} · target {self.spec.target}")
        rep.add("Summary", report.cards({k: v for k, v in summary.items()
                                         if isinstance(v, (int, float)) and not isinstance(v, bool)}))
        if "mean_faithfulness" in summary:
            rep.add("Faithfulness", "<p>Drop in the target-class probability when the top "
                    f"{self.spec.mask_fraction:.0%} of each heatmap is blurred, against blurring a "
                    "random share of the same size; higher is better, above 0 beats chance.</p>")
        rep.add("Overlays", report.gallery([(png, cap, link) for png, cap, link in self.gallery]))
        for group, png in grids.items():
            rep.add(f"Class {group}", report.figure(png, group))
        if self.skipped:
            rep.add("Skipped images", report.table(["key", "status", "reason"],
                                                   [[s.key, s.status, s.reason] for s in self.skipped]))
        return rep.render()
