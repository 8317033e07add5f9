"""Parameters of the predict job and of its merge step."""
from __future__ import annotations

from typing import Literal

from pydantic import Field

from headstart.shared.data.imagesets import ModelImagesSpec
from headstart.shared.data.sharding import ShardSpec
from headstart.shared.runtime.specs import JobSpec


class PredictSpec(ModelImagesSpec, ShardSpec):
    split: Literal["train", "valid", "test", "all"] = Field("all", description="when IMAGES is a "
                       "labelled dataset: the split to predict, split as the model's train run split it")
    top_k: int = Field(3, ge=1, le=100, description="labels and probabilities per image (capped "
                       "at the number of labels)")
    min_confidence: float = Field(0.5, ge=0, le=1, description="flag images whose calibrated "
                                  "confidence is below this as low_confidence")
    tta: bool = Field(False, description="average the probabilities of each image and its "
                      "left-right mirror (test-time augmentation; twice the forward passes)")
    calibrate: bool = Field(True, description="apply the run's calibration.json (temperature "
                            "scaling) to the confidence column")
    batch_size: int = Field(64, ge=1, le=4096, description="images per forward pass")
    workers: int | None = Field(None, ge=1, le=256, description="decode threads (default: 2 per "
                                "usable CPU, at most 16)")
    gallery_per_label: int = Field(24, ge=0, le=500, description="least confident images shown "
                                   "per predicted label in report.html")
    min_side: int = Field(8, ge=1, description="skip images smaller than this (pixels)")


class PredictMergeSpec(JobSpec):
    out: str = Field(description="the --out of the sharded predict runs (holds shard-*-of-*/); "
                     "the merged outputs are written there")
    gallery_per_label: int = Field(24, ge=0, le=500, description="least confident images shown "
                                   "per predicted label in the merged report.html")
