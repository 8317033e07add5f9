"""Helpers shared by the tests (one module): image bytes, job-run helpers, scrape helpers.

Fixtures live in the conftest.py files; plain functions and constants live here and are
imported as ``from tests.helpers import ...``.
"""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
from PIL import Image

# The repository root, and the handed material beside it (../shared: photos and offline weights).
REPO = Path(__file__).resolve().parents[1]
HANDED = REPO.parent / "shared"
MOBILENET_160 = HANDED / "models" / "mobilenetv2_160_backbone.weights.h5"
FLOWERS5 = HANDED / "data" / "flowers5"

# Small and fast: the tiny CNN at 32px trains in a few seconds on 2 cores.
TINY = ["--backbone", "tiny", "--weights", "none", "--image-size", "32"]

# Scrape tests: short timeouts and no decode processes.
FAST = dict(timeout=0.5, retries=2, backoff=0.01, decode_workers=0, min_side=16)


def encode(array: np.ndarray, fmt: str, **kwargs) -> bytes:
    """Image bytes: encode an array in any Pillow format (GIF via a palette)."""
    buf = io.BytesIO()
    img = Image.fromarray(array)
    if fmt == "GIF":
        img = img.convert("P")
    img.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def failure(out: str | Path) -> dict:
    """The ``_FAILURE.json`` record a failed job left in ``out``."""
    return json.loads(Path(out, "_FAILURE.json").read_text())


def copy_tree(src: str, dest_uri: str) -> str:
    """Copy every object under ``src`` to ``dest_uri`` (any stores); returns the destination URI."""
    from headstart.shared.storage.store import open_store

    source, dest = open_store(src), open_store(dest_uri)
    for key in source.list():
        dest.write_bytes(key, source.read_bytes(key))
    return dest.uri


def write_list(path: Path, rows: list[tuple[str, str]]) -> str:
    """A ``url,label`` CSV URL list."""
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["url", "label"])
        writer.writerows(rows)
    return str(path)


def report(out: Path) -> list[dict]:
    """The rows of a scrape's ``scrape_report.csv``."""
    with open(out / "scrape_report.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def dataset(out: Path) -> dict[str, bytes]:
    """Every file of a scraped dataset, by relative key."""
    return {p.relative_to(out).as_posix(): p.read_bytes()
            for split in ("train", "valid", "test") for p in sorted((out / split).rglob("*")) if p.is_file()}


def spec(server, urls: str, out: Path, **kw):
    """A ScrapeSpec against the loopback test server with the fast settings."""
    from headstart.jobs.scrape.spec import ScrapeSpec

    return ScrapeSpec(urls=urls, out=str(out), allow_loopback=[server.allow], **{**FAST, **kw})


def sigterm_after_epoch(monkeypatch, epoch: int) -> None:
    """A spot interruption: SIGTERM this process right after ``epoch`` is logged."""
    import os
    import signal

    from headstart.shared.model import training

    real_log = training._log_epoch

    def log_then_sigterm(cfg, done, logs, rate, note):
        real_log(cfg, done, logs, rate, note)
        if done == epoch:
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(training, "_log_epoch", log_then_sigterm)
