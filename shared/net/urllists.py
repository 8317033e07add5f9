"""Read image-URL lists, streamed, from a local path or ``s3://``.

Two layouts:

* one CSV file with ``url`` and ``label`` columns (any order, extra columns ignored);
* a folder / prefix of ``<label>.csv`` or ``<label>.txt`` files with one URL per line (what a
  browser-console snippet on an image-search page saves). A ``url`` header line is skipped;
  blank lines and ``#`` comments are ignored.

Entries are numbered in a stable order (files by name, then line order); the number is the
URL's identity for sharding, resuming and ordering the report.
"""
from __future__ import annotations

import csv
import io
import logging
import re
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Iterator, TextIO

from headstart.shared.runtime.errors import UserError
from headstart.shared.storage.store import Store, join, open_store, split_uri

log = logging.getLogger(__name__)

LIST_SUFFIXES = (".csv", ".txt")
_LABEL_RE = re.compile(r"^[^/\\\x00-\x1f]+$")


@dataclass(frozen=True)
class UrlEntry:
    """One line of the list: its global position, the URL and its label."""

    index: int
    url: str
    label: str


def check_label(label: str, where: str) -> str:
    """A label becomes a folder name: refuse empty, hidden, ``..`` or path-like names."""
    label = label.strip()
    if not label or label.startswith(".") or not _LABEL_RE.match(label):
        raise UserError(f"invalid label {label!r} in {where}: expected a folder name "
                        "(no '/', '\\', leading '.' or control characters)")
    return label


@contextmanager
def _open_text(store: Store, key: str) -> Iterator[TextIO]:
    """A text stream over one object, without reading it all into memory."""
    with ExitStack() as stack:
        try:
            raw = stack.enter_context(store.open(key))
        except FileNotFoundError:
            raise UserError(f"URL list not found: {join(store.uri, key)}") from None
        yield io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")




def _csv_entries(fh: TextIO, where: str) -> Iterator[tuple[str, str]]:
    reader = csv.reader(fh)
    header = [h.strip().lower() for h in next(reader, [])]
    if "url" not in header or "label" not in header:
        raise UserError(f"URL list {where} must have 'url' and 'label' columns; found {header}")
    iu, il = header.index("url"), header.index("label")
    for lineno, row in enumerate(reader, start=2):
        if not row or not any(cell.strip() for cell in row):
            continue
        if len(row) <= max(iu, il):
            raise UserError(f"line {lineno} of {where} has {len(row)} fields; expected url and label")
        yield row[iu].strip(), check_label(row[il], f"{where} line {lineno}")


def _line_entries(fh: TextIO, label: str) -> Iterator[tuple[str, str]]:
    for n, line in enumerate(fh):
        url = line.strip()
        if n == 0 and url.lower() in ("url", "urls", "\"url\""):
            continue
        if url and not url.startswith("#"):
            # A one-column CSV may quote its values.
            yield (url[1:-1] if len(url) > 1 and url[0] == url[-1] == '"' else url), label


def _sources(uri: str) -> tuple[Store, list[tuple[str, str | None]]]:
    """(store, [(key, label or None for a url,label CSV)]) for a file or a folder of lists."""
    text = str(uri)
    head_store, name = split_uri(text)
    if name.endswith(LIST_SUFFIXES) and head_store.exists(name):
        return head_store, [(name, None)]
    store = open_store(text)
    keys = [k for k in store.list() if "/" not in k and k.endswith(LIST_SUFFIXES)]
    if not keys:
        raise UserError(f"no URL list at {uri!r}: expected a CSV file with url,label columns or a "
                        "folder of <label>.csv / <label>.txt files")
    return store, [(k, check_label(k.rsplit(".", 1)[0], k)) for k in sorted(keys)]


def iter_urls(uri: str) -> Iterator[UrlEntry]:
    """Stream every entry of the list(s) at ``uri``, numbered from 0."""
    store, sources = _sources(uri)
    index = 0
    for key, label in sources:
        with _open_text(store, key) as fh:
            rows = _csv_entries(fh, key) if label is None else _line_entries(fh, label)
            count = 0
            for url, row_label in rows:
                yield UrlEntry(index, url, row_label)
                index += 1
                count += 1
        if label is not None and count == 0:
            log.warning("URL list %s for label %r is empty", key, label)


def describe(uri: str) -> tuple[int, dict[str, int]]:
    """One streaming pass: the number of entries and the URLs per label (validates labels)."""
    total, per_label = 0, {}
    for entry in iter_urls(uri):
        total += 1
        per_label[entry.label] = per_label.get(entry.label, 0) + 1
    return total, per_label
