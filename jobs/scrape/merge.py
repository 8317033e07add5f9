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
from pathlib import Path

from headstart.jobs.scrape import records
from headstart.jobs.scrape.mergeindex import MergeIndex
from headstart.jobs.scrape.placement import place_images
from headstart.jobs.scrape.spec import MergeSpec, SplitSettings
from headstart.shared.runtime.errors import UserError
from headstart.shared.runtime.summary import Summary
from headstart.shared.storage.manifest import RunOutput
from headstart.shared.data.splits import check_fractions
from headstart.shared.storage.store import Store, open_store

log = logging.getLogger(__name__)

REPORT = "scrape_report.csv"
SUMMARY = "scrape_summary.json"
REPORT_FIELDS = ["index", "url", "label", "status", "split", "path", "http_code", "bytes", "width",
                 "height", "format", "sha", "attempts", "seconds", "final_url", "error"]
SUCCESS = ("ok", "duplicate", "conflict")  # the URL gave a valid image


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


def _final_status(row: dict, index: MergeIndex, on_conflict: str) -> tuple[str, str, tuple | None]:
    """(status, note, image) of a record once duplicates and label conflicts are known."""
    if row["status"] != "ok":
        return row["status"], row["error"], None
    image = index.image(row["sha"])  # (index, label, ext, conflict, split)
    first, label = image[0], image[1]
    if int(row["index"]) == first:
        if image[3] and on_conflict == "drop":
            return "conflict", f"same image under labels {index.labels_of(row['sha'])}; dropped", None
        return "ok", "", image
    if row["label"] == label:
        return "duplicate", f"same bytes as URL #{first}", None
    return "conflict", f"same bytes as URL #{first} labelled {label!r}", None


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


def _write_report(store: Store, parts: list[str], index: MergeIndex, on_conflict: str,
                  out: RunOutput) -> dict:
    """Stream the report to a temp file, upload it; return the per-label/status counts."""
    per_label: dict[str, Counter] = defaultdict(Counter)
    digest, size = hashlib.sha256(), 0
    with tempfile.TemporaryDirectory() as tmp, records.merged_records(store, parts) as rows:
        path = Path(tmp) / REPORT
        with open(path, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, REPORT_FIELDS, extrasaction="ignore", lineterminator="\n")
            writer.writeheader()
            for row in rows:
                status, note, image = _final_status(row, index, on_conflict)
                row.update(status=status, error=note)
                if image is not None:
                    row["split"] = image[4]
                    row["path"] = image_path(image[4], image[1], row["sha"], image[2])
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
        while chunk := fh.read(2**16):  # bounded: the report of a million URLs is ~200 MB
            yield chunk


def _summary(per_label: dict[str, Counter], index: MergeIndex, settings: SplitSettings,
             shard_count: int) -> dict:
    totals: Counter[str] = Counter()
    for counts in per_label.values():
        totals.update(counts)
    total = sum(totals.values())
    success = sum(totals[s] for s in SUCCESS)
    splits_per_label: dict[str, Counter] = defaultdict(Counter)
    for label, split, count in index.split_counts():
        splits_per_label[label][split] += count
    # Malformed rows (bad_row) have no trustworthy label: counted in by_status, not as a label.
    labelled = {label: c for label, c in per_label.items() if label}
    labels = {label: {"urls": sum(c.values()), **dict(sorted(c.items())),
                      "images": dict(splits_per_label.get(label, {}))}
              for label, c in sorted(labelled.items())}
    return {"urls": total, "images": index.n_placed(), "success_rate": round(success / total, 4) if total else 0.0,
            "by_status": dict(sorted(totals.items())), "labels": labels,
            "empty_labels": [lb for lb, c in sorted(labelled.items()) if not c["ok"]],
            "shards": shard_count, "settings": settings.dump()}


def finalize(store: Store, settings: SplitSettings, shard_count: int, overwrite: bool = False) -> dict:
    """Build report, summary, dataset and manifest from the records of every shard. The
    working set lives in a :class:`MergeIndex` on local disk and the manifest's file list in
    the run's on-disk ``FileRecords``, so memory does not grow with the number of images."""
    out = RunOutput(store, "scrape")
    out.unpublish()
    parts = _shard_parts(store, shard_count)
    with MergeIndex() as index:
        with records.merged_records(store, parts) as rows:
            index.add_images(rows, settings.seed)
        check_fractions(settings.valid_fraction, settings.test_fraction)
        index.assign_splits(settings.valid_fraction, settings.test_fraction,
                            drop_conflicts=settings.on_conflict == "drop")
        per_label = _write_report(store, parts, index, settings.on_conflict, out)
        summary = _summary(per_label, index, settings, shard_count)
        out.write_json(SUMMARY, summary)
        for label in summary["empty_labels"]:
            log.warning("label %r has no images: every one of its URLs failed", label)
        log.info("%d URLs -> %d images; success rate %.1f%%; %s", summary["urls"], summary["images"],
                 100 * summary["success_rate"], summary["by_status"])
        if summary["success_rate"] < settings.min_success:
            raise UserError(f"success rate {summary['success_rate']:.3f} is below --min-success "
                            f"{settings.min_success}; see {store.uri}/{REPORT} for why URLs failed")
        place_images(store, index, ((image_path(split, label, sha, ext), records.object_key(sha, ext))
                                    for split, label, sha, ext, _, _ in index.placed_images()),
                     overwrite=overwrite)
        for split, label, sha, ext, size, digest in index.placed_images():
            out.record(image_path(split, label, sha, ext), size, digest)
        labels = index.kept_labels()
    return out.publish(layout="imagenet", images=summary["images"], urls=summary["urls"],
                       labels=labels, success_rate=summary["success_rate"])


def summary_of(job: str, out: str, manifest: dict | None) -> Summary | None:
    """The CLI's summary line from the published manifest in hand (the CLI would otherwise
    re-read ``manifest.json`` whole: a million entries). None for one shard of several."""
    if manifest is None:
        return None
    return Summary(job=job, out=open_store(out).uri, produced=f"{len(manifest['files'])} files",
                   details={"images": manifest.get("images"), "urls": manifest.get("urls")})


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
