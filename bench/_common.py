"""Helpers shared by the benchmarks: locating handed material, sample data, JSON output."""
from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SHARED = Path(os.environ.get("HEADSTART_SHARED", ROOT.parent / "shared"))  # worktrees: set it
FLOWERS = SHARED / "data" / "flowers5"
MOBILENET = SHARED / "models" / "mobilenetv2_160_backbone.weights.h5"


def have_material() -> bool:
    return FLOWERS.is_dir() and MOBILENET.is_file()


def sample_dataset(per_label: int) -> tuple[str, str]:
    """(dataset URI, description): flowers5 when handed material is present, else shapes."""
    if FLOWERS.is_dir():
        return str(FLOWERS), "flowers5"
    from headstart.jobs.demo.workflow import generate_shapes

    return generate_shapes(tempfile.mkdtemp(prefix="bench-shapes-"), per_label), "generated shapes"


def quiet() -> None:
    from headstart.shared.runtime.logs import setup_logging

    setup_logging("WARNING")
    logging.getLogger("bench").setLevel("INFO")


def emit(result: dict) -> None:
    """Print the one JSON line every benchmark ends with."""
    print(json.dumps(result, sort_keys=True), flush=True)
