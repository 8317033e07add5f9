"""The pipeline run by moto's Step Functions interpreter against moto Batch (no containers)."""
from __future__ import annotations

import json
import time

import pytest

from infra_helpers import load_template, resources, state_machine_definition
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
    # moto's Step Functions adds MANAGED_BY_AWS to every job's environment.
    return {e["name"]: e["value"] for e in request.get("containerOverrides", {}).get("environment", [])
            if e["name"] != "MANAGED_BY_AWS"}


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

    from headstart.infra.cloud.failure import explain

    arns, submitted = aws
    monkeypatch.setenv("MOTO_SIMPLE_BATCH_FAIL_AFTER", "0")  # every moto Batch job fails
    body = pipeline_input(BUCKET, "flowers", "runs/x/r4", f"s3://{BUCKET}/datasets/flowers")
    out = _run(arns, body)
    assert out["status"] == "FAILED"
    assert [r["jobName"] for r in submitted] == ["headstart-train"]  # nothing after the failure
    s3 = boto3.client("s3", region_name=REGION)
    record = json.loads(s3.get_object(Bucket=BUCKET, Key="runs/x/r4/_PIPELINE_FAILURE.json")["Body"].read())
    assert record["step"] == "Train" and record["error"] == "States.TaskFailed"
    assert record["run_prefix"] == "runs/x/r4" and record["execution"] == out["executionArn"]
    explained = explain(record)
    assert explained.job_name == "headstart-train" and explained.job_id
    assert explained.log_stream  # where to read the job's output


def test_every_batch_step_has_a_timeout_and_a_catch_naming_the_step():
    definition = state_machine_definition()
    states = definition["States"]
    tasks = {n: s for n, s in states.items() if s.get("Resource", "").startswith("arn:aws:states:::batch:")}
    assert set(tasks) == {"Scrape", "ScrapeArray", "ScrapeMerge", "FeaturesArray", "Audit", "Train", "Evaluate",
                          "Gradcam"}
    template = load_template()
    attempts = {name: props["Timeout"]["AttemptDurationSeconds"] * props["RetryStrategy"]["Attempts"]
                for name, props in resources(template, "AWS::Batch::JobDefinition")}
    runnable_max = template["Parameters"]["RunnableTimeoutSeconds"]["MaxValue"]
    for name, state in tasks.items():
        # Long enough for the queue wait plus every attempt, so Batch's own limits fire first.
        definition_name = state["Parameters"]["JobDefinition"].strip("${}").replace("Arn", "")
        assert state["TimeoutSeconds"] >= runnable_max + attempts[definition_name], name
        catch = state["Catch"][0]
        assert catch["ErrorEquals"] == ["States.ALL"] and catch["Next"] == f"{name}Failed"
        named = states[f"{name}Failed"]
        assert named["Parameters"]["step"] == name
        assert states[named["Next"]]["Type"] == "Task"  # RecordFailure (or the scrape copy first)
    # The execution itself is bounded too, above the longest path of step timeouts.
    longest = sum(tasks[n]["TimeoutSeconds"] for n in ("ScrapeArray", "ScrapeMerge", "FeaturesArray", "Audit",
                                                       "Train", "Evaluate", "Gradcam"))
    assert definition["TimeoutSeconds"] >= longest


def test_a_step_past_its_timeout_ends_in_the_catch_with_states_timeout(monkeypatch):
    """A job stuck in the queue: moto's Batch holds the submission, the step's TimeoutSeconds fires."""
    import boto3
    from moto import mock_aws

    definition = state_machine_definition()
    definition["States"]["Train"]["TimeoutSeconds"] = 1
    monkeypatch.setenv("MOTO_SIMPLE_BATCH_FAIL_AFTER", "4")
    with mock_aws(config=MOTO_CONFIG):
        patch_sfn_batch(monkeypatch)
        arns = deploy_pipeline(definition)
        body = pipeline_input(BUCKET, "flowers", "runs/x/r5", f"s3://{BUCKET}/datasets/flowers")
        out = _run(arns, body)
        assert out["status"] == "FAILED"
        s3 = boto3.client("s3", region_name=REGION)
        record = json.loads(s3.get_object(Bucket=BUCKET, Key="runs/x/r5/_PIPELINE_FAILURE.json")["Body"].read())
        assert (record["step"], record["error"]) == ("Train", "States.Timeout")


def test_each_job_gets_its_headstart_yaml_section(aws):
    arns, submitted = aws
    sections = {"scrape": {"min_success": 0.8, "seed": 7, "max_bytes": 4096}, "train": {"epochs": 4},
                "evaluate": {"batch_size": 16}, "gradcam": {"alpha": 0.3}}
    body = pipeline_input(BUCKET, "dogs", "runs/x/r6", f"s3://{BUCKET}/datasets/dogs/images",
                          urls_uri=f"s3://{BUCKET}/datasets/dogs/urls.csv", shards=3, sections=sections,
                          train_environment=[{"Name": "HEADSTART_EPOCHS", "Value": "9"}])
    assert _run(arns, body)["status"] == "SUCCEEDED"
    envs = {r["jobName"]: _env(r) for r in submitted}
    assert envs["headstart-scrape-array"] == {"HEADSTART_MIN_SUCCESS": "0.8", "HEADSTART_SEED": "7",
                                              "HEADSTART_MAX_BYTES": "4096", "HEADSTART_SHARD_COUNT": "3"}
    # The merge takes the split settings only (it has no download options).
    assert envs["headstart-scrape-merge"] == {"HEADSTART_MIN_SUCCESS": "0.8", "HEADSTART_SEED": "7"}
    assert envs["headstart-train"] == {"HEADSTART_EPOCHS": "9"}  # --args win over the config
    assert envs["headstart-evaluate"] == {"HEADSTART_BATCH_SIZE": "16"}
    assert envs["headstart-gradcam"] == {"HEADSTART_ALPHA": "0.3"}


