"""Feature shards: the frozen backbone's outputs for a dataset, cached in a store.

``headstart features`` runs the frozen base once per image of its shard and writes, under
``OUT/shard-0000I-of-0000N/`` (``OUT`` itself when unsharded):

* ``pooled.npy``  ``(n, 2, c)`` float16: per channel [mean, mean of squares] of the maps;
* ``spatial.npy`` ``(n, h, w, c)`` float16, with ``--spatial`` (heads that do not start
  with global average pooling, i.e. ``--recipe reference``, need the maps);
* ``rows.csv``    split, position, key, label of each row: ``position`` is the image's index
  in its split as the dataset lists it, so a reader restores the order training from images
  sees (the head's folds and shuffles depend on it);
* ``skipped.csv`` and ``features.json`` (backbone, image size, weights, a digest of the
  backbone's weights, labels, split settings, counts); ``manifest.json`` last.

Arrays are written to local scratch row by row and uploaded once complete, so memory stays
flat whatever the shard size. :func:`read_feature_set` joins every shard of a prefix.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import os
import tempfile
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from headstart.shared.data.datasets import DatasetIndex, Item
from headstart.shared.data.images import Skipped
from headstart.shared.data.scratch import allocate
from headstart.shared.data.sharding import published_shards
from headstart.shared.runtime.errors import UserError
from headstart.shared.storage.manifest import MANIFEST, RunOutput
from headstart.shared.storage.store import Store, open_store

log = logging.getLogger(__name__)

META_FILE = "features.json"
ROWS_FILE = "rows.csv"
POOLED_FILE = "pooled.npy"
SPATIAL_FILE = "spatial.npy"
FORMAT = 1
# What must be equal for two runs to mean the same features (checked by the reader and train).
BACKBONE_KEYS = ("backbone", "image_size", "weights", "preprocess", "resize")
SPLIT_KEYS = ("valid_fraction", "test_fraction", "seed", "max_per_label", "min_per_label",
              "min_side", "max_pixels")


def weights_digest(model: Any) -> str:
    """sha256 of a model's weights (shapes and float32 values, in order): two backbones with
    the same digest compute the same features."""
    digest = hashlib.sha256()
    for w in model.get_weights():
        arr = np.ascontiguousarray(w, dtype=np.float32)
        digest.update(str(arr.shape).encode())
        digest.update(arr.tobytes())
    return digest.hexdigest()[:32]


def pooled_stats(maps: np.ndarray) -> np.ndarray:
    """``(n, h, w, c)`` maps -> ``(n, 2, c)`` float32 [mean, mean of squares] per channel,
    computed from the float16-rounded maps (what the in-process feature cache holds)."""
    m = np.asarray(maps, np.float16).astype(np.float32)
    return np.stack([m.mean(axis=(1, 2)), np.square(m).mean(axis=(1, 2))], axis=1)


class _NpyRows:
    """An ``.npy`` file written row block by row block on local disk (the row count is
    known only at the end: the header is written then, the body streamed behind it)."""

    def __init__(self, directory: str, name: str, row_shape: tuple[int, ...]) -> None:
        self.row_shape, self.n = row_shape, 0
        self.body_path = os.path.join(directory, name + ".body")
        self.path = os.path.join(directory, name)
        self._fh = open(self.body_path, "wb")  # noqa: SIM115 - closed by finish()

    def add(self, rows: np.ndarray) -> None:
        self._fh.write(np.ascontiguousarray(rows, dtype=np.float16).tobytes())
        self.n += len(rows)

    def finish(self) -> tuple[int, str]:
        """Write the final .npy; returns (size, sha256)."""
        self._fh.close()
        header = io.BytesIO()
        np.lib.format.write_array_header_1_0(header, {
            "descr": np.lib.format.dtype_to_descr(np.dtype(np.float16)), "fortran_order": False,
            "shape": (self.n, *self.row_shape)})
        digest = hashlib.sha256(header.getvalue())
        size = len(header.getvalue())
        with open(self.path, "wb") as out, open(self.body_path, "rb") as body:
            out.write(header.getvalue())
            while chunk := body.read(8 << 20):
                digest.update(chunk)
                out.write(chunk)
                size += len(chunk)
        os.remove(self.body_path)
        return size, digest.hexdigest()


class ShardWriter:
    """Collects one shard's rows (features, keys, labels) and publishes it, manifest last."""

    def __init__(self, out: RunOutput, channels: int, spatial_shape: tuple[int, ...] | None) -> None:
        self.out = out
        self._tmp = tempfile.TemporaryDirectory(prefix="headstart-features-")
        self.pooled = _NpyRows(self._tmp.name, POOLED_FILE, (2, channels))
        self.spatial = _NpyRows(self._tmp.name, SPATIAL_FILE, spatial_shape) if spatial_shape else None
        self.rows: list[tuple[str, int, str, str]] = []
        self.skipped: list[tuple[str, Skipped]] = []

    def add(self, rows: list[tuple[str, int, Item]], maps: np.ndarray) -> None:
        """Rows ``(split, position, item)`` and their ``(n, h, w, c)`` float32 maps."""
        if not rows:
            return
        self.pooled.add(pooled_stats(maps))
        if self.spatial is not None:
            self.spatial.add(maps)
        self.rows.extend((s, p, item.key, item.label) for s, p, item in rows)

    def skip(self, split: str, skipped: Skipped) -> None:
        self.skipped.append((split, skipped))

    def publish(self, meta: dict[str, Any], **extra: Any) -> dict[str, Any]:
        """Upload the arrays, rows.csv, skipped.csv and features.json; manifest last."""
        from headstart.shared.data.loading import skipped_csv

        try:
            for arrays in (self.pooled, self.spatial):
                if arrays is not None:
                    size, digest = arrays.finish()
                    name = os.path.basename(arrays.path)
                    self.out.store.upload_file(name, arrays.path)
                    self.out.record(name, size, digest)
                    os.remove(arrays.path)
        finally:
            self._tmp.cleanup()
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(["split", "position", "key", "label"])
        writer.writerows(self.rows)
        self.out.write_text(ROWS_FILE, buf.getvalue())
        groups: dict[str | None, list[Skipped]] = {}
        for split, s in self.skipped:
            groups.setdefault(split, []).append(s)
        self.out.write_text("skipped.csv", skipped_csv(groups))
        counts: dict[str, int] = {}
        for split, *_ in self.rows:
            counts[split] = counts.get(split, 0) + 1
        meta = {**meta, "format": FORMAT, "rows": len(self.rows), "counts": counts,
                "skipped": len(self.skipped), "spatial": self.spatial is not None,
                "pooled_shape": list(self.pooled.row_shape),
                "spatial_shape": list(self.spatial.row_shape) if self.spatial else None}
        self.out.write_json(META_FILE, meta)
        return self.out.publish(images=len(self.rows), skipped=len(self.skipped), **extra)


