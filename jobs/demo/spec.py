"""Parameters of the demo command."""
from __future__ import annotations

from pydantic import Field

from headstart.shared.runtime.specs import JobSpec


class DemoSpec(JobSpec):
    out: str = Field("runs/demo", description="folder for the demo's dataset, model and report")
    per_label: int = Field(60, ge=5, description="images per label in the demo dataset")
    shared_dir: str | None = Field(None, description="handed material folder (default: ../shared if present)")
