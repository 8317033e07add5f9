"""The S3 upload trigger: one real S3 event -> exactly one pipeline execution, duplicates none."""
from __future__ import annotations

import copy
import json

import pytest

from moto_pipeline import BUCKET, REGION, deploy_pipeline

from headstart.infra.trigger import app


def s3_event(key: str, size: int = 1234, version: str | None = "3HL4kqtJlcpXroDTDmJ.rmSpXd3dIbrHY") -> dict:
    """An ``ObjectCreated:Put`` notification as S3 sends it (the key is URL-encoded)."""
    obj = {"key": key, "size": size, "eTag": "0123456789abcdef0123456789abcdef",
           "sequencer": "0A1B2C3D4E5F678901"}
    if version:
        obj["versionId"] = version
    return {"Records": [{
        "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": REGION,
        "eventTime": "2026-01-01T00:00:00.000Z", "eventName": "ObjectCreated:Put",
        "userIdentity": {"principalId": "AWS:EXAMPLE"}, "requestParameters": {"sourceIPAddress": "127.0.0.1"},
        "responseElements": {"x-amz-request-id": "C3D13FE58DE4C810",
                             "x-amz-id-2": "FMyUVURIY8/IgAtTv8xRjskZQpcIZ9KG4V5Wp6S7S/JRWeUWerMUE5JgHvANOjpD"},
        "s3": {"s3SchemaVersion": "1.0", "configurationId": "UrlList",
               "bucket": {"name": BUCKET, "ownerIdentity": {"principalId": "EXAMPLE"},
                          "arn": f"arn:aws:s3:::{BUCKET}"},
               "object": obj}}]}


@pytest.fixture
def pipeline(monkeypatch):
    from moto import mock_aws

    with mock_aws():
        arns = deploy_pipeline()
        monkeypatch.setenv("STATE_MACHINE_ARN", arns["StateMachineArn"])
        monkeypatch.setenv("TRIGGER_PREFIX", "datasets/")
        yield arns


def _executions(arns) -> list[dict]:
    import boto3

    sfn = boto3.client("stepfunctions", region_name=REGION)
    return sfn.list_executions(stateMachineArn=arns["StateMachineArn"])["executions"]


def _input(arns, execution) -> dict:
    import boto3

    sfn = boto3.client("stepfunctions", region_name=REGION)
    return json.loads(sfn.describe_execution(executionArn=execution["executionArn"])["input"])


def test_ready_marker_starts_exactly_one_execution_and_a_duplicate_none(pipeline):
    event = s3_event("datasets/my+flowers%21/_READY")  # key "datasets/my flowers!/_READY"
    assert app.handler(event) == {"started": 1, "duplicate": 0, "ignored": 0}
    assert app.handler(copy.deepcopy(event))["started"] in (0, 1)  # idempotent either way
    executions = _executions(pipeline)
    assert len(executions) == 1
    body = _input(pipeline, executions[0])
    assert body["dataset"] == f"s3://{BUCKET}/datasets/my flowers!"
    assert body["urls"] is None
    assert body["model"] == f"s3://{BUCKET}/{body['run_prefix']}/model"
    assert executions[0]["name"].startswith("my-flowers-")


def test_duplicate_after_the_first_execution_finished_is_success(pipeline):
    import boto3

    event = s3_event("datasets/cats/urls.csv")
    app.handler(event)
    (first,) = _executions(pipeline)
    boto3.client("stepfunctions", region_name=REGION).stop_execution(executionArn=first["executionArn"])
    assert app.handler(event) == {"started": 0, "duplicate": 1, "ignored": 0}
    assert len(_executions(pipeline)) == 1


def test_a_new_version_of_the_same_key_starts_a_new_run(pipeline):
    app.handler(s3_event("datasets/cats/_READY", version="v1"))
    app.handler(s3_event("datasets/cats/_READY", version="v2"))
    assert len(_executions(pipeline)) == 2


def test_large_url_list_becomes_an_array_scrape(pipeline, monkeypatch):
    monkeypatch.setenv("SHARD_BYTES", "1000")
    app.handler(s3_event("datasets/dogs/urls.csv", size=4500))
    body = _input(pipeline, _executions(pipeline)[0])
    assert body["urls"] == f"s3://{BUCKET}/datasets/dogs/urls.csv"
    assert body["dataset"] == f"s3://{BUCKET}/datasets/dogs/images"
    assert (body["shards"], body["shard_count"]) == (5, "5")


@pytest.mark.parametrize("key", ["datasets/cats/train/cat/1.jpg", "elsewhere/cats/_READY",
                                 "datasets/_READY", "datasets/a/b/_READY"])
def test_other_keys_are_ignored(pipeline, key):
    assert app.handler(s3_event(key))["ignored"] == 1
    assert _executions(pipeline) == []


def test_execution_names_are_valid_and_unversioned_buckets_use_etag_and_sequencer():
    a = app.input_for_record(s3_event("datasets/x/_READY", version=None)["Records"][0], "datasets/")
    event = s3_event("datasets/x/_READY", version=None)
    event["Records"][0]["s3"]["object"]["sequencer"] = "0A1B2C3D4E5F678902"
    b = app.input_for_record(event["Records"][0], "datasets/")
    assert a[0] != b[0]
    name = app.execution_name("ü" * 200, "b", "k", "v")
    assert len(name) <= 80 and all(c.isalnum() or c in "-_" for c in name)


def test_shards_for_is_bounded():
    assert app.shards_for(0) == 1
    assert app.shards_for(10**12, 1) == app.MAX_SHARDS
    with pytest.raises(ValueError):
        app.shards_for(10, 0)
