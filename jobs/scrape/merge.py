"""Merge shard records into the dataset: dedupe, split, report, place images, manifest last.

Everything here depends only on the *set* of records, never on download order or the number
of shards: the keeper of an image is its lowest-numbered URL, and the split is a seeded hash
order per label (``headstart.shared.data.splits``). So a sharded run + merge, an unsharded run and a rerun
after a crash all produce the same dataset.
"""
from __future__ import annotations

import csv
import hashlib
import logging
import tempfile
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from headstart.jobs.scrape import records
from headstart.jobs.scrape.placement import place_images
from headstart.jobs.scrape.spec import MergeSpec, SplitSettings
from headstart.shared.runtime.errors import UserError
from headstart.shared.storage.manifest import RunOutput
from headstart.shared.data.splits import stratified_split
from headstart.shared.storage.store import Store, open_store

log = logging.getLogger(__name__)

REPORT = "scrape_report.csv"
SUMMARY = "scrape_summary.json"
REPORT_FIELDS = ["index", "url", "label", "status", "split", "path", "http_code", "bytes", "width",
                 "height", "format", "sha", "attempts", "seconds", "final_url", "error"]
SUCCESS = ("ok", "duplicate", "conflict")  # the URL gave a valid image


@dataclass
class Image:
    """One distinct download: its first URL decides its label."""

    index: int
    label: str
    ext: str
    stored_bytes: int
    stored_sha256: str
    labels: set[str] = field(default_factory=set)

    @property
    def conflict(self) -> bool:
        return len(self.labels) > 1


def _shard_parts(store: Store, shard_count: int) -> list[str]:
    """Part files of every shard; refuse unless all ``shard_count`` shards are done."""
    missing = [i for i in range(shard_count)
               if not store.exists(f"{records.shard_dir(i, shard_count)}/{records.DONE}")]
    if missing:
        raise UserError(f"{len(missing)} of {shard_count} shards have not finished in "
                        f"{store.uri}: {missing[:20]}; rerun them, then merge")
    keys = []
    for i in range(shard_count):
        keys += records.part_keys(store, records.shard_dir(i, shard_count))
    return keys


def _collect_images(store: Store, parts: list[str]) -> dict[str, Image]:
    images: dict[str, Image] = {}
    with records.merged_records(store, parts) as rows:
        for row in rows:
            if row["status"] != "ok":
                continue
            image = images.get(row["sha"])
            if image is None:
                image = images[row["sha"]] = Image(int(row["index"]), row["label"], row["ext"],
                                                   int(row["stored_bytes"]), row["stored_sha256"])
            image.labels.add(row["label"])
    return images


def _final_status(row: dict, images: dict[str, Image], on_conflict: str) -> tuple[str, str]:
    """(status, note) of a record once duplicates and label conflicts are known."""
    if row["status"] != "ok":
        return row["status"], row["error"]
    image = images[row["sha"]]
    if int(row["index"]) == image.index:
        if image.conflict and on_conflict == "drop":
            return "conflict", f"same image under labels {sorted(image.labels)}; dropped"
        return "ok", ""
    if row["label"] == image.label:
        return "duplicate", f"same bytes as URL #{image.index}"
    return "conflict", f"same bytes as URL #{image.index} labelled {image.label!r}"


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_TEXT_FIELDS = ("url", "label", "final_url", "error", "path")


def spreadsheet_safe(row: dict) -> dict:
    """Prefix text cells a spreadsheet would run as a formula (``=HYPERLINK(...)`` in a URL
    list) with ``'``, so opening the report cannot execute anything."""
    for key in _TEXT_FIELDS:
        value = row.get(key)
        if isinstance(value, str) and value.startswith(_FORMULA_START):
            row[key] = "'" + value
    return row


def image_path(split: str, label: str, sha: str, ext: str) -> str:
    return f"{split}/{label}/{sha[:32]}.{ext}"


def _write_report(store: Store, parts: list[str], images: dict[str, Image], plan: dict[str, str],
                  on_conflict: str, out: RunOutput) -> dict:
    """Stream the report to a temp file, upload it; return the per-label/status counts."""
    per_label: dict[str, Counter] = defaultdict(Counter)
    digest, size = hashlib.sha256(), 0
    with tempfile.TemporaryDirectory() as tmp, records.merged_records(store, parts) as rows:
        path = Path(tmp) / REPORT
        with open(path, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, REPORT_FIELDS, extrasaction="ignore", lineterminator="\n")
            writer.writeheader()
            for row in rows:
                status, note = _final_status(row, images, on_conflict)
                row.update(status=status, error=note)
                if status == "ok":
                    image = images[row["sha"]]
                    row["split"] = plan[row["sha"]]
                    row["path"] = image_path(row["split"], image.label, row["sha"], image.ext)
                per_label[row["label"]][status] += 1
                writer.writerow(spreadsheet_safe(row))
        for chunk in _chunks(path):
            digest.update(chunk)
            size += len(chunk)
        store.upload_file(REPORT, path)
    out.record(REPORT, size, digest.hexdigest())
    return per_label


