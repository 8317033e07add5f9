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
from headstart.shared.explain.faithfulness import Faithfulness, verdict
from headstart.shared.explain.faithfulness import summarize as summarize_faithfulness
from headstart.shared.explain.gradcam import CamResult, peak_location, upsample
from headstart.shared.data.imagesets import Chunk, slug
from headstart.shared.data.images import encode_png
from headstart.shared.data.loading import Skipped, skipped_csv
from headstart.shared.storage.manifest import RunOutput
from headstart.shared.explain.overlay import blend, overlay_png
from headstart.shared.model.trained import TrainedModel
from headstart.shared.runtime.summary import Summary
from headstart.shared.storage.store import join

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
        self.gallery: list[tuple[bytes, str, None, bool | None]] = []  # png, caption, link, correct
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
                       drop_random=round(float(faith.drop_random[i]), 6),
                       drop_centre=round(float(faith.drop_centre[i]), 6),
                       deletion_auc={k: round(float(v[i]), 6) for k, v in faith.deletion.items()},
                       insertion_auc={k: round(float(v[i]), 6) for k, v in faith.insertion.items()})
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
            correct = None if row["true"] is None else row["true"] == row["predicted"]
            self.gallery.append((encode_png(small), f"{row['key'].rsplit('/', 1)[-1]}: {text}",
                                 None, correct))

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
            for k in ("faithfulness", "drop_top", "drop_random", "drop_centre"):
                doc[f"mean_{k}"] = float(np.mean([r[k] for r in self.rows]))
            doc["mask_fraction"] = self.spec.mask_fraction
            doc["faithfulness_test"] = summarize_faithfulness(
                *({k: np.asarray([r[curve][k] for r in self.rows]) for k in self.rows[0][curve]}
                  for curve in ("deletion_auc", "insertion_auc")))
        return doc

    def publish(self, out: RunOutput, **extra: Any) -> Summary:
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
        test = summary.get("faithfulness_test") or {}
        metric, value = (("accuracy", summary["accuracy"]) if "accuracy" in summary
                         else ("images explained", self.count))
        return Summary(job="gradcam", out=out.uri, produced=f"{self.count} overlays + report",
                       metric=metric, value=value, report=join(out.uri, "report.html"),
                       details={"beats_controls": test.get("beats_controls"), "images": self.count})

    def _report(self, summary: dict[str, Any], grids: dict[str, bytes]) -> str:
        rep = report.Report(f"Grad-CAM ({self.spec.method}): {self.backbone} on {self.spec.images}",
                            f"model {self.spec.model} · layer {self.layer} · target {self.spec.target}")
        cards = {"images": summary["images"], "skipped": summary["skipped"]}
        if "accuracy" in summary:
            cards["accuracy"] = summary["accuracy"]
        test = summary.get("faithfulness_test")
        if test:
            cards["beats both controls"] = "yes" if test["beats_controls"] else "no"
        rep.add("Summary", report.cards(cards))
        if test:
            rep.add("Faithfulness", faithfulness_html(test, self.spec.mask_fraction, summary))
        wrong = sum(1 for *_, ok in self.gallery if ok is False)
        rep.add("Overlays", f"<p class='muted'>{len(self.gallery)} of {self.count} images shown"
                + (f"; {wrong} wrong predictions framed in red" if wrong else "")
                + ". Full-size overlays: <code>overlays/*.png</code>; one sheet per class: "
                + f"<code>grids/*.png</code> ({len(grids)}) in the run folder.</p>"
                + report.gallery(self.gallery))
        if self.skipped:
            rep.add("Skipped images", report.table(["key", "status", "reason"],
                                                   [[s.key, s.status, s.reason] for s in self.skipped]))
        rep.add("Configuration", report.configuration(self.spec.dump(), {
            "images": self.spec.images, "model": self.spec.model, "backbone": self.backbone,
            "layer": self.layer, "method": self.spec.method,
            "shard": (f"{summary['shard'] + 1} of {summary['shard_count']}"
                      if summary.get("shard_count", 1) > 1 else None)}))
        return rep.render()


def faithfulness_html(test: dict[str, Any], fraction: float, summary: dict[str, Any]) -> str:
    """The faithfulness section: the verdict, AUCs per map and margins with 95% intervals."""
    rows = [[curve, auc["map"], auc["random"], auc["centre"]] for curve, auc in test["auc"].items()]
    def signed(v: float) -> str:
        return "0.000" if abs(v) < 5e-4 else f"{v:+.3f}"  # never "-0.000"

    def plain(v: float) -> str:
        return "0.000" if abs(v) < 5e-4 else f"{v:.3f}"

    margins = [[k.replace("_vs_", " vs "), m["mean"], f"[{signed(m['low'])}, {signed(m['high'])}]",
                "yes" if m["beats"] else "no"] for k, m in test["margin"].items()]
    return (f"<p><b>{report.esc(verdict(test))}</b></p>"
            "<p>Pixels are ranked by the map, then blurred from the top (<i>deletion</i>: the "
            "target probability should fall fast, lower area is better) or restored into a "
            "blurred image (<i>insertion</i>: it should rise fast, higher area is better). "
            "Controls: the mean of random maps of the same granularity, and a centred blob "
            f"that knows nothing about the model. Over {test['images']} images.</p>"
            + report.table(["curve", "Grad-CAM AUC", "random AUC", "centre AUC"], rows)
            + report.table(["margin (positive: the map is better)", "mean", "95% interval", "beats"], margins)
            + f"<p class='muted'>Blurring the map's top {fraction:.0%} lowers the target probability "
            f"by {plain(summary['mean_drop_top'])} on average (random: {plain(summary['mean_drop_random'])}, "
            f"centre: {plain(summary['mean_drop_centre'])}).</p>")