# --- reading ------------------------------------------------------------------------------


@dataclass
class FeatureSet:
    """Every shard under one prefix, joined: per split, the rows in the dataset's order."""

    uri: str
    meta: dict[str, Any]                       # features.json of shard 0 (all agree)
    index: DatasetIndex                        # the dataset as the shards split it (kept rows)
    pooled: dict[str, np.ndarray] = field(default_factory=dict)   # split -> (n, c) float16 pooled means
    spatial: dict[str, np.ndarray] = field(default_factory=dict)  # split -> (n, h, w, c), if stored
    labels: dict[str, np.ndarray] = field(default_factory=dict)   # split -> (n,) int32
    skipped: dict[str, list[Skipped]] = field(default_factory=dict)


def find_shards(root: Store) -> list[Store]:
    """The published shard folders of ``root`` (one count, none missing), or ``[root]`` when
    ``root`` is itself one unsharded features run."""
    names = published_shards(root.list(), root.uri, "feature shard(s)")
    if names:
        return [root.child(name) for name in names]
    if root.exists(MANIFEST) and root.exists(META_FILE):
        return [root]
    raise UserError(f"no published feature shards under {root.uri!r}: expected the --out of "
                    "`headstart features` (shard-*-of-*/manifest.json, or manifest.json + "
                    f"{META_FILE})")


def _read_meta(store: Store) -> dict[str, Any]:
    manifest = json.loads(store.read_text(MANIFEST))
    if manifest.get("job") != "features":
        raise UserError(f"{store.uri} is a {manifest.get('job')!r} run, expected `headstart features` output")
    meta = json.loads(store.read_text(META_FILE))
    if meta.get("format") != FORMAT:
        raise UserError(f"{store.uri}/{META_FILE} has format {meta.get('format')!r}; this Headstart "
                        f"reads format {FORMAT}: rerun `headstart features`")
    meta["_files"] = manifest.get("files", {})
    return meta


def _same(metas: list[dict[str, Any]], shards: list[Store]) -> None:
    first = metas[0]
    for meta, store in zip(metas[1:], shards[1:]):
        for key in ("dataset", "labels", "layout", "digest", "pooled_shape", *BACKBONE_KEYS, *SPLIT_KEYS):
            if meta.get(key) != first.get(key):
                raise UserError(f"feature shards disagree on {key}: {shards[0].uri} has "
                                f"{first.get(key)!r}, {store.uri} has {meta.get(key)!r}")


