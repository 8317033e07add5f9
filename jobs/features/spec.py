"""Parameters of the features job (the backbone and split options mean what train's do)."""
from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from headstart.shared.data.datasets import SplitConfig
from headstart.shared.data.images import MAX_PIXELS
from headstart.shared.data.sharding import ShardSpec
from headstart.shared.data.splits import check_fractions
from headstart.shared.runtime.specs import weights_value


class FeaturesSpec(ShardSpec):
    dataset: str = Field(description="dataset folder or URI (flat <label>/ or train/valid/test)",
                         json_schema_extra={"positional": True})
    out: str = Field(description="output prefix (folder or URI): shard-I-of-N/ folders go here; "
                     "pass it to train --features")
    backbone: str = Field("resnet50", description="backbone name from the registry (as train's)")
    weights: str = Field("imagenet", description="imagenet | none | path/URI of a backbone .weights.h5")
    image_size: int | None = Field(None, description="input size in pixels (default: the backbone's)")
    spatial: bool = Field(False, description="also store the spatial feature maps (float16; "
                          "train --recipe reference needs them, the default recipe does not)")
    accelerate: Literal["auto", "on", "off"] = Field(
        "auto", description="mixed precision for the frozen pass: auto = on when a GPU is visible")
    batch_size: int = Field(64, ge=1, le=4096, description="images per forward pass")
    workers: int | None = Field(None, ge=1, le=256, description="decode threads (default: 2 per "
                                "usable CPU, at most 16)")
    overwrite: bool = Field(False, description="replace a published shard computed with other settings")
    # The split settings must be train's: the shards carry the split train will use.
    valid_fraction: float = Field(SplitConfig.valid_fraction, ge=0, lt=1,
                                  description="validation share of a flat dataset")
    test_fraction: float = Field(SplitConfig.test_fraction, ge=0, lt=1, description="test share of a flat dataset")
    seed: int = Field(SplitConfig.seed, description="seed for splits (and a weights=none backbone)")
    max_per_label: int | None = Field(SplitConfig.max_per_label, ge=1,
                                      description="use at most this many images per label")
    min_per_label: int = Field(SplitConfig.min_per_label, ge=1, description="refuse labels with fewer images")
    min_side: int = Field(8, ge=1, description="skip images smaller than this (pixels)")
    max_pixels: int = Field(MAX_PIXELS, ge=1, description="refuse images with more pixels (bombs)")

    @field_validator("weights")
    @classmethod
    def _weights(cls, value: str) -> str:
        return weights_value(value)

    @model_validator(mode="after")
    def _fractions(self) -> FeaturesSpec:
        check_fractions(self.valid_fraction, self.test_fraction)
        return self
