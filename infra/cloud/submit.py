"""Start a pipeline execution or submit one Batch job, from the CLI.

Extra job flags (``--args "--backbone mobilenet_v2 --epochs 5"``) are checked against the
job's own parameters here, then travel as ``HEADSTART_<PARAM>`` environment variables, which
every job reads (flags > env > spec file), so the job definitions' commands stay as deployed.
"""
from __future__ import annotations

import argparse
import importlib
import json
import logging
import re
import secrets
import shlex
import time
from dataclasses import dataclass
from typing import Any, NoReturn

from pydantic import ValidationError

from headstart.infra.cloud.settings import Cloud, aws_call
from headstart.infra.trigger.app import pipeline_input, shards_for
from headstart.shared.runtime.errors import UserError
from headstart.shared.runtime.specs import ENV_PREFIX, add_spec_arguments, format_validation_error

log = logging.getLogger(__name__)

# job -> (names of its inputs, output folder under the run, queue setting)
JOBS: dict[str, tuple[tuple[str, ...], str, str]] = {
    "train": (("dataset",), "model", "gpu_queue"),
    "evaluate": (("model", "dataset"), "eval", "gpu_queue"),
    "gradcam": (("model", "images"), "gradcam", "gpu_queue"),
    "audit": (("dataset",), "audit", "gpu_queue"),
    "scrape": (("urls",), "", "cpu_queue"),  # writes the dataset given as its second input
    "predict": (("model", "images"), "predict", "gpu_queue"),
    # the frozen backbone pass, sharded; then `submit train DATASET --args="--features RUN/features"`
    "features": (("dataset",), "features", "gpu_queue"),
}
# Sharded jobs whose array is followed by one merge job (dependsOn the array).
MERGES = {"scrape": "scrape-merge", "predict": "predict-merge"}
RESERVED = {"out", "_spec_file"}  # set by the pipeline, or not expressible as env vars
_NAME_OK = re.compile(r"[^A-Za-z0-9_-]+")


@dataclass
class Submitted:
    """What was started: ``kind`` is "execution" or "job"; ``ids`` the ARN / job ids."""

    kind: str
    ids: list[str]
    run_uri: str


class _RaisingParser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # argparse would print usage and exit
        raise UserError(f"{self.prog}: {message}")


def job_environment(job: str, args: str | None) -> list[dict[str, str]]:
    """``--args`` of ``job`` as ``[{"Name": "HEADSTART_X", "Value": ...}]``, validated."""
    if not args:
        return []
    from headstart.shared.runtime.cli import COMMANDS

    if job not in COMMANDS:
        raise UserError(f"`headstart {job}` is not part of this installation, so --args cannot be "
                        f"checked; upgrade headstart. Received: --args {args!r}")
    module = importlib.import_module(COMMANDS[job])
    parser = _RaisingParser(prog=f"headstart {job} --args")
    add_spec_arguments(parser, module.SPEC)
    ns = vars(parser.parse_args(shlex.split(args)))
    fields = module.SPEC.model_fields
    positional = {n for n, f in fields.items() if (f.json_schema_extra or {}).get("positional")}
    given = {k: v for k, v in ns.items() if v is not None}
    bad = sorted(set(given) & (RESERVED | positional))
    if bad:
        raise UserError(f"--args must hold only optional flags of `headstart {job}`; the pipeline sets "
                        f"{', '.join(b.lstrip('_') for b in bad)}. Received: --args {args!r}")
    _validate(module.SPEC, given)
    return [{"Name": ENV_PREFIX + k.upper(), "Value": str(v).lower() if isinstance(v, bool) else str(v)}
            for k, v in sorted(given.items())]


def _validate(spec_cls: Any, values: dict[str, Any]) -> None:
    """Validate the given values with the job's spec, ignoring fields not given (inputs)."""
    try:
        spec_cls.model_validate(values)
    except ValidationError as exc:
        errors = [e for e in exc.errors() if e["type"] != "missing"]
        if errors:
            raise UserError(format_validation_error(exc, skip={"missing"})) from None


