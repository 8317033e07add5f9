"""Open a published train run: the Keras model, its labels and the spec it was trained with.

What is loaded is checked against the run's manifest first (size and SHA-256), so a
``model.keras`` swapped or damaged after publishing is refused with the file and the
mismatch named; a file that is not a Keras archive, or that Keras' safe mode refuses (a
``Lambda`` layer runs arbitrary code), is one clear line too. All are exit 2.
"""
from __future__ import annotations

import hashlib
import json
import logging
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from headstart.shared.data.datasets import SplitConfig
from headstart.shared.runtime.errors import UserError
from headstart.shared.storage.manifest import open_published
from headstart.shared.storage.store import Store

log = logging.getLogger(__name__)

# The files of a train run: written by jobs/train/outputs.py, read here (one set of names).
MODEL_FILE = "model.keras"
LABELS_FILE = "labels.json"
SPEC_FILE = "spec.yaml"
HISTORY_FILE = "history.json"
CURVES_FILE = "training_curves.png"
METRICS_FILE = "metrics.json"
SKIPPED_FILE = "skipped.csv"
SPLITS_FILE = "splits.csv"


@dataclass
class TrainedModel:
    model: Any                 # keras.Model: raw RGB images -> probabilities
    labels: list[str]
    image_size: int
    meta: dict[str, Any]       # labels.json
    train_spec: dict[str, Any]  # spec.yaml of the train run
    store: Store
    calibration: Any = field(default=None)  # shared.model.calibration.Calibration (identity if none)

    def split_config(self) -> SplitConfig:
        """The split settings the model was trained with, so a flat dataset splits identically."""
        # Any label size passes here: the run already judged them when it trained.
        return SplitConfig.from_spec(self.train_spec, min_per_label=1)


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _check_entry(store: Store, manifest: dict, key: str, size: int, digest: str) -> None:
    """Refuse a file whose size or SHA-256 differs from what its manifest recorded."""
    entry = manifest.get("files", {}).get(key)
    if entry is None:
        return
    if size != entry.get("size") or digest != entry.get("sha256"):
        raise UserError(f"{store.uri}/{key} does not match its manifest: sha256 {digest[:16]}, "
                        f"{size} bytes; manifest.json recorded {str(entry.get('sha256'))[:16]}, "
                        f"{entry.get('size')} bytes. It changed after the run was published: "
                        "restore it or retrain")


def _read_checked(store: Store, manifest: dict, key: str) -> bytes:
    try:
        data = store.read_bytes(key)
    except FileNotFoundError:
        raise UserError(f"{store.uri}/{key} is listed in its manifest but missing") from None
    _check_entry(store, manifest, key, len(data), hashlib.sha256(data).hexdigest())
    return data


def _describe_bytes(path: Path) -> str:
    with open(path, "rb") as fh:
        head = fh.read(8)
    if head.startswith(b"\x89HDF"):
        return "an HDF5 file (legacy .h5 model or weights)"
    if head.startswith(b"PK"):
        return "a damaged or truncated zip"
    return f"unrecognised bytes {head[:4]!r}"


def load_keras_file(path: Path, where: str):
    """Load a ``.keras`` archive in safe mode; anything else is a one-line :class:`UserError`."""
    import keras

    if not zipfile.is_zipfile(path):
        raise UserError(f"{where} is not a Keras archive (a .keras zip): it is {_describe_bytes(path)}")
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise UserError(f"{where} is not a readable Keras archive: {exc}") from None
    if bad is not None or "config.json" not in names:
        raise UserError(f"{where} is not a Keras archive: "
                        + (f"member {bad!r} is corrupt" if bad else "it has no config.json"))
    try:
        return keras.models.load_model(path, safe_mode=True)
    except Exception as exc:  # Keras raises ValueError/TypeError/OSError... for bad archives
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        if "safe_mode" in str(exc) or "Lambda" in str(exc):
            raise UserError(f"{where} was refused by Keras safe mode (it holds a Lambda layer or "
                            f"other code that would run on load): {first}") from None
        raise UserError(f"{where} could not be loaded as a Keras model: {type(exc).__name__}: {first}") from None


def load_trained(uri: str) -> TrainedModel:
    """Load ``model.keras`` from a published train run (local or ``s3://``), verified against
    the run's manifest."""
    store, manifest = open_published(uri)
    if manifest.get("job") != "train" or MODEL_FILE not in manifest.get("files", {}):
        raise UserError(f"{uri!r} is a published {manifest.get('job')!r} run, expected the output "
                        f"of `headstart train` (with {MODEL_FILE})")
    meta = json.loads(_read_checked(store, manifest, LABELS_FILE))
    train_spec = (yaml.safe_load(_read_checked(store, manifest, SPEC_FILE))
                  if store.exists(SPEC_FILE) else {})
    where = f"{store.uri}/{MODEL_FILE}"
    try:
        with store.local_copy(MODEL_FILE) as path:  # S3: a temporary download
            path = Path(path)
            _check_entry(store, manifest, MODEL_FILE, path.stat().st_size, _file_sha256(path))
            model = load_keras_file(path, where)
    except FileNotFoundError:
        raise UserError(f"{where} is listed in its manifest but missing") from None
    log.info("loaded %s (%s, %d labels, %dpx)", uri, meta.get("backbone"), len(meta["labels"]),
             meta["image_size"])
    return TrainedModel(model, list(meta["labels"]), int(meta["image_size"]), meta, train_spec or {},
                        store, load_calibration(store))


def load_calibration(store: Store):
    """The run's ``calibration.json`` (temperature scaling), or the identity for older runs."""
    from headstart.shared.model.calibration import CALIBRATION_FILE, Calibration

    if not store.exists(CALIBRATION_FILE):
        return Calibration()
    try:
        return Calibration.from_json(store.read_text(CALIBRATION_FILE))
    except (ValueError, TypeError, KeyError) as exc:
        raise UserError(f"{store.uri}/{CALIBRATION_FILE} is not a calibration record: {exc}") from None
