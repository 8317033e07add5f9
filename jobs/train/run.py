"""What one train run carries from loading to publishing (built once in the workflow)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from headstart.jobs.train.spec import TrainSpec
from headstart.shared.data.datasets import DatasetIndex
from headstart.shared.storage.manifest import RunOutput


@dataclass(kw_only=True)
class TrainRun:
    """The resolved spec, where it is written, and the data it trains on."""

    spec: TrainSpec          # fully resolved: auto applied, batch size set
    out: RunOutput
    fingerprint: str         # of the spec as given: checkpoints and the manifest carry it
    index: DatasetIndex
    splits: dict[str, Any]   # split name -> LoadedSplit (decoded pixels)
    decode_s: float
    started: float           # time.monotonic() at the start of the job
    clock: Any = None        # stage.Clock: the run's timing stamps (metrics.json timing)
