"""``headstart submit pipeline|train|evaluate|gradcam|scrape|predict|features ...``: run it on AWS."""
from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from headstart.infra.cloud.settings import CloudSpec
from headstart.shared.runtime.errors import UserError

HELP = "run the pipeline or one job on AWS (Step Functions / Batch); prints its id"

USAGE = {
    "pipeline": "DATASET [--urls URLS]",
    "train": "DATASET",
    "evaluate": "MODEL DATASET",
    "gradcam": "MODEL IMAGES",
    "scrape": "URLS DATASET",
    "predict": "RUN IMAGES",
    "features": "DATASET",
}


class SubmitSpec(CloudSpec):
    what: Literal["pipeline", "train", "evaluate", "gradcam", "scrape", "predict", "features"] = Field(
        description="pipeline | train | evaluate | gradcam | scrape | predict | features",
        json_schema_extra={"positional": True})
    first: str | None = Field(None, description="pipeline/train/features: DATASET; evaluate/gradcam/predict: "
                              "MODEL run; scrape: URLS", json_schema_extra={"positional": True})
    second: str | None = Field(None, description="evaluate: DATASET; gradcam/predict: IMAGES; scrape: the "
                               "DATASET to write", json_schema_extra={"positional": True})
    urls: str | None = Field(None, description="pipeline: scrape this URL list into DATASET first")
    run: str | None = Field(None, description="run folder s3://BUCKET/PREFIX; unset: "
                            "s3://BUCKET/runs/<name>/<name>-<UTC time>")
    name: str | None = Field(None, description="name of the run; unset: from the dataset")
    args: str | None = Field(None, description="extra flags of the job (pipeline: of train), e.g. "
                             "--args=\"--backbone mobilenet_v2 --epochs 5\"")
    shards: int | None = Field(None, ge=1, le=10_000, description="scrape/gradcam/predict/features: run as an "
                               "array job of this many shards (pipeline, unset: from the URL list's size)")
    shard_bytes: int = Field(1_000_000, ge=1, description="pipeline: bytes of URL list per scrape shard")
    # The sections of a headstart.yaml, which `--spec headstart.yaml` fills (the file may also
    # set the settings above). Unset: the headstart.yaml beside the dataset, if any.
    scrape: dict[str, Any] | None = Field(None, description="pipeline: scrape options (use --spec headstart.yaml)")
    train: dict[str, Any] | None = Field(None, description="pipeline: train options (use --spec headstart.yaml)")
    evaluate: dict[str, Any] | None = Field(None, description="pipeline: evaluate options (use --spec "
                                            "headstart.yaml)")
    gradcam: dict[str, Any] | None = Field(None, description="pipeline: gradcam options (use --spec "
                                           "headstart.yaml)")


def _follow(kind: str, ids: list[str], run_uri: str, region: str | None) -> list[str]:
    lines = [f"{'execution' if kind == 'execution' else 'batch job'}: {i}" for i in ids]
    lines.append(f"run: {run_uri}")
    lines.append(f"follow: headstart status {ids[0]}")
    if kind == "execution":
        where = f"?region={region}" if region else ""
        lines.append(f"console: https://console.aws.amazon.com/states/home{where}#/v2/executions/details/{ids[0]}")
    lines.append(f"results: headstart results {run_uri}")
    return lines


SPEC = SubmitSpec


def run(spec: SubmitSpec) -> None:
    """Start the pipeline or submit one job; print its id and how to follow it."""
    from headstart.infra.cloud.settings import resolve
    from headstart.infra.cloud.submit import submit_job, submit_pipeline

    inputs = [v for v in (spec.first, spec.second) if v]
    cloud = resolve(spec)
    if spec.what == "pipeline":
        if len(inputs) != 1:
            raise UserError(f"usage: headstart submit pipeline {USAGE['pipeline']}. Received: {inputs}")
        config = {k: getattr(spec, k) for k in ("scrape", "train", "evaluate", "gradcam")
                  if getattr(spec, k) is not None}
        done = submit_pipeline(cloud, inputs[0], urls=spec.urls, run=spec.run, name=spec.name,
                               args=spec.args, shards=spec.shards, shard_bytes=spec.shard_bytes,
                               config=config or None)
    else:
        if spec.urls:
            raise UserError(f"--urls applies to `submit pipeline` only; `submit {spec.what}` takes "
                            f"{USAGE[spec.what]}. Received: --urls {spec.urls!r}")
        done = submit_job(cloud, spec.what, inputs, run=spec.run, name=spec.name, args=spec.args,
                          shards=spec.shards)
    print("\n".join(_follow(done.kind, done.ids, done.run_uri, cloud.region)))
