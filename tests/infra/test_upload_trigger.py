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
    assert app.handler(event) == {"started": 1, "duplicate": 0, "ignored": 0, "invalid": 0}
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
    assert app.handler(event) == {"started": 0, "duplicate": 1, "ignored": 0, "invalid": 0}
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
    assert body["shards"] == 5
    assert {"Name": "HEADSTART_SHARD_COUNT", "Value": "5"} in body["environment"]["scrape_array"]


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


def _put(key: str, body: bytes | str) -> None:
    import boto3

    boto3.client("s3", region_name=REGION).put_object(Bucket=BUCKET, Key=key, Body=body)


def _get_json(key: str) -> dict:
    import boto3

    return json.loads(boto3.client("s3", region_name=REGION).get_object(Bucket=BUCKET, Key=key)["Body"].read())


def test_headstart_yaml_beside_the_dataset_configures_every_job(pipeline):
    _put("datasets/dogs/headstart.yaml", "scrape:\n  min-success: 0.8\n  reencode: true\n"
         "train:\n  backbone: mobilenet_v2\n  epochs: 5\ngradcam:\n  batch_size: 4\n")
    assert app.handler(s3_event("datasets/dogs/urls.csv"))["started"] == 1
    env = _input(pipeline, _executions(pipeline)[0])["environment"]
    assert env["scrape"] == [{"Name": "HEADSTART_MIN_SUCCESS", "Value": "0.8"},
                             {"Name": "HEADSTART_REENCODE", "Value": "true"}]
    assert env["scrape_merge"] == [{"Name": "HEADSTART_MIN_SUCCESS", "Value": "0.8"}]
    assert {"Name": "HEADSTART_EPOCHS", "Value": "5"} in env["train"]
    assert env["gradcam"] == [{"Name": "HEADSTART_BATCH_SIZE", "Value": "4"}] and env["evaluate"] == []


@pytest.mark.parametrize("text, on", [("audit: true\n", True), ("audit:\n  folds: 3\n", True),
                                      ("audit: false\n", False), ("train: {epochs: 2}\n", False)])
def test_audit_in_headstart_yaml_turns_the_audit_step_on(pipeline, text, on):
    _put("datasets/dogs/headstart.yaml", text)
    assert app.handler(s3_event("datasets/dogs/_READY"))["started"] == 1
    body = _input(pipeline, _executions(pipeline)[0])
    assert body["audit"] is on
    assert body["audit_out"] == f"s3://{BUCKET}/" + body["run_prefix"] + "/audit"
    exclude = [e for e in body["environment"]["train"] if e["Name"] == "HEADSTART_EXCLUDE"]
    assert exclude == ([{"Name": "HEADSTART_EXCLUDE", "Value": body["audit_out"]}] if on else [])
    if "folds" in text:
        assert body["environment"]["audit"] == [{"Name": "HEADSTART_FOLDS", "Value": "3"}]


def test_without_a_config_the_pipeline_defaults_apply(pipeline):
    app.handler(s3_event("datasets/dogs/urls.csv"))
    env = _input(pipeline, _executions(pipeline)[0])["environment"]
    assert env["scrape"] == [{"Name": "HEADSTART_MIN_SUCCESS", "Value": "0.5"}] and env["train"] == []


@pytest.mark.parametrize("text, expected", [
    ("train:\n  epochz: 5\n", "unknown option `train.epochz`"),
    ("train:\n  epochs: many\n", "`train.epochs` must be integer"),
    ("scrape:\n  min_success: 2\n", "`scrape.min_success` must be <= 1"),
    ("scrape:\n  on_conflict: keep\n", "must be one of ['first', 'drop']"),
    ("deploy:\n  x: 1\n", "unknown section `deploy`"),
    ("train: [epochs]\n", "section `train` must map options to values"),
    ("train:\n  epochs: 5\n bad indent", "is not valid YAML"),
    ("- just\n- a list\n", "must map job names to their options"),
    ("audit: 3\n", "section `audit` must map options to values"),
    ("audit:\n  folds: 1\n", "`audit.folds` must be >= 2"),
    ("audit: true\ntrain:\n  exclude: s3://b/x\n", "`train.exclude` cannot be set with `audit` on"),
])
def test_a_bad_config_starts_nothing_and_says_why_beside_the_dataset(pipeline, text, expected):
    _put("datasets/dogs/headstart.yaml", text)
    assert app.handler(s3_event("datasets/dogs/_READY")) == {"started": 0, "duplicate": 0, "ignored": 0,
                                                               "invalid": 1}
    assert _executions(pipeline) == []
    error = _get_json("datasets/dogs/_CONFIG_ERROR.json")
    assert error["started"] is False and error["config"] == f"s3://{BUCKET}/datasets/dogs/headstart.yaml"
    assert expected in error["message"], error["message"]


def test_fixing_the_config_starts_the_run_and_clears_the_error(pipeline):
    import boto3

    _put("datasets/dogs/headstart.yaml", "train: {epochs: -1}\n")
    app.handler(s3_event("datasets/dogs/_READY", version="v1"))
    _put("datasets/dogs/headstart.yaml", "train: {epochs: 3}\n")
    assert app.handler(s3_event("datasets/dogs/_READY", version="v2"))["started"] == 1
    listed = boto3.client("s3", region_name=REGION).list_objects_v2(Bucket=BUCKET, Prefix="datasets/dogs/")
    assert "datasets/dogs/_CONFIG_ERROR.json" not in [o["Key"] for o in listed.get("Contents", [])]


def test_the_trigger_schema_is_generated_from_the_jobs_specs():
    """config_schema.json ships with the Lambda (no headstart there); it must match the specs.
    Regenerate: python -m headstart.infra.cloud.dataset_config > infra/trigger/config_schema.json"""
    from headstart.infra.cloud.dataset_config import generate_schema
    from headstart.infra.trigger.dataset_config import SCHEMA_FILE

    assert json.loads(SCHEMA_FILE.read_text()) == json.loads(json.dumps(generate_schema())), \
        "stale infra/trigger/config_schema.json: " + test_the_trigger_schema_is_generated_from_the_jobs_specs.__doc__


@pytest.mark.parametrize("section, values, valid", [
    ("train", {"epochs": 0}, False), ("train", {"learning_rate": -1.0}, False), ("scrape", {"timeout": 0}, False),
    ("scrape", {"jpeg_quality": 101}, False), ("evaluate", {"nope": 1}, False),
    ("train", {"fast_path": "yes"}, False),  # the schema is stricter than pydantic's lax bool
    ("train", {"epochs": 3, "backbone": "resnet50"}, True), ("scrape", {"resize": None}, True),
    ("scrape", {"min_success": 1}, True), ("train", {"fast_path": False}, True),
    ("audit", {"folds": 3, "min_given_prob": 0.2}, True), ("audit", {"outlier_mads": 0}, False),
])
def test_the_trigger_check_is_never_looser_than_the_job_specs(section, values, valid):
    """Whatever the Lambda's schema check accepts, the job's own pydantic spec accepts too."""
    from pydantic import ValidationError

    from headstart.infra.cloud.dataset_config import spec_class
    from headstart.infra.trigger import dataset_config

    schema_ok = not dataset_config.validate({section: values})
    try:
        spec_class(section).model_validate(values)
        spec_ok = True
    except ValidationError as exc:
        spec_ok = all(e["type"] == "missing" for e in exc.errors())
    assert schema_ok == valid, (section, values)
    assert spec_ok or not schema_ok, (section, values)
