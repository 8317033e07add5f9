"""Fixtures for job tests: a generated shapes dataset and a tiny trained run."""
from __future__ import annotations

import os

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from tests.helpers import TINY


@pytest.fixture(scope="session")
def shapes_dataset(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A flat <label>/ dataset: 4 shape labels x 16 JPEGs of 64px."""
    from headstart.jobs.demo.workflow import generate_shapes

    return generate_shapes(str(tmp_path_factory.mktemp("shapes")), per_label=16)


@pytest.fixture(scope="session")
def trained_run(shapes_dataset: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A published train run of the tiny backbone on ``shapes_dataset``."""
    from headstart.shared.runtime.cli import main

    out = str(tmp_path_factory.mktemp("run") / "model")
    assert main(["train", shapes_dataset, "--out", out, *TINY, "--epochs", "2"]) == 0
    return out
