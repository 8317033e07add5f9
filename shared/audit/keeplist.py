"""The audit's keep-list (``keep.csv``: key,keep,reasons) and ``train --exclude`` applying it."""
from __future__ import annotations

import csv
import io
import logging

from headstart.shared.runtime.errors import UserError

log = logging.getLogger(__name__)

KEEP_FILE = "keep.csv"


def keep_csv(rows: list[tuple[str, bool, str]]) -> str:
    """CSV text of (dataset-relative key, keep, reasons) rows."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["key", "keep", "reasons"])
    for key, keep, reasons in rows:
        writer.writerow([key, int(keep), reasons])
    return buf.getvalue()


def read_dropped(uri: str) -> set[str]:
    """Keys an audit (its folder/URI, or its keep.csv) says to leave out."""
    from headstart.shared.storage.store import open_store

    if uri.rstrip("/").endswith(".csv"):
        parent, _, name = uri.rstrip("/").rpartition("/")
        store, key = open_store(parent or "."), name
    else:
        store, key = open_store(uri), KEEP_FILE
    if not store.exists(key):
        raise UserError(f"--exclude expects an audit output (folder/URI holding {KEEP_FILE}) or a "
                        f"keep.csv; {uri!r} has none")
    reader = csv.DictReader(io.StringIO(store.read_text(key)))
    if not reader.fieldnames or not {"key", "keep"} <= set(reader.fieldnames):
        raise UserError(f"{uri!r}: {key} must have columns key,keep; got {reader.fieldnames}")
    rows = list(reader)
    bad = [r["keep"] for r in rows if r["keep"] not in ("0", "1")]
    if bad:
        raise UserError(f"{uri!r}: keep must be 0 or 1, got {bad[0]!r}")
    return {r["key"] for r in rows if r["keep"] == "0"}


def apply_exclude(index, uri: str):
    """The dataset index without the images the audit at ``uri`` drops (in place; returned)."""
    dropped = read_dropped(uri)
    known = {item.key for items in index.splits.values() for item in items}
    hit = dropped & known
    if dropped and not hit:
        raise UserError(f"--exclude {uri!r} drops {len(dropped)} images, none of them in "
                        f"{index.uri!r}: is it an audit of another dataset?")
    for split, items in index.splits.items():
        index.splits[split] = [item for item in items if item.key not in dropped]
    log.info("--exclude: left out %d images the audit flagged (%s)", len(hit), uri)
    return index
