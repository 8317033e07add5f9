"""Parameters of the similarity job."""
from __future__ import annotations

from typing import Literal

from pydantic import Field

from headstart.shared.data.imagesets import ModelImagesSpec


class SimilaritySpec(ModelImagesSpec):
    split: Literal["train", "valid", "test", "all"] = Field("all",
                       description="dataset split(s) to embed: train | valid | test | all (all "
                                   "enables the train/test leakage report)")
    neighbours: int = Field(5, ge=1, le=100, description="nearest neighbours listed per image")
    duplicate_threshold: float = Field(0.98, gt=0, le=1, description="cosine similarity at or above "
                                       "which two images count as near-duplicates")
    leakage_threshold: float = Field(0.95, gt=0, le=1, description="cosine similarity at or above "
                                     "which a pair across splits counts as leakage")
    per_class: int = Field(2, ge=1, le=50, description="images per class in the similarity-matrix figure")
    max_pairs: int = Field(10_000, ge=1, description="most duplicate / leakage pairs listed")
    batch_size: int = Field(64, ge=1, le=4096, description="images per batch")
    block_rows: int | None = Field(None, ge=1, description="rows per block of the all-pairs "
                                   "computation (default: sized to about 64 MiB)")
    min_side: int = Field(8, ge=1, description="skip images smaller than this (pixels)")
