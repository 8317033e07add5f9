"""Run outputs: write files first, publish ``manifest.json`` last.

A run directory without a manifest is unpublished (in progress, crashed or interrupted);
readers trust only published runs and verify sizes/hashes on request.
"""
from __future__ import annotations

import hashlib
import json
import logging
import time
from typing import Any

from headstart.shared.runtime.errors import UserError
from headstart.shared.storage.store import Store, open_store

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
FAILURE = "_FAILURE.json"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def to_json(obj: Any) -> str:
    return json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n"


class RunOutput:
    """Collects the files of one run and publishes their manifest last."""

    def __init__(self, store: Store, job: str) -> None:
        self.store = store
        self.job = job
        self.files: dict[str, dict[str, Any]] = {}
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
        self.files[key] = {"size": size, "sha256": digest}

    def write_text(self, key: str, text: str) -> None:
        self.write_bytes(key, text.encode("utf-8"))

    def write_json(self, key: str, obj: Any) -> None:
        self.write_text(key, to_json(obj))

    def unpublish(self) -> None:
        """Remove a previous manifest and failure record so the directory reads as in progress."""
        self.store.delete(MANIFEST)
        self.store.delete(FAILURE)

    def publish(self, **extra: Any) -> dict[str, Any]:
        """Write ``manifest.json`` — the last write of a successful run."""
        manifest = {
            "job": self.job,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "seconds": round(time.time() - self.started, 3),
            "files": dict(sorted(self.files.items())),
            **extra,
        }
        self.store.write_text(MANIFEST, to_json(manifest))
        log.info("published %d files to %s", len(self.files), self.store.uri)
        return manifest


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