def _name(text: str) -> str:
    parts = [p for p in text.rstrip("/").split("/") if p and p not in ("images", "urls.csv")]
    return (_NAME_OK.sub("-", parts[-1] if parts else "run").strip("-") or "run")[:40]


def _stamp() -> str:
    """UTC time plus a random suffix: two submits in the same second get different names."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(2)


def _bucket_of(uri: str) -> str | None:
    return uri[len("s3://"):].split("/", 1)[0] if uri.startswith("s3://") else None


def check_access(cloud: Cloud, reads: dict[str, str | None], writes: dict[str, str | None]) -> None:
    """Refuse (UserError, exit 2) URIs the stack's job role cannot read or write.

    Jobs read the data bucket and the stack's ``ReadBuckets``; they write the data bucket only.
    """
    bucket = cloud.get("bucket")
    readable = {bucket, *cloud.read_buckets()}
    for what, uri in reads.items():
        if uri is None:
            continue
        if _bucket_of(uri) not in readable:
            raise UserError(
                f"{what} must be an s3:// URI in a bucket the stack's jobs can read ({', '.join(sorted(readable))}); "
                f"add its bucket to the stack parameter ReadBuckets (or --read-buckets if it already is). "
                f"Received: {what}={uri!r}")
    for what, uri in writes.items():
        if uri is not None and _bucket_of(uri) != bucket:
            raise UserError(f"{what} must be an s3:// URI in the stack's data bucket s3://{bucket}/ (jobs write "
                            f"nowhere else; ReadBuckets grants reading only). Received: {what}={uri!r}")


def config_sections(dataset: str, given: dict[str, dict[str, Any]] | None, where: str = "--spec"
                    ) -> dict[str, dict[str, Any]]:
    """The validated headstart.yaml sections: ``given`` (from --spec), else the file beside
    the dataset, else the pipeline defaults."""
    from headstart.infra.cloud.dataset_config import find_config, load_config, validate_config

    if given:
        return validate_config(given, where)
    found = find_config(dataset) if dataset.startswith("s3://") else None
    if found:
        log.info("using %s", found)
        return load_config(found)
    return validate_config({}, where)


def _start(sfn: Any, state_machine: str, name: str, body: dict[str, Any]) -> str:
    """Start the execution; an existing execution of that name is a clear error."""
    try:
        return aws_call("starting the pipeline", sfn.start_execution, stateMachineArn=state_machine,
                        name=name, input=json.dumps(body))["executionArn"]
    except sfn.exceptions.ExecutionAlreadyExists:
        raise UserError(f"an execution named {name!r} already exists; pass another --name") from None


def _run_prefix(cloud: Cloud, run: str | None, default: str) -> tuple[str, str]:
    """(bucket-relative prefix, URI) of the run folder; runs live in the stack's bucket."""
    bucket = cloud.get("bucket")
    if not run:
        return default, f"s3://{bucket}/{default}"
    if not run.startswith(f"s3://{bucket}/") or len(run.rstrip("/")) <= len(f"s3://{bucket}/"):
        raise UserError(f"--run must be a folder in the stack's bucket, s3://{bucket}/PREFIX. Received: {run!r}")
    prefix = run.rstrip("/")[len(f"s3://{bucket}/"):]
    return prefix, f"s3://{bucket}/{prefix}"


def urls_shards(urls: str, shard_bytes: int) -> int:
    """Scrape shards for a URL list (a file, or a folder of per-label lists) by its size."""
    from headstart.shared.storage.store import open_store, split_uri

    store, name = split_uri(urls)
    if store.exists(name):
        size = store.size(name)
    else:
        folder = open_store(urls)
        size = sum(folder.size(k) for k in folder.list())
        if size == 0:
            raise UserError(f"URL list not found or empty: {urls!r}")
    return shards_for(size, shard_bytes)


