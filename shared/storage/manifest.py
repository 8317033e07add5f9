"""Run outputs: write files first, publish ``manifest.json`` last.

A run directory without a manifest is unpublished (in progress, crashed or interrupted);
readers trust only published runs and verify sizes/hashes on request.
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
import sqlite3
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any, Iterator

from headstart.shared.runtime.errors import UserError
from headstart.shared.storage.store import Store, open_store

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
FAILURE = "_FAILURE.json"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def to_json(obj: Any) -> str:
    return json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n"


class FileRecords(Mapping[str, dict[str, Any]]):
    """The ``{key: {"size", "sha256"}}`` entries of a run, sorted by key when iterated.

    Small runs keep them in a dict; past ``spill_at`` entries they move to SQLite in a
    temporary folder (a dataset of a million images lists a million files), so memory stays
    flat in the number of files. A key recorded twice keeps its last entry, as a dict would.
    """

    _FLUSH = 2048  # records inserted per transaction
    _FETCH = 1000  # records read per batch when streamed

    def __init__(self, spill_at: int = 4096) -> None:
        self.spill_at = spill_at
        self._dict: dict[str, tuple[int, str]] = {}
        self._pending: list[tuple[str, int, str]] = []
        self._db: sqlite3.Connection | None = None
        self._tmp: tempfile.TemporaryDirectory | None = None

    @property
    def spilled(self) -> bool:
        return self._db is not None

    def add(self, key: str, size: int, digest: str) -> None:
        if self._db is None:
            self._dict[key] = (int(size), str(digest))
            if len(self._dict) > self.spill_at:
                self._spill()
            return
        self._pending.append((key, int(size), str(digest)))
        if len(self._pending) >= self._FLUSH:
            self._flush()

    def _spill(self) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="headstart-manifest-")
        self._db = sqlite3.connect(Path(self._tmp.name) / "files.sqlite", isolation_level=None)
        self._db.executescript("PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF; PRAGMA cache_size=-2000; "
                               "PRAGMA temp_store=FILE; CREATE TABLE files (key TEXT PRIMARY KEY, "
                               "size INTEGER, sha256 TEXT) WITHOUT ROWID;")
        self._pending = [(k, size, digest) for k, (size, digest) in self._dict.items()]
        self._dict = {}
        self._flush()

    def _flush(self) -> None:
        if self._db is None or not self._pending:
            return
        self._db.execute("BEGIN")
        self._db.executemany("INSERT OR REPLACE INTO files VALUES (?, ?, ?)", self._pending)
        self._db.execute("COMMIT")
        self._pending = []

    def __getitem__(self, key: str) -> dict[str, Any]:
        if self._db is None:
            size, digest = self._dict[key]
        else:
            self._flush()
            row = self._db.execute("SELECT size, sha256 FROM files WHERE key = ?", (key,)).fetchone()
            if row is None:
                raise KeyError(key)
            size, digest = row
        return {"size": size, "sha256": digest}

    def __len__(self) -> int:
        if self._db is None:
            return len(self._dict)
        self._flush()
        return self._db.execute("SELECT COUNT(*) FROM files").fetchone()[0]

    def __iter__(self) -> Iterator[str]:
        return (key for key, _, _ in self.entries())

    def entries(self) -> Iterator[tuple[str, int, str]]:
        """(key, size, sha256) in key order, streamed. SQLite's BINARY collation compares
        UTF-8 bytes, which orders like Python's code-point ``sorted``."""
        if self._db is None:
            for key in sorted(self._dict):
                yield (key, *self._dict[key])
            return
        self._flush()
        cursor = self._db.cursor()  # its own cursor: lookups may run while this one streams
        cursor.execute("SELECT key, size, sha256 FROM files ORDER BY key")
        while batch := cursor.fetchmany(self._FETCH):
            yield from batch

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None