def _chunks(path: Path):
    with open(path, "rb") as fh:
        while chunk := fh.read(2**20):
            yield chunk


def _summary(per_label: dict[str, Counter], plan: dict[str, str], images: dict[str, Image],
             settings: SplitSettings, shard_count: int) -> dict:
    totals: Counter[str] = Counter()
    for counts in per_label.values():
        totals.update(counts)
    total = sum(totals.values())
    success = sum(totals[s] for s in SUCCESS)
    splits_per_label: dict[str, Counter] = defaultdict(Counter)
    for sha, split in plan.items():
        splits_per_label[images[sha].label][split] += 1
    # Malformed rows (bad_row) have no trustworthy label: counted in by_status, not as a label.
    labelled = {label: c for label, c in per_label.items() if label}
    labels = {label: {"urls": sum(c.values()), **dict(sorted(c.items())),
                      "images": dict(splits_per_label.get(label, {}))}
              for label, c in sorted(labelled.items())}
    return {"urls": total, "images": len(plan), "success_rate": round(success / total, 4) if total else 0.0,
            "by_status": dict(sorted(totals.items())), "labels": labels,
            "empty_labels": [lb for lb, c in sorted(labelled.items()) if not c["ok"]],
            "shards": shard_count, "settings": settings.dump()}


def finalize(store: Store, settings: SplitSettings, shard_count: int, overwrite: bool = False) -> dict:
    """Build report, summary, dataset and manifest from the records of every shard."""
    out = RunOutput(store, "scrape")
    out.unpublish()
    parts = _shard_parts(store, shard_count)
    images = _collect_images(store, parts)
    kept: dict[str, list[str]] = defaultdict(list)
    for sha, image in images.items():
        if not (image.conflict and settings.on_conflict == "drop"):
            kept[image.label].append(sha)
    plan = {sha: split for by_key in stratified_split(
        kept, settings.valid_fraction, settings.test_fraction, settings.seed).values()
        for sha, split in by_key.items()}
    per_label = _write_report(store, parts, images, plan, settings.on_conflict, out)
    summary = _summary(per_label, plan, images, settings, shard_count)
    out.write_json(SUMMARY, summary)
    for label in summary["empty_labels"]:
        log.warning("label %r has no images: every one of its URLs failed", label)
    log.info("%d URLs -> %d images; success rate %.1f%%; %s", summary["urls"], summary["images"],
             100 * summary["success_rate"], summary["by_status"])
    if summary["success_rate"] < settings.min_success:
        raise UserError(f"success rate {summary['success_rate']:.3f} is below --min-success "
                        f"{settings.min_success}; see {store.uri}/{REPORT} for why URLs failed")
    targets = {image_path(split, images[sha].label, sha, images[sha].ext): sha for sha, split in plan.items()}
    place_images(store, {path: records.object_key(sha, images[sha].ext) for path, sha in targets.items()},
                 overwrite=overwrite)
    for path, sha in targets.items():
        out.record(path, images[sha].stored_bytes, images[sha].stored_sha256)
    return out.publish(layout="imagenet", images=len(plan), urls=summary["urls"],
                       labels=sorted(kept), success_rate=summary["success_rate"])


def merge_command(spec: MergeSpec) -> dict:
    """``headstart scrape-merge``: merge finished shards, settings defaulting to the shards'."""
    store = open_store(spec.out)
    counts = {k.split("/")[2].split("-of-")[1] for k in store.list(f"{records.ROOT}/shards")
              if k.endswith(records.SHARD_SPEC)}
    if len(counts) != 1:
        raise UserError(f"expected the shards of one sharded scrape in {store.uri}/{records.ROOT}/shards; "
                        f"found shard counts {sorted(counts) or 'none'}")
    shard_count = int(counts.pop())
    recorded = records.read_json(store, f"{records.shard_dir(0, shard_count)}/{records.SHARD_SPEC}") or {}
    values = {k: recorded[k] for k in SplitSettings.model_fields if k in recorded}
    values.update({k: v for k, v in spec.dump().items() if k != "out" and v is not None})
    try:
        settings = SplitSettings(**values)
    except ValueError as exc:
        raise UserError(f"invalid merge settings: {exc}") from None
    return finalize(store, settings, shard_count)