def _fill(store: Store, name: str, meta: dict[str, Any], targets: dict[str, tuple]) -> None:
    """Copy the rows of one shard's ``name`` array into ``targets``: split -> (out, dest, src)."""
    expected = meta["_files"].get(name, {}).get("size")
    with store.local_copy(name) as path:  # remote: a temporary download, gone on exit
        if expected is not None and os.path.getsize(path) != expected:
            raise UserError(f"{store.uri}/{name} is {os.path.getsize(path)} bytes, its manifest "
                            f"says {expected}: the shard is damaged; rerun it")
        arr = np.load(path, mmap_mode="r")
        for out, dest, src in targets.values():
            if len(src):  # src ascends: the shard wrote its rows in split order
                out[dest] = arr[src, 0] if out.ndim == arr.ndim - 1 else arr[src]


def read_feature_set(uri: str, *, spatial: bool, cache_dir: str | None = None) -> FeatureSet:
    """Join the shards under ``uri``; ``spatial``: also load the maps (refused if absent)."""
    shards = find_shards(open_store(uri))
    metas = [_read_meta(s) for s in shards]
    _same(metas, shards)
    meta = metas[0]
    flat = [st.uri for st, m in zip(shards, metas) if not m.get("spatial")]
    if spatial and flat:
        raise UserError(f"feature shard {flat[0]} holds pooled features only; this head "
                        "trains on spatial maps (--recipe reference): rerun `headstart features` "
                        "with --spatial")
    rows: dict[str, list[tuple[int, int, int, str, str]]] = {}
    for s, (store, m) in enumerate(zip(shards, metas)):
        reader = csv.reader(io.StringIO(store.read_text(ROWS_FILE)))
        next(reader)
        n = 0
        for r, (split, position, key, label) in enumerate(reader):
            rows.setdefault(split, []).append((int(position), s, r, key, label))
            n += 1
        if n != m.get("rows"):
            raise UserError(f"{store.uri}/{ROWS_FILE} has {n} rows, its {META_FILE} says {m.get('rows')}")
    labels = list(meta["labels"])
    at = {label: i for i, label in enumerate(labels)}
    index = DatasetIndex(meta["dataset"], meta["layout"], labels)
    fs = FeatureSet(uri=open_store(uri).uri, meta=meta, index=index)
    order = {name: i for i, name in enumerate(("train", "valid", "test"))}
    plan: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # split -> (shard, row) per output row
    for split in sorted(rows, key=lambda name: order.get(name, 9)):
        ordered = sorted(rows[split])  # the dataset's order, as training from images sees it
        index.splits[split] = [Item(key, label) for _, _, _, key, label in ordered]
        fs.labels[split] = np.asarray([at[label] for *_, label in ordered], np.int32)
        plan[split] = (np.asarray([row[1] for row in ordered], np.int64),
                       np.asarray([row[2] for row in ordered], np.int64))
    # Only the pooled means are kept (the default head's input): half the memory of the stats.
    arrays = [(POOLED_FILE, fs.pooled, meta["pooled_shape"][1:])]
    if spatial:
        arrays.append((SPATIAL_FILE, fs.spatial, meta["spatial_shape"]))
    for name, into, row_shape in arrays:
        for split, (shard_of_row, _) in plan.items():
            into[split] = allocate((len(shard_of_row), *row_shape), np.float16, cache_dir,
                                   f"{name.split('.')[0]}-{split}")
        for s, (store, m) in enumerate(zip(shards, metas)):
            targets = {}
            for split, (shard_of_row, row_in_shard) in plan.items():
                dest = np.nonzero(shard_of_row == s)[0]
                targets[split] = (into[split], dest, row_in_shard[dest])
            _fill(store, name, m, targets)
    for store in shards:
        _read_skipped(store, fs.skipped)
    log.info("feature shards: %d shard(s) under %s, %s", len(shards), fs.uri,
             ", ".join(f"{k} {len(v)}" for k, v in fs.labels.items()))
    return fs


def _read_skipped(store: Store, into: dict[str, list[Skipped]]) -> None:
    reader = csv.DictReader(io.StringIO(store.read_text("skipped.csv")))
    for row in reader:
        into.setdefault(row["split"], []).append(
            Skipped(row["key"], row["label"], row["status"], row["reason"]))


def check_matches(meta: dict[str, Any], wanted: dict[str, Any], where: str) -> None:
    """Raise a one-line :class:`UserError` naming the first setting in ``wanted`` that the
    shards were computed with differently."""
    for key, value in wanted.items():
        have = meta.get(key)
        if have != value:
            raise UserError(f"the feature shards at {where!r} were computed with {key}={have!r}, "
                            f"this run asks for {key}={value!r}: rerun `headstart features` with "
                            "the same settings or change this one")