def submit_pipeline(cloud: Cloud, dataset: str, urls: str | None = None, run: str | None = None,
                    name: str | None = None, args: str | None = None, shards: int | None = None,
                    shard_bytes: int = 1_000_000, config: dict[str, dict[str, Any]] | None = None) -> Submitted:
    """Start one pipeline execution; ``args`` are extra flags for train (over the config's
    ``train`` section). Everything is validated before anything starts."""
    name = _name(name or dataset)
    execution = f"{name}-{_stamp()}"
    prefix, run_uri = _run_prefix(cloud, run, f"runs/{name}/{execution}")
    train_env = job_environment("train", args)
    if urls:
        check_access(cloud, {"--urls": urls}, {"DATASET (scraped into)": dataset})
    else:
        check_access(cloud, {"DATASET": dataset}, {})
    sections = config_sections(dataset, config)
    if urls and shards is None:
        shards = urls_shards(urls, shard_bytes)
    body = pipeline_input(cloud.get("bucket"), name, prefix, dataset, urls_uri=urls, shards=shards or 1,
                          train_environment=train_env, sections=sections)
    arn = _start(cloud.client("stepfunctions"), cloud.get("state_machine"), execution, body)
    log.info("started %s", arn)
    return Submitted("execution", [arn], run_uri)


def _array(shards: int | None) -> tuple[dict[str, Any], list[dict[str, str]]]:
    if not shards or shards <= 1:
        return {}, []
    if shards > 10_000:
        raise UserError(f"--shards must be at most 10000 (a Batch array job's size). Received: {shards}")
    return {"arrayProperties": {"size": shards}}, [{"name": "HEADSTART_SHARD_COUNT", "value": str(shards)}]


def submit_job(cloud: Cloud, job: str, inputs: list[str], run: str | None = None,
               name: str | None = None, args: str | None = None, shards: int | None = None) -> Submitted:
    """Submit ``headstart <job>`` to Batch (scrape/predict sharded: an array job, then its merge)."""
    names, folder, queue = JOBS[job]
    expected = len(names) + (1 if job == "scrape" else 0)
    if len(inputs) != expected:
        want = " ".join(n.upper() for n in names) + (" DATASET" if job == "scrape" else "")
        raise UserError(f"`headstart submit {job}` takes {want}. Received: {inputs}")
    job_name = f"headstart-{job}-{_name(name or inputs[-1])}"[:128]
    if job == "scrape":
        out, run_uri = inputs[1], inputs[1]
    else:
        prefix, run_uri = _run_prefix(cloud, run, f"runs/{_name(name or inputs[-1])}/{job}-{_stamp()}")
        out = f"{run_uri}/{folder}"
    array, shard_env = _array(shards)
    env = [{"name": e["Name"], "value": e["Value"]} for e in job_environment(job, args)] + shard_env
    check_access(cloud, {n.upper(): v for n, v in zip(names, inputs)},
                 {"DATASET (scraped into)" if job == "scrape" else "--run": out})
    batch = cloud.client("batch")
    request = {"jobName": job_name, "jobQueue": cloud.get(queue), "jobDefinition": cloud.job_definition(job),
               "parameters": {**dict(zip(names, inputs)), "out": out}, **array}
    if env:
        request["containerOverrides"] = {"environment": env}
    ids = [aws_call(f"submitting {job}", batch.submit_job, **request)["jobId"]]
    if job in MERGES and array:
        merge = MERGES[job]
        ids.append(aws_call(f"submitting {merge}", batch.submit_job, jobName=f"{job_name}-merge"[:128],
                            jobQueue=cloud.get("cpu_queue"), jobDefinition=cloud.job_definition(merge),
                            parameters={"out": out}, dependsOn=[{"jobId": ids[0]}])["jobId"])
    log.info("submitted %s", ", ".join(ids))
    return Submitted("job", ids, run_uri)
