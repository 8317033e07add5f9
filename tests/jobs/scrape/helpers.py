"""Helpers shared by the scrape job tests: URL lists, reports and dataset snapshots."""
from __future__ import annotations

import csv
from pathlib import Path

from jobs.scrape.spec import ScrapeSpec

FAST = dict(timeout=0.5, retries=2, backoff=0.01, decode_workers=0, min_side=16)


def write_list(path: Path, rows: list[tuple[str, str]]) -> str:
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["url", "label"])
        writer.writerows(rows)
    return str(path)


def report(out: Path) -> list[dict]:
    with open(out / "scrape_report.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def dataset(out: Path) -> dict[str, bytes]:
    return {p.relative_to(out).as_posix(): p.read_bytes()
            for split in ("train", "valid", "test") for p in sorted((out / split).rglob("*")) if p.is_file()}


def spec(server, urls: str, out: Path, **kw) -> ScrapeSpec:
    return ScrapeSpec(urls=urls, out=str(out), allow_loopback=[server.allow], **{**FAST, **kw})
