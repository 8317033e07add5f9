"""S3 upload trigger: start the Headstart pipeline for a dataset, exactly once per upload.

Deployed as a Lambda function (this folder is its code; it needs only boto3). Subscribed to
object-created events for ``<prefix><name>/urls.csv`` (scrape the URL list, then train) and
``<prefix><name>/_READY`` (the images are uploaded under ``<prefix><name>/``; train).

S3 delivers events at least once, so the execution name is derived from the bucket, key and
version id (or ETag and sequencer when the bucket is unversioned): a duplicate delivery asks
for the same name, Step Functions refuses it and we treat "already exists" as success.

An optional ``<prefix><name>/headstart.yaml`` carries each job's options (see
dataset_config.py). It is validated before anything starts: a bad key or value starts no
execution and writes ``<prefix><name>/_CONFIG_ERROR.json`` saying why.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
from typing import Any
from urllib.parse import quote, unquote_plus

try:  # installed as headstart.infra.trigger; in the Lambda this folder is the code root
    from . import dataset_config
except ImportError:  # pragma: no cover - the Lambda runtime
    import dataset_config  # type: ignore[no-redef]

log = logging.getLogger("headstart.trigger")
log.setLevel(logging.INFO)

URLS_FILE = "urls.csv"
READY_MARKER = "_READY"
# Batch array jobs hold 2..10000 children; one shard per ~SHARD_BYTES of URL list.
MAX_SHARDS = 10_000
DEFAULT_SHARD_BYTES = 1_000_000
_NAME_OK = re.compile(r"[^A-Za-z0-9_-]+")
# Above this many images the backbone pass runs as a features array job of FEATURE_SHARDS
# children and train fits the head from their shards (stack parameters FeaturesThreshold /
# FeatureShards; threshold 0 = never).
DEFAULT_FEATURES_THRESHOLD = 50_000
DEFAULT_FEATURE_SHARDS = 8
# Train options the features job takes too (they decide the features; the train section is
# their one source, so the shards always match the train job). Kept equal to the specs' common
# options by tests/infra/test_features_pipeline.py.
FEATURES_FROM_TRAIN = ("accelerate", "backbone", "image_size", "max_per_label", "max_pixels",
                       "min_per_label", "min_side", "seed", "test_fraction", "valid_fraction", "weights")
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")


def shards_for(size_bytes: int, shard_bytes: int = DEFAULT_SHARD_BYTES) -> int:
    """How many scrape shards a URL list of ``size_bytes`` gets (1 = a single job)."""
    if shard_bytes <= 0:
        raise ValueError(f"shard_bytes must be positive, got {shard_bytes}")
    return max(1, min(MAX_SHARDS, math.ceil(size_bytes / shard_bytes)))


def execution_name(dataset: str, bucket: str, key: str, version: str) -> str:
    """A Step Functions execution name (<= 80 chars of [A-Za-z0-9_-]) unique to one upload."""
    digest = hashlib.sha256(f"{bucket}\n{key}\n{version}".encode()).hexdigest()[:20]
    readable = _NAME_OK.sub("-", dataset).strip("-")[:50] or "dataset"
    return f"{readable}-{digest}"


def _merge_env(*layers: list[dict[str, str]]) -> list[dict[str, str]]:
    """Environment lists merged by name, later layers winning (Batch wants unique names)."""
    merged: dict[str, str] = {}
    for layer in layers:
        merged.update({e["Name"]: e["Value"] for e in layer})
    return [{"Name": k, "Value": v} for k, v in sorted(merged.items())]


# Options of the scrape section that scrape-merge takes too (its split settings).
MERGE_OPTIONS = ("valid_fraction", "test_fraction", "seed", "min_success", "on_conflict")


def _features_path(run_uri: str, train_env: list[dict[str, str]], threshold: int,
                   shards: int) -> tuple[dict[str, Any] | None, list[dict[str, str]]]:
    """(``features`` input, the features job's environment) from the train job's environment;
    None when the path is off or train needs pixels (fine-tuning, augmentation, slow path, auto)."""
    values = {e["Name"][len("HEADSTART_"):].lower(): e["Value"] for e in train_env}
    needs_pixels = (values.get("fine_tune_layers", "0") != "0" or values.get("augment_views", "0") != "0"
                    or values.get("fast_path") == "false" or values.get("auto") == "true")
    env = [e for e in train_env if e["Name"][len("HEADSTART_"):].lower() in FEATURES_FROM_TRAIN]
    if values.get("recipe") == "reference":  # its head trains on the spatial maps
        env = _merge_env(env, [{"Name": "HEADSTART_SPATIAL", "Value": "true"}])
    env = _merge_env(env, [{"Name": "HEADSTART_SHARD_COUNT", "Value": str(int(shards))}])
    if threshold <= 0 or shards < 2 or needs_pixels:
        return None, env
    return {"uri": f"{run_uri}/features", "threshold": int(threshold), "shards": int(shards)}, env


def count_images(s3: Any, bucket: str, prefix: str, limit: int) -> int:
    """Image files under ``s3://bucket/prefix`` (hidden and ``_`` names left out), counting
    stops past ``limit``: enough to compare with the features threshold."""
    count = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            name = obj["Key"].rsplit("/", 1)[-1]
            if not name.startswith((".", "_")) and name.lower().endswith(_IMAGE_SUFFIXES):
                count += 1
        if count > limit:
            break
    return count


def pipeline_input(bucket: str, dataset_name: str, run_prefix: str, dataset_uri: str,
                   urls_uri: str | None = None, shards: int = 1,
                   train_environment: list[dict[str, str]] | None = None,
                   images_uri: str | None = None,
                   sections: dict[str, dict[str, Any]] | None = None,
                   image_count: int | None = None,
                   features_threshold: int = DEFAULT_FEATURES_THRESHOLD,
                   feature_shards: int = DEFAULT_FEATURE_SHARDS) -> dict[str, Any]:
    """The state machine's input (see infra/statemachine/pipeline.asl.json).

    Outputs go to ``s3://<bucket>/<run_prefix>/{audit,model,eval,gradcam}``; a failure is recorded
    at ``<run_prefix>/_PIPELINE_FAILURE.json`` in the stack's bucket. ``sections`` are the
    validated headstart.yaml sections (default: the pipeline defaults); each job gets its own
    as ``environment.<job>``; ``train_environment`` (``submit --args``) wins over the config.
    An ``audit`` section turns the audit step on; train then excludes what it drops
    (``HEADSTART_EXCLUDE`` = the audit folder).
    Above ``features_threshold`` images (``image_count``, or the scrape manifest's count) the
    backbone pass runs as a ``feature_shards``-child features array job and train reads its
    shards (``environment.train_features``).
    """
    run_prefix = run_prefix.strip("/")
    run_uri = f"s3://{bucket}/{run_prefix}"
    sections = dataset_config.sections({}) if sections is None else sections
    env = {job: dataset_config.environment(sections.get(job, {}))
           for job in ("scrape", "train", "evaluate", "gradcam", "audit")}
    audit = "audit" in sections
    if audit:
        env["train"] = _merge_env(env["train"], [{"Name": "HEADSTART_EXCLUDE", "Value": f"{run_uri}/audit"}])
    merge = {k: v for k, v in sections.get("scrape", {}).items() if k in MERGE_OPTIONS}
    env["scrape_array"] = _merge_env(env["scrape"], [{"Name": "HEADSTART_SHARD_COUNT", "Value": str(int(shards))}])
    env["scrape_merge"] = dataset_config.environment(merge)
    env["train"] = _merge_env(env["train"], list(train_environment or []))
    features, env["features"] = _features_path(run_uri, env["train"], features_threshold, feature_shards)
    env["train_features"] = _merge_env(env["train"], [{"Name": "HEADSTART_FEATURES",
                                                       "Value": features["uri"] if features else ""}])
    failure_source = manifest = None
    if dataset_uri.startswith("s3://"):
        src_bucket, _, key = dataset_uri[len("s3://"):].partition("/")
        failure_source = f"{src_bucket}/{quote(key.rstrip('/') + '/_FAILURE.json')}"
        manifest = {"Bucket": src_bucket, "Key": f"{key.rstrip('/')}/manifest.json".lstrip("/")}
    return {
        "name": dataset_name,
        "run_prefix": run_prefix,
        "urls": urls_uri,
        "shards": int(shards),
        "dataset": dataset_uri,
        "audit": audit,
        "audit_out": f"{run_uri}/audit",
        "model": f"{run_uri}/model",
        "evaluation": f"{run_uri}/eval",
        "gradcam": f"{run_uri}/gradcam",
        "images": images_uri or dataset_uri,
        "environment": env,
        "scrape_failure_source": failure_source,
        "dataset_manifest": manifest,
        "image_count": image_count,
        "features": features,
    }


def parse_upload(bucket: str, key: str, prefix: str) -> tuple[str, str] | None:
    """Return (dataset name, marker file) for ``<prefix><name>/<marker>``, else None."""
    if not key.startswith(prefix):
        return None
    name, _, marker = key[len(prefix):].rpartition("/")
    if not name or "/" in name or marker not in (URLS_FILE, READY_MARKER):
        return None
    return name, marker


def upload_of(record: dict[str, Any], prefix: str) -> tuple[str, str, str, str] | None:
    """(bucket, key, dataset name, marker) of an ObjectCreated record, or None to ignore it."""
    if not str(record.get("eventName", "")).startswith("ObjectCreated:"):
        return None
    bucket = record["s3"]["bucket"]["name"]
    key = unquote_plus(record["s3"]["object"]["key"])  # event keys are URL-encoded
    parsed = parse_upload(bucket, key, prefix)
    return None if parsed is None else (bucket, key, *parsed)


def input_for_record(record: dict[str, Any], prefix: str, shard_bytes: int = DEFAULT_SHARD_BYTES,
                     sections: dict[str, dict[str, Any]] | None = None, counter: Any = None,
                     features_threshold: int = DEFAULT_FEATURES_THRESHOLD,
                     feature_shards: int = DEFAULT_FEATURE_SHARDS) -> tuple[str, dict[str, Any]] | None:
    """(execution name, pipeline input) for one S3 event record, or None to ignore it.
    ``counter(bucket, prefix, limit)`` counts an uploaded dataset's images (features path)."""
    if not str(record.get("eventName", "")).startswith("ObjectCreated:"):
        return None
    s3 = record["s3"]
    bucket = s3["bucket"]["name"]
    obj = s3["object"]
    key = unquote_plus(obj["key"])  # event keys are URL-encoded ("my+data%21" = "my data!")
    parsed = parse_upload(bucket, key, prefix)
    if parsed is None:
        log.info("ignoring s3://%s/%s: not <prefix>NAME/%s or NAME/%s", bucket, key, URLS_FILE, READY_MARKER)
        return None
    name, marker = parsed
    version = obj.get("versionId") or f"{obj.get('eTag', '')}:{obj.get('sequencer', '')}"
    run_id = execution_name(name, bucket, key, version)
    run_prefix = f"runs/{name}/{run_id}"
    folder = f"s3://{bucket}/{prefix}{name}"
    if marker == URLS_FILE:  # the scrape's manifest will say how many images it made
        body = pipeline_input(bucket, name, run_prefix, f"{folder}/images", urls_uri=f"{folder}/{URLS_FILE}",
                              shards=shards_for(int(obj.get("size", 0)), shard_bytes), sections=sections,
                              features_threshold=features_threshold, feature_shards=feature_shards)
    else:
        count = counter(bucket, f"{prefix}{name}/", features_threshold) \
            if counter is not None and features_threshold > 0 else None
        body = pipeline_input(bucket, name, run_prefix, folder, sections=sections, image_count=count,
                              features_threshold=features_threshold, feature_shards=feature_shards)
    return run_id, body


def start(client: Any, state_machine_arn: str, name: str, body: dict[str, Any]) -> str:
    """Start one execution; an execution of that name already existing is success."""
    try:
        arn = client.start_execution(stateMachineArn=state_machine_arn, name=name,
                                     input=json.dumps(body))["executionArn"]
        log.info("started %s", arn)
        return "started"
    except client.exceptions.ExecutionAlreadyExists:
        log.info("execution %s already exists: duplicate event, nothing to do", name)
        return "duplicate"


def dataset_sections(s3: Any, bucket: str, prefix: str, name: str) -> tuple[dict[str, Any] | None, list[str]]:
    """(sections, problems) of ``<prefix><name>/headstart.yaml``; no file: the defaults.

    Problems are also written to ``<prefix><name>/_CONFIG_ERROR.json``; a valid config
    removes a stale error file.
    """
    key = f"{prefix}{name}/{dataset_config.CONFIG_FILE}"
    error_key = f"{prefix}{name}/{dataset_config.ERROR_FILE}"
    try:
        text = s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode("utf-8")
    except s3.exceptions.NoSuchKey:
        return dataset_config.sections({}), []
    except UnicodeDecodeError:
        text = None
    try:
        if text is None:
            raise ValueError(f"{key} is not UTF-8 text")
        config = dataset_config.parse(text, key)
        problems = dataset_config.validate(config)
    except ValueError as exc:
        config, problems = {}, [str(exc)]
    if problems:
        record = dataset_config.error_record(f"s3://{bucket}/{key}", problems)
        s3.put_object(Bucket=bucket, Key=error_key, Body=json.dumps(record, indent=1).encode(),
                      ContentType="application/json")
        log.error("%s (written to s3://%s/%s)", record["message"], bucket, error_key)
        return None, problems
    s3.delete_object(Bucket=bucket, Key=error_key)  # no-op when there is none
    return dataset_config.sections(config), []


def handler(event: dict[str, Any], context: Any = None, client: Any = None, s3: Any = None) -> dict[str, Any]:
    """Lambda entry point: one execution per new urls.csv / _READY upload with a valid config."""
    import boto3  # the Lambda runtime provides it

    client = client or boto3.client("stepfunctions")
    s3 = s3 or boto3.client("s3")
    state_machine = os.environ["STATE_MACHINE_ARN"]
    prefix = os.environ.get("TRIGGER_PREFIX", "datasets/")
    shard_bytes = int(os.environ.get("SHARD_BYTES", DEFAULT_SHARD_BYTES))
    sizing = {"features_threshold": int(os.environ.get("FEATURES_THRESHOLD", DEFAULT_FEATURES_THRESHOLD)),
              "feature_shards": int(os.environ.get("FEATURE_SHARDS", DEFAULT_FEATURE_SHARDS))}
    outcome = {"started": 0, "duplicate": 0, "ignored": 0, "invalid": 0}
    for record in event.get("Records", []):
        upload = upload_of(record, prefix)
        if upload is None:
            outcome["ignored"] += 1
            continue
        bucket, _, name, _ = upload
        sections, problems = dataset_sections(s3, bucket, prefix, name)
        found = None if problems else input_for_record(
            record, prefix, shard_bytes, sections,
            counter=lambda b, p, limit: count_images(s3, b, p, limit),
            features_threshold=sizing["features_threshold"], feature_shards=sizing["feature_shards"])
        if found is None:
            outcome["invalid" if problems else "ignored"] += 1
            continue
        outcome[start(client, state_machine, *found)] += 1
    return outcome
