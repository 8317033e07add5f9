"""The pipeline run by moto's Step Functions interpreter against moto Batch (no containers)."""
from __future__ import annotations

import json
import time

import pytest

from moto_pipeline import BUCKET, REGION, deploy_pipeline, patch_sfn_batch

from headstart.infra.trigger.app import pipeline_input

MOTO_CONFIG = {"batch": {"use_docker": False}, "stepfunctions": {"execute_state_machine": True}}


@pytest.fixture
def aws(monkeypatch):
    from moto import mock_aws

    monkeypatch.delenv("MOTO_SIMPLE_BATCH_FAIL_AFTER", raising=False)
    with mock_aws(config=MOTO_CONFIG):
        submitted = patch_sfn_batch(monkeypatch)
        yield deploy_pipeline(), submitted


def _run(arns, body, timeout: float = 30.0) -> dict:
    import boto3

    sfn = boto3.client("stepfunctions", region_name=REGION)
    arn = sfn.start_execution(stateMachineArn=arns["StateMachineArn"], name="run1",
                              input=json.dumps(body))["executionArn"]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = sfn.describe_execution(executionArn=arn)
        if out["status"] != "RUNNING":
            return out
        time.sleep(0.1)
    raise AssertionError(f"execution still running after {timeout}s")


def _env(request) -> dict[str, str]:
    return {e["name"]: e["value"] for e in request.get("containerOverrides", {}).get("environment", [])}


def test_success_runs_train_evaluate_gradcam_with_the_run_layout(aws):
    arns, submitted = aws
    body = pipeline_input(BUCKET, "flowers", "runs/x/r1", f"s3://{BUCKET}/datasets/flowers",
                          train_environment=[{"Name": "HEADSTART_EPOCHS", "Value": "3"}])
    out = _run(arns, body)
    assert out["status"] == "SUCCEEDED", out
    assert [r["jobName"] for r in submitted] == ["headstart-train", "headstart-evaluate", "headstart-gradcam"]
    train, evaluate, gradcam = submitted
    assert train["jobQueue"] == arns["GpuJobQueueArn"]
    assert train["jobDefinition"] == arns["TrainJobDefinitionArn"]
    assert train["parameters"] == {"dataset": body["dataset"], "out": body["model"]}
    assert _env(train)["HEADSTART_EPOCHS"] == "3"
    assert evaluate["parameters"] == {"model": body["model"], "dataset": body["dataset"],
                                      "out": body["evaluation"]}
    assert gradcam["parameters"]["out"] == f"s3://{BUCKET}/runs/x/r1/gradcam"
    result = json.loads(out["output"])
    assert set(result["jobs"]) == {"train", "evaluate", "gradcam"}


def test_a_large_url_list_scrapes_as_an_array_job_on_the_cpu_queue(aws):
    arns, submitted = aws
    body = pipeline_input(BUCKET, "dogs", "runs/x/r2", f"s3://{BUCKET}/datasets/dogs/images",
                          urls_uri=f"s3://{BUCKET}/datasets/dogs/urls.csv", shards=4)
    assert _run(arns, body)["status"] == "SUCCEEDED"
    scrape = submitted[0]
    assert scrape["jobName"] == "headstart-scrape-array"
    assert scrape["jobQueue"] == arns["CpuJobQueueArn"]
    assert scrape["arrayProperties"] == {"size": 4}
    assert _env(scrape)["HEADSTART_SHARD_COUNT"] == "4"
    assert scrape["parameters"] == {"urls": body["urls"], "out": body["dataset"]}
    merge = submitted[1]
    assert (merge["jobName"], merge["parameters"]) == ("headstart-scrape-merge", {"out": body["dataset"]})
    assert merge["jobDefinition"] == arns["ScrapeMergeJobDefinitionArn"]
    assert [r["jobName"] for r in submitted[2:]] == ["headstart-train", "headstart-evaluate", "headstart-gradcam"]


def test_a_small_url_list_scrapes_in_one_job(aws):
    arns, submitted = aws
    body = pipeline_input(BUCKET, "dogs", "runs/x/r3", f"s3://{BUCKET}/datasets/dogs/images",
                          urls_uri=f"s3://{BUCKET}/datasets/dogs/urls.csv", shards=1)
    assert _run(arns, body)["status"] == "SUCCEEDED"
    assert submitted[0]["jobName"] == "headstart-scrape" and "arrayProperties" not in submitted[0]
    assert submitted[1]["jobName"] == "headstart-train"  # an unsharded scrape merges itself


def test_a_failing_job_ends_in_the_catch_and_records_the_failure_next_to_the_run(aws, monkeypatch):
    import boto3

    arns, submitted = aws
    monkeypatch.setenv("MOTO_SIMPLE_BATCH_FAIL_AFTER", "0")  # every moto Batch job fails
    body = pipeline_input(BUCKET, "flowers", "runs/x/r4", f"s3://{BUCKET}/datasets/flowers")
    out = _run(arns, body)
    assert out["status"] == "FAILED"
    assert [r["jobName"] for r in submitted] == ["headstart-train"]  # nothing after the failure
    s3 = boto3.client("s3", region_name=REGION)
    record = json.loads(s3.get_object(Bucket=BUCKET, Key="runs/x/r4/_PIPELINE_FAILURE.json")["Body"].read())
    assert record["Error"] == "States.TaskFailed"
    assert json.loads(record["Cause"])["JobName"] == "headstart-train"
