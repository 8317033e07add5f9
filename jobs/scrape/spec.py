"""Parameters of the scrape job and of its merge step."""
from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from headstart.shared.net.fetch import USER_AGENT
from headstart.shared.data.sharding import ShardSpec
from headstart.shared.data.imageprep import PrepOptions
from headstart.shared.data.splits import check_fractions
from headstart.shared.runtime.specs import JobSpec

class SplitSettings(JobSpec):
    """How the merged dataset is split and judged (shared by scrape and scrape-merge)."""

    valid_fraction: float = Field(0.1, ge=0, lt=1, description="validation share per label")
    test_fraction: float = Field(0.1, ge=0, lt=1, description="test share per label")
    seed: int = Field(42, description="seed of the stratified split")
    min_success: float = Field(0.0, ge=0, le=1, description="fail (exit 2, no manifest) when the "
                               "share of URLs yielding a valid image is below this")
    on_conflict: Literal["first", "drop"] = Field(
        "first", description="an image found under two labels: keep it under the label of its "
                             "first URL, or drop it")

    @model_validator(mode="after")
    def _fractions(self) -> SplitSettings:
        check_fractions(self.valid_fraction, self.test_fraction)
        return self


class ScrapeSpec(SplitSettings, ShardSpec):
    urls: str = Field(description="CSV with url,label columns, or a folder/prefix of <label>.csv|"
                      ".txt files with one URL per line (local or s3://)",
                      json_schema_extra={"positional": True})
    out: str = Field(description="dataset folder or URI to write train/valid/test/<label>/ into")
    concurrency: int = Field(64, ge=1, le=1024, description="downloads in flight")
    processes: int | None = Field(None, ge=1, le=256, description="processes fetching this "
                                  "shard's URLs, each with its share of --concurrency and of the "
                                  "decode budget (default: one per usable CPU for 1,000 URLs or "
                                  "more, else 1)")
    decode_workers: int | None = Field(None, ge=0, le=256, description="processes decoding and "
                                       "resizing beside one fetching process (default: CPUs - 1, "
                                       "or 0 on <= 2 CPUs; 0 = in the download threads; with "
                                       "several --processes, 0 unless given)")
    timeout: float = Field(10.0, gt=0, le=600, description="seconds per request attempt, body included")
    retries: int = Field(2, ge=0, le=10, description="retries of transient failures (timeouts, "
                         "resets, 429, 5xx)")
    backoff: float = Field(0.5, ge=0, le=60, description="seconds before the first retry (doubles)")
    max_redirects: int = Field(5, ge=0, le=20, description="redirects followed per URL")
    max_bytes: int = Field(16 * 2**20, ge=1024, description="largest download in bytes")
    max_pixels: int = Field(PrepOptions.max_pixels, ge=1, description="refuse images with more "
                            "pixels, checked before decoding (decompression bombs)")
    decode_budget_mpx: float = Field(64.0, gt=0, le=10_000, description="megapixels decoded at "
                                     "once across all downloads: bounds decode memory (measured "
                                     "~15 bytes per pixel at peak, so 64 -> ~1 GB; an image "
                                     "above it decodes alone)")
    min_side: int = Field(PrepOptions.min_side, ge=1, description="refuse images whose shorter side is smaller")
    resize: int | None = Field(None, ge=8, le=16384, description="shrink so the longest side is "
                               "at most this many pixels (keeps the ratio; implies JPEG)")
    reencode: bool = Field(False, description="store every image as JPEG")
    jpeg_quality: int = Field(PrepOptions.jpeg_quality, ge=1, le=100, description="JPEG quality when re-encoding")
    user_agent: str = Field(USER_AGENT, description="User-Agent header sent with every request")
    allow_loopback: list[str] = Field(default_factory=list, description="HOST:PORT loopback "
                                      "endpoints to allow (tests and local demos ONLY)")
    overwrite: bool = Field(False, description="scrape into an --out that holds files no scrape "
                            "wrote; files in its train/valid/test folders that the scrape does "
                            "not place are then deleted")
    checkpoint_every: int = Field(1000, ge=1, description="URLs per progress record (resume unit)")


class MergeSpec(JobSpec):
    """Split settings left unset are taken from the shards' recorded spec."""

    out: str = Field(description="the --out of the sharded scrape runs")
    valid_fraction: float | None = Field(None, ge=0, lt=1, description="validation share per label")
    test_fraction: float | None = Field(None, ge=0, lt=1, description="test share per label")
    seed: int | None = Field(None, description="seed of the stratified split")
    min_success: float | None = Field(None, ge=0, le=1, description="minimum success rate")
    on_conflict: Literal["first", "drop"] | None = Field(None, description="first | drop")

    @model_validator(mode="after")
    def _fractions(self) -> MergeSpec:
        check_fractions(self.valid_fraction, self.test_fraction)  # the merge rechecks the sum
        return self
