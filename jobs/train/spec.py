"""Parameters of the train job."""
from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from shared.images import MAX_PIXELS
from shared.specs import JobSpec


class TrainSpec(JobSpec):
    dataset: str = Field(description="dataset folder or URI (flat <label>/ or train/valid/test)",
                         json_schema_extra={"positional": True})
    out: str = Field(description="output folder or URI for the run")
    backbone: str = Field("resnet50", description="backbone name from the registry")
    weights: str = Field("imagenet", description="imagenet | none | path/URI of a backbone .weights.h5")
    image_size: int | None = Field(None, description="input size in pixels (default: the backbone's)")
    epochs: int = Field(20, ge=1, le=10_000, description="maximum head-training epochs (early stopping ends sooner)")
    batch_size: int = Field(32, ge=1, le=4096, description="images per batch")
    learning_rate: float = Field(1e-3, gt=0, lt=1, description="Adam learning rate of the head")
    patience: int = Field(5, ge=1, description="early-stopping patience in epochs (validation loss)")
    head_width: int = Field(1024, ge=1, description="units of the head's hidden Dense layer")
    dropout: float = Field(0.3, ge=0, lt=1, description="dropout on the feature maps")
    label_smoothing: float = Field(0.0, ge=0, lt=1, description="label smoothing of the loss")
    fast_path: bool = Field(True, description="cache base features once instead of every epoch")
    augment_views: int = Field(0, ge=0, le=32, description="augmented views cached per training image")
    fine_tune_layers: int = Field(0, ge=0, description="unfreeze the top N base layers in a second phase")
    fine_tune_epochs: int = Field(5, ge=1, description="maximum epochs of the fine-tuning phase")
    fine_tune_lr: float = Field(1e-5, gt=0, lt=1, description="learning rate of the fine-tuning phase")
    valid_fraction: float = Field(0.15, ge=0, lt=0.9, description="validation share of a flat dataset")
    test_fraction: float = Field(0.15, ge=0, lt=0.9, description="test share of a flat dataset")
    seed: int = Field(1337, description="seed for splits, shuffles and initialisation")
    max_per_label: int | None = Field(None, ge=1, description="use at most this many images per label")
    min_per_label: int = Field(2, ge=1, description="refuse labels with fewer usable images")
    min_side: int = Field(8, ge=1, description="skip images smaller than this (pixels)")
    max_pixels: int = Field(MAX_PIXELS, ge=1, description="refuse images with more pixels (bombs)")
    overwrite: bool = Field(False, description="replace a published run at --out")
    cache_dir: str | None = Field(None, description="local folder for large memory-mapped caches")

    @field_validator("weights")
    @classmethod
    def _weights(cls, value: str) -> str:
        from shared.backbones import check_weights_arg
        from shared.errors import UserError

        try:
            return check_weights_arg(value)
        except UserError as exc:
            raise ValueError(str(exc)) from None

    @model_validator(mode="after")
    def _fractions(self) -> "TrainSpec":
        if self.valid_fraction + self.test_fraction >= 0.9:
            raise ValueError("valid_fraction + test_fraction must be below 0.9, got "
                             f"{self.valid_fraction} + {self.test_fraction}")
        return self
