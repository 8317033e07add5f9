"""Parameters of the export job."""
from __future__ import annotations

from typing import Literal

from pydantic import Field

from headstart.shared.runtime.specs import JobSpec


class ExportSpec(JobSpec):
    model: str = Field(description="a published train run (folder or URI holding model.keras)",
                       json_schema_extra={"positional": True})
    format: Literal["savedmodel", "tflite", "onnx"] = Field(description="savedmodel | tflite | onnx")
    quantize: Literal["none", "float16", "int8"] = Field("none", description="tflite only: "
                     "float16 weights, or full int8 with a representative set from the training split")
    out: str | None = Field(None, description="output folder or URI (default: the run itself; "
                            "files go under export/<format>[-<quantize>]/)")
    dataset: str | None = Field(None, description="the dataset the run was trained on, for the "
                                "parity check and the int8 representative set (default: the "
                                "dataset recorded in the run's spec.yaml)")
    representative: int = Field(200, ge=8, le=10_000, description="int8: training images in the "
                                "representative set")
    int8_agreement: float = Field(0.985, ge=0, le=1, description="int8: expected top-1 agreement "
                                  "with model.keras, on images as uncertain as the less confident "
                                  "half of a check set held out from the parity split and the "
                                  "representative set, to reach; while under it, more of the "
                                  "backbone is kept float, from the input end (0: no check, the "
                                  "backbone all int8)")
    int8_check_images: int = Field(600, ge=1, le=100_000, description="int8: images in that "
                                   "check set (the validation split, then training images outside "
                                   "the representative set)")
    parity_images: int | None = Field(None, ge=1, description="test images in the parity check "
                                      "(default: the whole test split)")
    batch_size: int = Field(32, ge=1, le=4096, description="images per batch in the parity check")
    min_side: int = Field(8, ge=1, description="skip images smaller than this (pixels)")
