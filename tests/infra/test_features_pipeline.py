"""The pipeline's features path: above a dataset-size threshold the backbone pass runs as a
features array job and train fits the head from its shards (moto Step Functions + Batch)."""
from __future__ import annotations

import json

import pytest

from moto_pipeline import BUCKET, REGION, deploy_pipeline, patch_sfn_batch, patch_sfn_s3
from test_upload_trigger import s3_event

from headstart.infra.trigger import app
from headstart.infra.trigger.app import pipeline_input

MOTO_CONFIG = {"batch": {"use_docker": False}, "stepfunctions": {"execute_state_machine": True}}
TRAIN = {"backbone": "mobilenet_v2", "image_size": 160, "epochs": 4, "seed": 9}


@pytest.fixture
def aws(monkeypatch):
    from moto import mock_aws

    monkeypatch.delenv("MOTO_SIMPLE_BATCH_FAIL_AFTER", raising=False)
    with mock_aws(config=MOTO_CONFIG):
        submitted = patch_sfn_batch(monkeypatch)
        patch_sfn_s3(monkeypatch)  # CountImages reads the scrape manifest's body as text
        yield deploy_pipeline(), submitted


def _run(arns, body) -> dict:
    import time

    import boto3

    sfn = boto3.client("stepfunctions", region_name=REGION)
    arn = sfn.start_execution(stateMachineArn=arns["StateMachineArn"], name="run1",
                              input=json.dumps(body))["executionArn"]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        out = sfn.describe_execution(executionArn=arn)
        if out["status"] != "RUNNING":
            return out
        time.sleep(0.1)
    raise AssertionError("execution still running after 30s")


def _env(request) -> dict[str, str]:
    return {e["name"]: e["value"] for e in request.get("containerOverrides", {}).get("environment", [])
            if e["name"] != "MANAGED_BY_AWS"}


def _body(**kw):
    kw = {"features_threshold": 100, "feature_shards": 3, **kw}
    return pipeline_input(BUCKET, "flowers", "runs/x/f1", f"s3://{BUCKET}/datasets/flowers",
                          sections={"train": dict(TRAIN)}, **kw)


def test_above_the_threshold_features_run_as_an_array_then_train_reads_the_shards(aws):
    arns, submitted = aws
    body = _body(image_count=101)
    out = _run(arns, body)
    assert out["status"] == "SUCCEEDED", out
    assert [r["jobName"] for r in submitted] == ["headstart-features", "headstart-train",
                                                 "headstart-evaluate", "headstart-gradcam"]
    features, train = submitted[:2]
    shards = f"s3://{BUCKET}/runs/x/f1/features"
    assert features["jobDefinition"] == arns["FeaturesJobDefinitionArn"]
    assert features["jobQueue"] == arns["GpuJobQueueArn"]
    assert features["arrayProperties"] == {"size": 3}
    assert features["parameters"] == {"dataset": body["dataset"], "out": shards}
    # the backbone and split options come from the train section, so the shards match train
    assert _env(features) == {"HEADSTART_BACKBONE": "mobilenet_v2", "HEADSTART_IMAGE_SIZE": "160",
                              "HEADSTART_SEED": "9", "HEADSTART_SHARD_COUNT": "3"}
    assert train["jobDefinition"] == arns["TrainJobDefinitionArn"]
    assert train["parameters"] == {"dataset": body["dataset"], "out": body["model"]}
    assert _env(train)["HEADSTART_FEATURES"] == shards and _env(train)["HEADSTART_EPOCHS"] == "4"


@pytest.mark.parametrize("kw", [{"image_count": 100}, {"image_count": None},
                                {"image_count": 10**6, "features_threshold": 0}])
def test_at_or_below_the_threshold_or_unknown_train_decodes_the_images(aws, kw):
    arns, submitted = aws
    body = _body(**kw)
    assert _run(arns, body)["status"] == "SUCCEEDED"
    assert [r["jobName"] for r in submitted][:1] == ["headstart-train"]
    assert "HEADSTART_FEATURES" not in _env(submitted[0])