def test_pipeline_scrapes_with_min_success_one_half_by_default(aws):
    arns, submitted = aws
    body = pipeline_input(BUCKET, "dogs", "runs/x/r7", f"s3://{BUCKET}/datasets/dogs/images",
                          urls_uri=f"s3://{BUCKET}/datasets/dogs/urls.csv")
    assert _run(arns, body)["status"] == "SUCCEEDED"
    assert _env(submitted[0]) == {"HEADSTART_MIN_SUCCESS": "0.5"}


def test_a_failed_scrape_copies_its_own_failure_record_into_the_run_folder(aws, monkeypatch):
    import boto3

    arns, _ = aws
    s3 = boto3.client("s3", region_name=REGION)
    # What the scrape job leaves when too few URLs yield images.
    s3.put_object(Bucket=BUCKET, Key="datasets/dogs/images/_FAILURE.json",
                  Body=json.dumps({"message": "only 2 of 10 URLs (20%) gave an image; --min-success is 0.5"}))
    monkeypatch.setenv("MOTO_SIMPLE_BATCH_FAIL_AFTER", "0")
    body = pipeline_input(BUCKET, "dogs", "runs/x/r8", f"s3://{BUCKET}/datasets/dogs/images",
                          urls_uri=f"s3://{BUCKET}/datasets/dogs/urls.csv")
    assert _run(arns, body)["status"] == "FAILED"
    copied = json.loads(s3.get_object(Bucket=BUCKET, Key="runs/x/r8/scrape/_FAILURE.json")["Body"].read())
    assert "min-success" in copied["message"]
    record = json.loads(s3.get_object(Bucket=BUCKET, Key="runs/x/r8/_PIPELINE_FAILURE.json")["Body"].read())
    assert record["step"] == "Scrape"


def test_audit_on_runs_before_train_and_train_excludes_what_it_flags(aws):
    arns, submitted = aws
    body = pipeline_input(BUCKET, "dogs", "runs/x/a1", f"s3://{BUCKET}/datasets/dogs/images",
                          urls_uri=f"s3://{BUCKET}/datasets/dogs/urls.csv",
                          sections={"audit": {"folds": 3}, "train": {"epochs": 2}})
    out = _run(arns, body)
    assert out["status"] == "SUCCEEDED", out
    assert [r["jobName"] for r in submitted] == ["headstart-scrape", "headstart-audit", "headstart-train",
                                                 "headstart-evaluate", "headstart-gradcam"]
    audit, train = submitted[1], submitted[2]
    assert audit["jobDefinition"] == arns["AuditJobDefinitionArn"]
    assert audit["jobQueue"] == arns["GpuJobQueueArn"]
    assert audit["parameters"] == {"dataset": body["dataset"], "out": f"s3://{BUCKET}/runs/x/a1/audit"}
    assert _env(audit) == {"HEADSTART_FOLDS": "3"}
    assert _env(train) == {"HEADSTART_EPOCHS": "2", "HEADSTART_EXCLUDE": f"s3://{BUCKET}/runs/x/a1/audit"}
    assert set(json.loads(out["output"])["jobs"]) == {"scrape", "audit", "train", "evaluate", "gradcam"}


@pytest.mark.parametrize("config", [{}, {"audit": False}])
def test_audit_off_goes_straight_to_train_without_an_exclude(aws, config):
    from headstart.infra.trigger import dataset_config

    arns, submitted = aws
    body = pipeline_input(BUCKET, "flowers", "runs/x/a2", f"s3://{BUCKET}/datasets/flowers",
                          sections=dataset_config.sections(config))
    assert body["audit"] is False
    assert _run(arns, body)["status"] == "SUCCEEDED"
    assert [r["jobName"] for r in submitted] == ["headstart-train", "headstart-evaluate", "headstart-gradcam"]
    assert "HEADSTART_EXCLUDE" not in _env(submitted[0])


def test_a_failing_audit_is_recorded_and_train_never_starts(aws, monkeypatch):
    import boto3

    arns, submitted = aws
    monkeypatch.setenv("MOTO_SIMPLE_BATCH_FAIL_AFTER", "0")
    body = pipeline_input(BUCKET, "flowers", "runs/x/a3", f"s3://{BUCKET}/datasets/flowers",
                          sections={"audit": {}})
    assert _run(arns, body)["status"] == "FAILED"
    assert [r["jobName"] for r in submitted] == ["headstart-audit"]
    s3 = boto3.client("s3", region_name=REGION)
    record = json.loads(s3.get_object(Bucket=BUCKET, Key="runs/x/a3/_PIPELINE_FAILURE.json")["Body"].read())
    assert record["step"] == "Audit"
