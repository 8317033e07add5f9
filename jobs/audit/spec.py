"""Parameters of the audit job."""
from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from headstart.shared.data.images import MAX_PIXELS
from headstart.shared.runtime.specs import JobSpec
from headstart.shared.runtime.specs import weights_value


class AuditSpec(JobSpec):
    dataset: str = Field(description="dataset folder or URI (flat <label>/ or train/valid/test)",
                         json_schema_extra={"positional": True})
    out: str = Field(description="output folder or URI for the audit")
    backbone: str = Field("resnet50", description="backbone name from the registry")
    weights: str = Field("imagenet", description="imagenet | none | path/URI of a backbone .weights.h5")
    image_size: int | None = Field(None, description="input size in pixels (default: the backbone's)")
    valid_fraction: float = Field(0.15, ge=0, lt=0.9, description="validation share of a flat dataset "
                                  "(as train splits it: leakage is checked across these splits)")
    test_fraction: float = Field(0.15, ge=0, lt=0.9, description="test share of a flat dataset")
    seed: int = Field(1337, description="seed for splits and the cross-validated probes")
    folds: int = Field(5, ge=2, le=20, description="cross-validation folds of the label-error probes")
    min_given_prob: float | None = Field(None, ge=0, lt=1, description="flag a label error when the probes "
                                         "and neighbours give the given label less than this probability and "
                                         "prefer another (default: 0.6 / number of labels)")
    label_rule: Literal["threshold", "confident_learning"] = Field(
        "threshold", description="label errors: threshold = the min_given_prob rule alone (the measured "
        "default); confident_learning = cleanlab's confident-learning set as well (more found, more false alarms)")
    neighbours: int = Field(15, ge=0, le=200, description="nearest neighbours whose labels vote with the "
                            "probes (0: probes alone)")
    outlier_mads: float = Field(4.0, gt=0, description="flag an image whose neighbour similarity is this "
                                "many robust deviations (MAD) below the dataset's median")
    duplicate_threshold: float = Field(0.97, gt=0, le=1, description="cosine similarity at or above which "
                                       "two images count as near-duplicates")
    leakage_threshold: float = Field(0.95, gt=0, le=1, description="cosine similarity at or above which "
                                     "a pair across splits counts as leakage")
    tiny_side: int = Field(32, ge=1, description="flag images whose shorter side is below this (pixels)")
    max_aspect: float = Field(4.0, gt=1, description="flag images whose long/short side ratio exceeds this")
    constant_std: float = Field(3.0, ge=0, description="flag images whose pixel standard deviation (0-255) "
                                "is below this (near-constant)")
    gallery: int = Field(24, ge=0, le=500, description="thumbnails shown per finding in report.html")
    batch_size: int = Field(64, ge=1, le=4096, description="images per feature-extraction batch")
    max_pixels: int = Field(MAX_PIXELS, ge=1, description="refuse images with more pixels (bombs)")
    cache_dir: str | None = Field(None, description="local folder for large memory-mapped caches")
    features: str | None = Field(None, description="folder/URI of `headstart features` shards of this "
                                 "dataset (same backbone, image size and weights): reuse their pooled "
                                 "features instead of a backbone pass; the audit then uses the shards' "
                                 "splits, and images they skipped are reported unreadable")

    @field_validator("weights")
    @classmethod
    def _weights(cls, value: str) -> str:
        return weights_value(value)