def test_train_options_that_need_pixels_keep_the_images_path(aws):
    arns, submitted = aws
    body = pipeline_input(BUCKET, "flowers", "runs/x/f2", f"s3://{BUCKET}/datasets/flowers",
                          sections={"train": {"fine_tune_layers": 10}}, image_count=10**6,
                          features_threshold=100, feature_shards=3)
    assert body["features"] is None
    assert _run(arns, body)["status"] == "SUCCEEDED"
    assert submitted[0]["jobName"] == "headstart-train"
    reference = pipeline_input(BUCKET, "f", "runs/x/f3", f"s3://{BUCKET}/datasets/f",
                               sections={"train": {"recipe": "reference"}}, features_threshold=1)
    assert {"Name": "HEADSTART_SPATIAL", "Value": "true"} in reference["environment"]["features"]


def test_a_scrape_above_the_threshold_counts_from_its_manifest(aws):
    import boto3

    arns, submitted = aws
    s3 = boto3.client("s3", region_name=REGION)
    # What scrape (or scrape-merge) publishes at the dataset root.
    s3.put_object(Bucket=BUCKET, Key="datasets/dogs/images/manifest.json",
                  Body=json.dumps({"job": "scrape", "images": 5000, "urls": 6000}))
    body = pipeline_input(BUCKET, "dogs", "runs/x/f4", f"s3://{BUCKET}/datasets/dogs/images",
                          urls_uri=f"s3://{BUCKET}/datasets/dogs/urls.csv", shards=2,
                          features_threshold=1000, feature_shards=4)
    out = _run(arns, body)
    assert out["status"] == "SUCCEEDED", out
    assert [r["jobName"] for r in submitted][:4] == ["headstart-scrape-array", "headstart-scrape-merge",
                                                     "headstart-features", "headstart-train"]
    assert submitted[2]["arrayProperties"] == {"size": 4}
    assert json.loads(out["output"])["image_count"] == 5000


def test_a_scrape_without_a_readable_manifest_trains_from_images(aws):
    arns, submitted = aws
    body = pipeline_input(BUCKET, "dogs", "runs/x/f5", f"s3://{BUCKET}/datasets/dogs/images",
                          urls_uri=f"s3://{BUCKET}/datasets/dogs/urls.csv", features_threshold=1)
    out = _run(arns, body)
    assert out["status"] == "SUCCEEDED"
    assert [r["jobName"] for r in submitted][:2] == ["headstart-scrape", "headstart-train"]
    assert "count_error" in json.loads(out["output"])


def test_the_upload_trigger_counts_an_uploaded_dataset(monkeypatch):
    import boto3
    from moto import mock_aws

    with mock_aws():
        arns = deploy_pipeline()
        for name, value in {"STATE_MACHINE_ARN": arns["StateMachineArn"], "TRIGGER_PREFIX": "datasets/",
                            "FEATURES_THRESHOLD": "3", "FEATURE_SHARDS": "2"}.items():
            monkeypatch.setenv(name, value)
        s3 = boto3.client("s3", region_name=REGION)
        for i in range(5):
            s3.put_object(Bucket=BUCKET, Key=f"datasets/big/cat/{i}.jpg", Body=b"x")
        s3.put_object(Bucket=BUCKET, Key="datasets/big/_READY", Body=b"")
        assert app.handler(s3_event("datasets/big/_READY"))["started"] == 1
        sfn = boto3.client("stepfunctions", region_name=REGION)
        execution = sfn.list_executions(stateMachineArn=arns["StateMachineArn"])["executions"][0]
        body = json.loads(sfn.describe_execution(executionArn=execution["executionArn"])["input"])
    assert body["image_count"] == 5  # _READY is not an image
    assert body["features"] == {"uri": f"s3://{BUCKET}/{body['run_prefix']}/features", "threshold": 3, "shards": 2}


def test_features_options_taken_from_train_are_the_specs_common_ones():
    from headstart.infra.cloud.dataset_config import PIPELINE_OWNED
    from headstart.jobs.features.spec import FeaturesSpec
    from headstart.jobs.train.spec import TrainSpec

    # batch_size/workers/overwrite mean other things per job; dataset/out are positional/set.
    common = set(FeaturesSpec.model_fields) & set(TrainSpec.model_fields)
    assert set(app.FEATURES_FROM_TRAIN) == common - PIPELINE_OWNED - {"dataset", "batch_size"}
