"""Parameters of the evaluate job."""
from __future__ import annotations

from pydantic import Field

from headstart.shared.runtime.specs import JobSpec


class EvaluateSpec(JobSpec):
    model: str = Field(description="a published train run (folder or URI holding model.keras)",
                       json_schema_extra={"positional": True})
    dataset: str = Field(description="dataset folder or URI", json_schema_extra={"positional": True})
    out: str = Field(description="output folder or URI for the evaluation")
    split: str = Field("test", pattern="^(train|valid|test|all)$",
                       description="split to evaluate: train | valid | test | all")
    batch_size: int = Field(64, ge=1, le=4096, description="images per batch")
    worst: int = Field(24, ge=0, le=500, description="misclassified images shown in the gallery")
    min_side: int = Field(8, ge=1, description="skip images smaller than this (pixels)")
