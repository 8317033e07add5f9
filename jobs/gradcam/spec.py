"""Parameters of the gradcam job."""
from __future__ import annotations

from typing import Literal

from pydantic import Field

from headstart.shared.data.imagesets import ModelImagesSpec
from headstart.shared.data.sharding import ShardSpec


class GradcamSpec(ModelImagesSpec, ShardSpec):
    split: Literal["train", "valid", "test", "all"] = Field("test",
                       description="dataset split to explain: train | valid | test | all")
    method: Literal["gradcam", "gradcam++", "activation"] = Field("gradcam",
                        description="gradcam | gradcam++ | activation (mean of the last activations)")
    layer: str | None = Field(None, description="target layer inside the backbone (default: the "
                              "last one with a 2-D feature map)")
    target: str = Field("predicted", description="class to explain: predicted | true | a label name")
    batch_size: int = Field(32, ge=1, le=4096, description="images per batch")
    overlay_size: int = Field(224, ge=16, le=2048, description="side of the overlay images in pixels")
    alpha: float = Field(0.45, ge=0, le=1, description="opacity of the heatmap in the overlays")
    colormap: str = Field("jet", description="matplotlib colormap of the heatmaps")
    faithfulness: bool = Field(True, description="score the maps with deletion/insertion curves "
                               "against random maps and a centre prior (extra forward passes)")
    mask_fraction: float = Field(0.2, gt=0, lt=1, description="share of pixels blurred for the "
                                 "single-point drop reported beside the curves")
    faithfulness_steps: int = Field(6, ge=1, le=50, description="points inside each deletion/"
                                    "insertion curve (cost grows linearly)")
    random_maps: int = Field(3, ge=1, le=20, description="random maps averaged for the random control")
    grid_per_class: int = Field(36, ge=0, le=400, description="overlays per class on the grid sheets")
    min_side: int = Field(8, ge=1, description="skip images smaller than this (pixels)")
    seed: int = Field(0, description="seed of the random masks of the faithfulness baseline")
