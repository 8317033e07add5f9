"""Parameters of the train job."""
from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from headstart.shared.data.datasets import SplitConfig
from headstart.shared.data.images import MAX_PIXELS
from headstart.shared.data.splits import check_fractions
from headstart.shared.runtime.specs import JobSpec
from headstart.shared.runtime.specs import weights_value


class TrainSpec(JobSpec):
    dataset: str = Field(description="dataset folder or URI (flat <label>/ or train/valid/test)",
                         json_schema_extra={"positional": True})
    out: str = Field(description="output folder or URI for the run")
    backbone: str = Field("resnet50", description="backbone name from the registry")
    weights: str = Field("imagenet", description="imagenet | none | path/URI of a backbone .weights.h5")
    image_size: int | None = Field(None, description="input size in pixels (default: the backbone's)")
    recipe: Literal["default", "reference"] = Field(
        "default", description="default: head, regularisation and steps chosen by k-fold CV on cached "
        "features; reference: the reference notebook's head and schedule")
    features: str | None = Field(None, description="train the head on the feature shards of "
                                 "`headstart features` (its --out, folder or URI) instead of decoding "
                                 "images: no decode, no backbone pass; backbone and split settings "
                                 "must be the shards'")
    exclude: str | None = Field(None, description="audit output (folder/URI or its keep.csv): train "
                                "only on the images its keep-list keeps")
    epochs: int = Field(20, ge=1, le=10_000, description="maximum head-training epochs (early stopping ends sooner)")
    batch_size: int | None = Field(None, ge=1, le=4096, description="images per training batch "
                                    "(default: 32; 8 below 128 training images, 16 below 256)")
    learning_rate: float = Field(1e-3, gt=0, lt=1, description="Adam learning rate of the head")
    patience: int = Field(5, ge=1, description="early-stopping patience in epochs (validation loss)")
    head_width: int = Field(1024, ge=1, description="units of the head's hidden Dense layer")
    dropout: float = Field(0.3, ge=0, lt=1, description="dropout on the feature maps")
    label_smoothing: float = Field(0.0, ge=0, lt=1, description="label smoothing of the loss")
    fast_path: bool = Field(True, description="cache base features once instead of every epoch")
    pooled_cache: bool = Field(True, description="fast path: cache pooled statistics instead of spatial "
                               "maps (dropout before pooling applied as its moment-matched noise); "
                               "false trains the reference Dropout->GAP head on spatial maps exactly")
    accelerate: Literal["auto", "on", "off"] = Field(
        "auto", description="mixed precision + XLA for the frozen backbone pass: auto = on when a "
                            "GPU is visible, on = force (also on CPU, where it is slower), off = never")
    augment_views: int = Field(0, ge=0, le=32, description="augmented views cached per training image")
    fine_tune_layers: int = Field(0, ge=0, description="unfreeze the top N base layers in a second phase")
    fine_tune_epochs: int = Field(5, ge=1, description="maximum epochs of the fine-tuning phase")
    fine_tune_lr: float = Field(1e-5, gt=0, lt=1, description="learning rate of the fine-tuning phase")
    # Split defaults are SplitConfig's (one set); the fraction rule is splits.check_fractions
    # (the bounds here are that rule per field, for --help and the trigger's schema).
    valid_fraction: float = Field(SplitConfig.valid_fraction, ge=0, lt=1,
                                  description="validation share of a flat dataset")
    test_fraction: float = Field(SplitConfig.test_fraction, ge=0, lt=1, description="test share of a flat dataset")
    seed: int = Field(SplitConfig.seed, description="seed for splits, shuffles and initialisation")
    max_per_label: int | None = Field(SplitConfig.max_per_label, ge=1,
                                      description="use at most this many images per label")
    min_per_label: int = Field(SplitConfig.min_per_label, ge=1, description="refuse labels with fewer usable images")
    min_side: int = Field(8, ge=1, description="skip images smaller than this (pixels)")
    max_pixels: int = Field(MAX_PIXELS, ge=1, description="refuse images with more pixels (bombs)")
    overwrite: bool = Field(False, description="replace a published run at --out")
    cache_dir: str | None = Field(None, description="local folder for large memory-mapped caches")
    class_weights: dict[str, float] | None = Field(
        None, description="loss weight per label as label=weight,... (unlisted labels weigh 1)")
    auto: bool = Field(False, description="choose backbone, input size and schedule from the data")
    budget: float = Field(15.0, gt=0, le=10_000, description="auto: wall-time budget of the run in minutes")
    candidates: list[str] | None = Field(
        None, description="auto: backbone@size=weights,... to choose from (default: an ImageNet list)")

    @field_validator("weights")
    @classmethod
    def _weights(cls, value: str) -> str:
        return weights_value(value)

    @field_validator("class_weights", mode="before")
    @classmethod
    def _class_weights(cls, value):
        if isinstance(value, str):
            pairs = [p.partition("=") for p in value.split(",") if p.strip()]
            bad = [p[0] for p in pairs if not p[1]]
            if bad:
                raise ValueError(f"expected label=weight pairs separated by commas, got {bad[0]!r}")
            value = {k.strip(): v.strip() for k, _, v in pairs}
        return value

    @field_validator("class_weights")
    @classmethod
    def _positive_weights(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        bad = {k: v for k, v in (value or {}).items() if not v > 0}
        if bad:
            raise ValueError(f"class weights must be positive, got {bad}")
        return value

    @field_validator("candidates")
    @classmethod
    def _candidates(cls, value: list[str] | None) -> list[str] | None:
        from headstart.shared.auto.scoring import parse_candidate
        from headstart.shared.runtime.errors import UserError

        try:
            return [parse_candidate(v).text() for v in value] if value is not None else None
        except UserError as exc:
            raise ValueError(str(exc)) from None

    @model_validator(mode="after")
    def _fractions(self) -> TrainSpec:
        check_fractions(self.valid_fraction, self.test_fraction)
        return self

    @model_validator(mode="after")
    def _features(self) -> TrainSpec:
        # Cached shards hold the frozen base's outputs: whatever needs pixels cannot use them.
        needs_pixels = {"fine_tune_layers": self.fine_tune_layers > 0, "augment_views": self.augment_views > 0,
                        "fast_path": not self.fast_path, "auto": self.auto}
        bad = [k for k, v in needs_pixels.items() if v]
        if self.features and bad:
            raise ValueError(f"--features trains the head on cached backbone outputs, but "
                             f"{bad[0]}={getattr(self, bad[0])!r} needs the images: drop one of the two")
        return self
