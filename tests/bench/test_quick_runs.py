"""Benchmarks whose ``--quick`` run takes seconds, run as they are documented (``make
bench-quick``): each exits 0 and prints its one JSON line last. The feature-shard benchmark
once wrote shards without the resize tag that ``train --features`` checks, and failed."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.mark.parametrize("name", ["features_scale"])
def test_quick_run_ends_with_its_json_line(name: str) -> None:
    done = subprocess.run([sys.executable, str(BENCH / f"{name}.py"), "--quick"], capture_output=True,
                          text=True, timeout=300, cwd=BENCH.parent)
    assert done.returncode == 0, done.stderr[-3000:]
    last = json.loads(done.stdout.strip().splitlines()[-1])
    assert last["bench"] == name and last["quick"] is True