def write_manifest_json(fh: IO[str], header: dict[str, Any], files: FileRecords) -> None:
    """Write ``to_json({**header, "files": files})`` to ``fh`` byte for byte, the file list
    streamed one entry at a time (``header`` wins for a key it also holds, as ``**extra`` did)."""
    keys = sorted({*header, "files"})
    fh.write("{")
    for n, name in enumerate(keys):
        fh.write(("," if n else "") + "\n  " + json.dumps(name) + ": ")
        if name != "files" or name in header:
            fh.write(json.dumps(header[name], indent=2, sort_keys=True, default=str).replace("\n", "\n  "))
            continue
        first = True
        for key, size, digest in files.entries():
            fh.write(("{" if first else ",") + "\n    " + json.dumps(key) + ': {\n      "sha256": '
                     + json.dumps(digest) + ',\n      "size": ' + json.dumps(size) + "\n    }")
            first = False
        fh.write("{}" if first else "\n  }")
    fh.write("\n}\n")


class RunOutput:
    """Collects the files of one run and publishes their manifest last."""

    def __init__(self, store: Store, job: str) -> None:
        self.store = store
        self.job = job
        self.files = FileRecords()
        self.started = time.time()

    @property
    def uri(self) -> str:
        return self.store.uri

    def write_bytes(self, key: str, data: bytes) -> None:
        """Write one output file and record its size and sha256."""
        self.store.write_bytes(key, data)
        self.record(key, len(data), sha256(data))

    def record(self, key: str, size: int, digest: str) -> None:
        """List a file already in the store whose size and sha256 are known (no re-read)."""
        self.files.add(key, size, digest)

    def write_text(self, key: str, text: str) -> None:
        self.write_bytes(key, text.encode("utf-8"))

    def write_json(self, key: str, obj: Any) -> None:
        self.write_text(key, to_json(obj))

    def unpublish(self) -> None:
        """Remove a previous manifest and failure record so the directory reads as in progress."""
        self.store.delete(MANIFEST)
        self.store.delete(FAILURE)

    def publish(self, **extra: Any) -> dict[str, Any]:
        """Write ``manifest.json`` — the last write of a successful run. Returns the manifest;
        its ``files`` is this run's :class:`FileRecords` (a mapping, streamed from disk for
        large runs). A large manifest is written to a local temporary file one entry at a
        time and uploaded as one object, so it is never whole in memory."""
        header = {"job": self.job, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                  "seconds": round(time.time() - self.started, 3), **extra}
        if not self.files.spilled:
            text = io.StringIO()
            write_manifest_json(text, header, self.files)
            self.store.write_text(MANIFEST, text.getvalue())
        else:
            with tempfile.TemporaryDirectory(prefix="headstart-manifest-") as tmp:
                path = Path(tmp) / MANIFEST
                with open(path, "w", encoding="utf-8") as fh:
                    write_manifest_json(fh, header, self.files)
                self.store.upload_file(MANIFEST, path)
        log.info("published %d files to %s", len(self.files), self.store.uri)
        return {**header, "files": self.files} if "files" not in extra else header


def is_published(store: Store) -> bool:
    return store.exists(MANIFEST)


def read_manifest(store: Store, verify: bool = False) -> dict[str, Any]:
    """Read a run's manifest; raise :class:`UserError` when the run is not published."""
    if not store.exists(MANIFEST):
        hint = " (it failed: see _FAILURE.json)" if store.exists(FAILURE) else ""
        raise UserError(
            f"{store.uri} is not a published run: it has no {MANIFEST}{hint}. "
            "Expected the output folder of a completed job."
        )
    try:
        manifest = json.loads(store.read_text(MANIFEST))
    except ValueError as exc:
        raise UserError(f"{store.uri}/{MANIFEST} is not valid JSON: {exc}") from None
    if verify:
        for key, meta in manifest.get("files", {}).items():
            try:
                data = store.read_bytes(key)
            except FileNotFoundError:
                raise UserError(f"{store.uri}/{key} is listed in its manifest but missing") from None
            if len(data) != meta["size"] or sha256(data) != meta["sha256"]:
                raise UserError(f"{store.uri}/{key} does not match its manifest entry")
    return manifest


def open_published(uri: str, verify: bool = False) -> tuple[Store, dict[str, Any]]:
    """Open a published run directory and return (store, manifest)."""
    store = open_store(uri)
    return store, read_manifest(store, verify=verify)
