"""Read image-URL lists, streamed, from a local path or ``s3://``.

Two layouts:

* one CSV file with ``url`` and ``label`` columns (any order, extra columns ignored);
* a folder / prefix of ``<label>.csv`` or ``<label>.txt`` files with one URL per line (what a
  browser-console snippet on an image-search page saves). A ``url`` header line is skipped;
  blank lines and ``#`` comments are ignored.

Entries are numbered in a stable order (files by name, then line order); the number is the
URL's identity for sharding, resuming and ordering the report.

Bad lists fail with one line naming the file and line (a non-UTF-8 byte, an oversized field,
a label that cannot be a folder name), found by :func:`describe` before anything downloads.
A CSV row with more fields than its header (an unquoted comma in a URL) is no error but an
entry with ``problem`` set, which the scrape records as ``bad_row``.
"""
from __future__ import annotations

import csv
import logging
import re
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import BinaryIO, Iterable, Iterator

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
    problem: str = ""  # set for a malformed row: recorded as ``bad_row``, never fetched


MAX_LABEL_BYTES = 255  # one path component on ext4/xfs/APFS/NTFS (datasets get copied locally)
# Device names Windows refuses as file or folder names, with or without an extension.
_RESERVED = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(10)), *(f"lpt{i}" for i in range(10))}
MAX_FIELD = 64 * 1024  # longest CSV field accepted (csv's own default is 128 KiB)
MAX_LINE = 1 << 20  # longest line read (so a file without newlines cannot fill memory)


def check_label(label: str, where: str) -> str:
    """A label becomes a folder name on any store a dataset may be copied to: refuse empty,
    hidden, ``..``, path-like, over-long (> 255 bytes) and reserved (``CON``, ``NUL``, ...) names."""
    label = label.strip()
    if not label or label.startswith(".") or not _LABEL_RE.match(label):
        raise UserError(f"invalid label {label!r} in {where}: expected a folder name "
                        "(no '/', '\\', leading '.' or control characters)")
    size = len(label.encode("utf-8"))
    if size > MAX_LABEL_BYTES:
        raise UserError(f"invalid label {label[:40]!r}... in {where}: {size} bytes long; a folder "
                        f"name holds at most {MAX_LABEL_BYTES} bytes (UTF-8)")
    if label.split(".", 1)[0].lower() in _RESERVED or label.endswith((" ", ".")):
        raise UserError(f"invalid label {label!r} in {where}: a reserved device name or a trailing "
                        "'.' cannot be a folder name on Windows; rename the label")
    return label


@contextmanager
def _open_binary(store: Store, key: str) -> Iterator[BinaryIO]:
    """A byte stream over one object, without reading it all into memory."""
    with ExitStack() as stack:
        try:
            raw = stack.enter_context(store.open(key))
        except FileNotFoundError:
            raise UserError(f"URL list not found: {join(store.uri, key)}") from None
        yield raw


def _guess_encoding(raw: bytes) -> str:
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")) or raw[:200].count(b"\0") > 10:
        return "UTF-16"
    return "Latin-1 / Windows-1252"


def _text_lines(fh: BinaryIO, where: str) -> Iterator[str]:
    """Decode line by line, so a bad byte is reported with its line (and a likely encoding)."""
    for lineno, raw in enumerate(iter(lambda: fh.readline(MAX_LINE + 1), b""), start=1):
        if len(raw) > MAX_LINE:
            raise UserError(f"URL list {where} line {lineno} is longer than {MAX_LINE} bytes; "
                            "expected one URL per line")
        if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]
        try:
            yield raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise UserError(f"URL list {where} is not UTF-8: line {lineno} has byte "
                            f"0x{raw[exc.start]:02x} at column {exc.start + 1} (it looks like "
                            f"{_guess_encoding(raw)}); save the file as UTF-8") from None




def _csv_rows(lines: Iterable[str], where: str) -> Iterator[tuple[int, list[str]]]:
    """(line number, fields) with csv's errors (an oversized field, a NUL) as one-line errors."""
    reader = csv.reader(lines)
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise UserError(f"URL list {where} line {reader.line_num}: {exc} (fields may hold "
                            f"at most {MAX_FIELD} characters)") from None
        if any(len(cell) > MAX_FIELD for cell in row):
            raise UserError(f"URL list {where} line {reader.line_num}: a field of "
                            f"{max(map(len, row))} characters; fields may hold at most {MAX_FIELD}")
        yield reader.line_num, row


def _csv_entries(lines: Iterable[str], where: str) -> Iterator[tuple[str, str, str]]:
    rows = _csv_rows(lines, where)
    header = [h.strip().lower() for h in next(rows, (0, []))[1]]
    if "url" not in header or "label" not in header:
        raise UserError(f"URL list {where} must have 'url' and 'label' columns; found {header[:10]}")
    iu, il = header.index("url"), header.index("label")
    for lineno, row in rows:
        if not row or not any(cell.strip() for cell in row):
            continue
        if len(row) <= max(iu, il):
            raise UserError(f"line {lineno} of {where} has {len(row)} fields; expected url and label")
        if len(row) > len(header):
            # An unquoted comma in a URL shifts every later column: the label is not trustworthy.
            yield (",".join(row)[:2000], "", f"line {lineno} of {where} has {len(row)} fields but "
                   f"the header has {len(header)} (an unquoted ',' in a URL?); quote such URLs")
            continue
        yield row[iu].strip(), check_label(row[il], f"{where} line {lineno}"), ""


def _line_entries(fh: Iterable[str], label: str) -> Iterator[tuple[str, str, str]]:
    for n, line in enumerate(fh):
        url = line.strip()
        if n == 0 and url.lower() in ("url", "urls", "\"url\""):
            continue
        if url and not url.startswith("#"):
            # A one-column CSV may quote its values.
            yield (url[1:-1] if len(url) > 1 and url[0] == url[-1] == '"' else url), label, ""


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
        with _open_binary(store, key) as fh:
            lines = _text_lines(fh, key)
            rows = _csv_entries(lines, key) if label is None else _line_entries(lines, label)
            count = 0
            for url, row_label, problem in rows:
                yield UrlEntry(index, url, row_label, problem)
                index += 1
                count += 1
        if label is not None and count == 0:
            log.warning("URL list %s for label %r is empty", key, label)


def describe(uri: str) -> tuple[int, dict[str, int]]:
    """One streaming pass: the number of entries and the URLs per label (validates the whole
    list, so a bad line fails the job before any download). Malformed rows count under ``""``."""
    total, per_label = 0, dict[str, int]()
    for entry in iter_urls(uri):
        total += 1
        per_label[entry.label] = per_label.get(entry.label, 0) + 1
    return total, per_label
