"""Open a published train run: the Keras model, its labels and the spec it was trained with."""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
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


def load_trained(uri: str) -> TrainedModel:
    """Load ``model.keras`` from a published train run (local or ``s3://``)."""
    import keras

    store, manifest = open_published(uri)
    if manifest.get("job") != "train" or MODEL_FILE not in manifest.get("files", {}):
        raise UserError(f"{uri!r} is a published {manifest.get('job')!r} run, expected the output "
                        f"of `headstart train` (with {MODEL_FILE})")
    meta = json.loads(store.read_text(LABELS_FILE))
    train_spec = yaml.safe_load(store.read_text(SPEC_FILE)) if store.exists(SPEC_FILE) else {}
    with store.local_copy(MODEL_FILE) as path:  # S3: a temporary download
        model = keras.models.load_model(path)
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
