"""``headstart submit | status | results`` against moto (Step Functions, Batch, S3, CloudFormation)."""
from __future__ import annotations

import json
import time

import pytest

from moto_pipeline import BUCKET, REGION, deploy_pipeline, patch_sfn_batch

from headstart.shared.runtime import cli

MINE = ("submit", "status", "results", "train", "evaluate", "gradcam", "scrape", "features")


@pytest.fixture
def headstart(monkeypatch, capsys):
    """Run ``headstart ARGS...`` in-process; return (exit code, stdout, stderr)."""
    # Only the commands these tests use, so a sibling command being written elsewhere
    # cannot break the parser here.
    monkeypatch.setattr(cli, "COMMANDS", {k: v for k, v in cli.COMMANDS.items() if k in MINE})

    def call(*argv: str) -> tuple[int, str, str]:
        import logging

        root = logging.getLogger()
        for handler in [h for h in root.handlers if getattr(h, "_headstart", False)]:
            root.removeHandler(handler)  # re-created on the stderr capsys now captures
        code = cli.main(list(argv))
        out = capsys.readouterr()
        return code, out.out, out.err
    return call


@pytest.fixture
def stack(monkeypatch, tmp_path):
    """The pipeline in moto (state machine executes; Batch without containers)."""
    from moto import mock_aws

    monkeypatch.delenv("MOTO_SIMPLE_BATCH_FAIL_AFTER", raising=False)
    monkeypatch.setenv("HEADSTART_CONFIG", str(tmp_path / "cloud.yaml"))
    with mock_aws(config={"batch": {"use_docker": False}, "stepfunctions": {"execute_state_machine": True}}):
        submitted = patch_sfn_batch(monkeypatch)
        arns = deploy_pipeline()
        (tmp_path / "cloud.yaml").write_text(json.dumps({
            "region": REGION, "bucket": BUCKET, "state_machine": arns["StateMachineArn"],
            "gpu_queue": arns["GpuJobQueueArn"], "cpu_queue": arns["CpuJobQueueArn"]}))
        yield arns, submitted


def _field(out: str, key: str) -> str:
    return next(line.split(": ", 1)[1] for line in out.splitlines() if line.startswith(f"{key}: "))


def _wait(arn: str) -> None:
    import boto3

    sfn = boto3.client("stepfunctions", region_name=REGION)
    for _ in range(300):
        if sfn.describe_execution(executionArn=arn)["status"] != "RUNNING":
            return
        time.sleep(0.1)
    raise AssertionError("execution did not finish")


def test_submit_pipeline_starts_an_execution_and_status_follows_it(stack, headstart):
    arns, submitted = stack
    code, out, err = headstart("submit", "pipeline", f"s3://{BUCKET}/datasets/flowers",
                               "--args=--epochs 3 --backbone mobilenet_v2")
    assert code == 0, err
    arn = _field(out, "execution")
    assert arn.startswith(arns["StateMachineArn"].replace(":stateMachine:", ":execution:"))
    run = _field(out, "run")
    assert run.startswith(f"s3://{BUCKET}/runs/flowers/flowers-")
    assert f"headstart status {arn}" in out and f"headstart results {run}" in out
    _wait(arn)
    env = {e["name"]: e["value"] for e in submitted[0]["containerOverrides"]["environment"]}
    assert env["HEADSTART_EPOCHS"] == "3" and env["HEADSTART_BACKBONE"] == "mobilenet_v2"
    assert submitted[0]["parameters"]["out"] == f"{run}/model"
    code, out, err = headstart("status", arn)
    assert code == 0, err
    assert _field(out, "state") == "SUCCEEDED"
    assert _field(out, "step") == "Gradcam"  # the last step


def test_status_of_a_failed_pipeline_names_the_step_reason_and_log_stream(stack, headstart, monkeypatch):
    monkeypatch.setenv("MOTO_SIMPLE_BATCH_FAIL_AFTER", "0")
    code, out, _ = headstart("submit", "pipeline", f"s3://{BUCKET}/datasets/flowers", "--name", "broken")
    arn = _field(out, "execution")
    _wait(arn)
    code, out, err = headstart("status", arn)
    assert code == 0, err
    assert _field(out, "state") == "FAILED"
    assert _field(out, "step") == "Train"
    assert _field(out, "failure")
    assert _field(out, "batch job").endswith("(FAILED)")
    assert "log stream: " in out and "aws logs tail /aws/batch/job" in out


def test_submit_train_job_and_its_status(stack, headstart):
    arns, _ = stack
    code, out, err = headstart("submit", "train", f"s3://{BUCKET}/datasets/cats", "--run", f"s3://{BUCKET}/runs/mine")
    assert code == 0, err
    job_id = _field(out, "batch job")
    import boto3

    job = boto3.client("batch", region_name=REGION).describe_jobs(jobs=[job_id])["jobs"][0]
    assert job["jobQueue"] == arns["GpuJobQueueArn"]
    assert job["parameters"] == {"dataset": f"s3://{BUCKET}/datasets/cats", "out": f"s3://{BUCKET}/runs/mine/model"}
    code, out, err = headstart("status", job_id)
    assert code == 0, err
    assert _field(out, "state") == "SUCCEEDED" and "log stream: " in out


def test_submit_sharded_scrape_is_an_array_job_then_a_merge(stack, headstart):
    arns, _ = stack
    code, out, err = headstart("submit", "scrape", f"s3://{BUCKET}/datasets/dogs/urls.csv",
                               f"s3://{BUCKET}/datasets/dogs/images", "--shards", "3")
    assert code == 0, err
    ids = [line.split(": ")[1] for line in out.splitlines() if line.startswith("batch job: ")]
    import boto3

    scrape, merge = boto3.client("batch", region_name=REGION).describe_jobs(jobs=ids)["jobs"]
    assert scrape["arrayProperties"]["size"] == 3
    assert merge["dependsOn"] == [{"jobId": ids[0]}]
    assert merge["parameters"] == {"out": f"s3://{BUCKET}/datasets/dogs/images"}


@pytest.mark.parametrize("argv, message", [
    (("submit", "deploy", "x"), "what"),
    (("submit", "evaluate", "s3://b/model"), "takes MODEL DATASET"),
    (("submit", "train", "s3://b/d", "--args=--epochs many"), "epochs"),
    (("submit", "train", "s3://b/d", "--args=--out s3://elsewhere"), "the pipeline sets out"),
    (("submit", "train", "s3://b/d", "--args=--no-such-flag 1"), "unrecognized arguments"),
    (("submit", "train", "s3://b/d", "--run", "s3://other-bucket/x"), "--run must be a folder"),
    (("status", "not-a-job"), "no Batch job"),
    (("status", "arn:aws:states:us-east-1:123456789012:execution:pipeline:nope"), "no pipeline execution"),
])
def test_bad_input_exits_2_with_one_clear_line(stack, headstart, argv, message):
    code, out, err = headstart(*argv)
    assert code == 2
    assert message in err, err


def test_settings_come_from_the_stack_outputs(headstart, monkeypatch, tmp_path):
    import boto3
    from moto import mock_aws

    from headstart.infra.cloud.settings import CloudSpec, resolve

    monkeypatch.setenv("HEADSTART_CONFIG", str(tmp_path / "none.yaml"))
    (tmp_path / "none.yaml").write_text("{}")
    template = {"Resources": {"Topic": {"Type": "AWS::SNS::Topic"}},
                "Outputs": {"BucketName": {"Value": "from-stack"},
                            "TrainJobDefinitionArn": {"Value": "arn:aws:batch:us-east-1:1:job-definition/t:3"}}}
    with mock_aws():
        boto3.client("cloudformation", region_name=REGION).create_stack(
            StackName="mystack", TemplateBody=json.dumps(template))
        cloud = resolve(CloudSpec(stack="mystack", region=REGION))
        assert cloud.get("bucket") == "from-stack"
        assert cloud.job_definition("train").endswith("job-definition/t:3")
        assert cloud.job_definition("gradcam") == "mystack-gradcam"
        code, out, err = headstart("submit", "train", "s3://b/d", "--stack", "missing", "--region", REGION)
        assert code == 2 and "cannot read CloudFormation stack 'missing'" in err
        assert resolve(CloudSpec(stack="mystack", region=REGION, bucket="flag")).get("bucket") == "flag"


def test_results_lists_artifacts_prints_metrics_and_downloads_the_report(moto_server, headstart, tmp_path):
    from headstart.shared.storage.store import open_store

    run = open_store(f"s3://{moto_server.bucket}/runs/flowers/r1")
    run.write_text("model/manifest.json", "{}")
    run.write_text("eval/metrics.json", json.dumps({"accuracy": 0.91234, "top_k": {"3": 0.99}, "per_class": []}))
    run.write_text("eval/report.html", "<html>report</html>")
    run.write_text("eval/manifest.json", "{}")
    run.write_text("gradcam/_FAILURE.json", json.dumps({"message": "out of memory"}))
    code, out, err = headstart("results", run.uri, "--to", str(tmp_path / "dl"))
    assert code == 0, err
    assert "eval/report.html" in out and "published: eval, model" in out
    assert "accuracy: 0.9123" in out and "top_k.3: 0.99" in out
    assert "FAILED (gradcam/_FAILURE.json): out of memory" in out
    assert (tmp_path / "dl" / "eval" / "report.html").read_text() == "<html>report</html>"
    assert f"report: {(tmp_path / 'dl' / 'eval' / 'report.html').as_uri()}" in out
    code, _, err = headstart("results", f"s3://{moto_server.bucket}/runs/none")
    assert code == 2 and "no artifacts under" in err


# ------------------------------------------------------------------ failures explain themselves
def _failed_job_cause(job_id: str = "4b8f6a1e-0c2d-4e5f-9a7b-1c2d3e4f5a6b") -> str:
    """The ``cause`` of a failed batch:submitJob.sync task, as Step Functions writes it."""
    return json.dumps({
        "Attempts": [{"Container": {"ExitCode": 2, "LogStreamName": "headstart-train/default/abc123",
                                    "Reason": "CannotPullContainerError: no such tag"},
                      "StartedAt": 1767225600000, "StatusReason": "Essential container in task exited",
                      "StoppedAt": 1767225660000}],
        "Container": {"Command": ["train", "s3://b/d", "--out", "s3://b/runs/x/model"], "ExitCode": 2,
                      "Image": "1.dkr.ecr.us-east-1.amazonaws.com/headstart-headstart:abc123",
                      "LogStreamName": "headstart-train/default/abc123"},
        "JobId": job_id, "JobName": "headstart-train", "JobQueue": "arn:aws:batch:us-east-1:1:job-queue/gpu",
        "Status": "FAILED", "StatusReason": "Essential container in task exited"})


def _real_failed_history(arn: str) -> list[dict]:
    """A failed execution's history in the service's order: the Batch failure, the Catch's
    bookkeeping (whose copy of the scrape record may itself fail), then ExecutionFailed."""
    t = 0

    def ev(kind, **details):
        nonlocal t
        t += 1
        key = {"TaskStateEntered": "stateEnteredEventDetails", "PassStateEntered": "stateEnteredEventDetails",
               "FailStateEntered": "stateEnteredEventDetails", "ChoiceStateEntered": "stateEnteredEventDetails",
               "TaskStateExited": "stateExitedEventDetails", "PassStateExited": "stateExitedEventDetails",
               "ChoiceStateExited": "stateExitedEventDetails"}.get(kind, kind[0].lower() + kind[1:] + "EventDetails")
        return {"id": t, "type": kind, "timestamp": t, **({key: details} if details else {})}

    return [
        ev("ExecutionStarted", input="{}", roleArn="arn:aws:iam::1:role/p"),
        ev("ChoiceStateEntered", name="ScrapeNeeded"), ev("ChoiceStateExited", name="ScrapeNeeded"),
        ev("TaskStateEntered", name="Train"),
        ev("TaskScheduled", resourceType="batch", resource="submitJob.sync"),
        ev("TaskStarted", resourceType="batch", resource="submitJob.sync"),
        ev("TaskSubmitted", resourceType="batch", resource="submitJob.sync",
           output=json.dumps({"JobId": "4b8f6a1e-0c2d-4e5f-9a7b-1c2d3e4f5a6b", "JobName": "headstart-train"})),
        ev("TaskFailed", resourceType="batch", resource="submitJob.sync", error="States.TaskFailed",
           cause=_failed_job_cause()),
        ev("TaskStateExited", name="Train"),
        ev("PassStateEntered", name="TrainFailed"), ev("PassStateExited", name="TrainFailed"),
        ev("TaskStateEntered", name="RecordFailure"),
        ev("TaskScheduled", resourceType="aws-sdk:s3", resource="putObject"),
        ev("TaskFailed", resourceType="aws-sdk:s3", resource="putObject", error="S3.AccessDenied", cause="denied"),
        ev("TaskStateExited", name="RecordFailure"),
        ev("FailStateEntered", name="Failed"),
        ev("ExecutionFailed", error="Headstart.PipelineFailed", cause="A job failed or timed out; ..."),
    ]


class _FakeSfn:
    class exceptions:  # noqa: N801 - mirrors boto3's client.exceptions
        class ExecutionDoesNotExist(Exception):
            pass

    def __init__(self, events):
        self.events = events

    def describe_execution(self, executionArn):
        return {"executionArn": executionArn, "status": "FAILED"}

    def get_paginator(self, name):
        events = self.events

        class _Pages:
            def paginate(self, **kw):
                # The service returns pages newest first when asked; status must not rely on it.
                return [{"events": list(reversed(events[8:]))}, {"events": list(reversed(events[:8]))}]
        return _Pages()


def test_status_names_the_failed_step_job_reason_exit_code_and_log_stream_in_the_real_event_order():
    from headstart.infra.cloud.settings import Cloud
    from headstart.infra.cloud.status import format_status, get_status

    arn = "arn:aws:states:us-east-1:1:execution:headstart-pipeline:flowers-1"

    class _Cloud(Cloud):
        def client(self, service):
            if service == "stepfunctions":
                return _FakeSfn(_real_failed_history(arn))
            raise AssertionError(f"unexpected client {service}")

    import headstart.infra.cloud.status as status_module

    original = status_module._add_job
    status_module._add_job = lambda cloud, status: None  # the job aged out of Batch: history only
    try:
        status = get_status(_Cloud("s", None), arn)
    finally:
        status_module._add_job = original
    text = format_status(status)
    assert status.step == "Train"  # not RecordFailure (which failed later) nor the Fail state
    assert status.job_id == "4b8f6a1e-0c2d-4e5f-9a7b-1c2d3e4f5a6b"
    assert "Essential container in task exited: CannotPullContainerError: no such tag" in status.reason
    assert status.exit_code == 2 and status.log_stream == "headstart-train/default/abc123"
    assert "A job failed or timed out" not in text
    assert "exit code: 2" in text and "aws logs tail /aws/batch/job --log-stream-names headstart-train" in text


def test_a_moto_executed_failing_pipeline_shows_the_batch_reason_in_status_and_results(stack, headstart,
                                                                                      monkeypatch, tmp_path):
    monkeypatch.setenv("MOTO_SIMPLE_BATCH_FAIL_AFTER", "0")
    code, out, _ = headstart("submit", "pipeline", f"s3://{BUCKET}/datasets/flowers", "--name", "broken")
    arn, run = _field(out, "execution"), _field(out, "run")
    _wait(arn)
    code, out, err = headstart("status", arn)
    assert code == 0, err
    assert _field(out, "step") == "Train" and "_PIPELINE_FAILURE" not in _field(out, "failure")
    assert _field(out, "failure").startswith("States.TaskFailed")
    job = _field(out, "batch job").split()[0]
    code, out, err = headstart("results", run, "--to", str(tmp_path))
    assert code == 0, err
    assert f"FAILED (_PIPELINE_FAILURE.json): step: Train; error: States.TaskFailed; batch job: {job}" in out
    # ... and the whole record after it, the Batch job description decoded.
    assert '"JobName": "headstart-train"' in out and f'"execution": "{arn}"' in out


# ------------------------------------------------------------------ buckets, names, config, predict
def test_submit_refuses_uris_the_stack_cannot_read_or_write_naming_read_buckets(stack, headstart):
    code, _, err = headstart("submit", "train", "s3://someone-elses/datasets/x")
    assert code == 2 and "ReadBuckets" in err and "s3://someone-elses/datasets/x" in err
    code, _, err = headstart("submit", "evaluate", f"s3://{BUCKET}/runs/r/model", "/home/me/data")
    assert code == 2 and "DATASET must be an s3:// URI" in err
    code, _, err = headstart("submit", "scrape", f"s3://{BUCKET}/u.csv", "s3://shared-data/out")
    assert code == 2 and "stack's data bucket" in err
    code, out, err = headstart("submit", "train", "s3://shared-data/datasets/x", "--read-buckets", "shared-data")
    assert code == 0, err


def test_two_submits_with_the_same_name_in_one_second_both_start(stack, headstart):
    arns = set()
    for _ in range(2):
        code, out, err = headstart("submit", "pipeline", f"s3://{BUCKET}/datasets/flowers", "--name", "same")
        assert code == 0, err
        arns.add(_field(out, "execution"))
    assert len(arns) == 2
    for arn in arns:
        _wait(arn)


def test_submit_pipeline_spec_passes_each_job_its_section(stack, headstart, tmp_path):
    arns, submitted = stack
    spec = tmp_path / "headstart.yaml"
    spec.write_text("train:\n  epochs: 4\nevaluate:\n  batch_size: 8\n")
    code, out, err = headstart("submit", "pipeline", f"s3://{BUCKET}/datasets/flowers", "--spec", str(spec),
                               "--args=--backbone mobilenet_v2")
    assert code == 0, err
    _wait(_field(out, "execution"))
    env = {r["jobName"]: {e["name"]: e["value"] for e in r.get("containerOverrides", {}).get("environment", [])}
           for r in submitted}
    assert env["headstart-train"]["HEADSTART_EPOCHS"] == "4"
    assert env["headstart-train"]["HEADSTART_BACKBONE"] == "mobilenet_v2"
    assert env["headstart-evaluate"]["HEADSTART_BATCH_SIZE"] == "8"


def test_a_bad_config_beside_the_dataset_starts_nothing(stack, headstart):
    import boto3

    arns, _ = stack
    s3 = boto3.client("s3", region_name=REGION)
    s3.put_object(Bucket=BUCKET, Key="datasets/bad/headstart.yaml", Body=b"train:\n  epochs: 0\n")
    code, out, err = headstart("submit", "pipeline", f"s3://{BUCKET}/datasets/bad")
    assert code == 2 and "datasets/bad/headstart.yaml" in err and "train" in err and "epochs" in err
    sfn = boto3.client("stepfunctions", region_name=REGION)
    assert sfn.list_executions(stateMachineArn=arns["StateMachineArn"])["executions"] == []


def test_submit_predict_shards_as_an_array_then_a_merge_on_the_cpu_queue(stack, headstart):
    arns, _ = stack
    code, out, err = headstart("submit", "predict", f"s3://{BUCKET}/runs/r1/model", f"s3://{BUCKET}/new/",
                               "--shards", "2", "--run", f"s3://{BUCKET}/runs/r1")
    assert code == 0, err
    ids = [line.split(": ")[1] for line in out.splitlines() if line.startswith("batch job: ")]
    import boto3

    predict, merge = boto3.client("batch", region_name=REGION).describe_jobs(jobs=ids)["jobs"]
    assert predict["jobQueue"] == arns["GpuJobQueueArn"] and predict["arrayProperties"]["size"] == 2
    assert predict["parameters"] == {"model": f"s3://{BUCKET}/runs/r1/model", "images": f"s3://{BUCKET}/new/",
                                     "out": f"s3://{BUCKET}/runs/r1/predict"}
    assert merge["jobQueue"] == arns["CpuJobQueueArn"] and merge["dependsOn"] == [{"jobId": ids[0]}]
    assert merge["jobDefinition"].split("/")[-1].startswith("headstart-predict-merge")


def test_status_names_the_digest_of_an_immutable_ecr_tag():
    import boto3
    from moto import mock_aws

    from headstart.infra.cloud.settings import Cloud
    from headstart.infra.cloud.status import image_with_digest

    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                           "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                                      "size": 1, "digest": "sha256:" + "1" * 64}, "layers": []})
    with mock_aws():
        ecr = boto3.client("ecr", region_name=REGION)
        uri = ecr.create_repository(repositoryName="headstart-headstart")["repository"]["repositoryUri"]
        digest = ecr.put_image(repositoryName="headstart-headstart", imageManifest=manifest,
                               imageTag="abc123")["image"]["imageId"]["imageDigest"]
        cloud = Cloud("headstart", REGION)
        assert image_with_digest(cloud, f"{uri}:abc123") == f"{uri}:abc123 ({digest})"
        assert image_with_digest(cloud, f"{uri}:gone") == f"{uri}:gone"  # unknown tag: as given
        assert image_with_digest(cloud, f"{uri}@{digest}") == f"{uri}@{digest}"
        assert image_with_digest(cloud, "headstart:test") == "headstart:test"


def test_submit_features_shards_the_backbone_pass_as_an_array_job(stack, headstart):
    arns, _ = stack
    code, out, err = headstart("submit", "features", f"s3://{BUCKET}/datasets/big", "--shards", "3",
                               "--run", f"s3://{BUCKET}/runs/big", "--args=--backbone mobilenet_v2 --spatial")
    assert code == 0, err
    ids = [line.split(": ")[1] for line in out.splitlines() if line.startswith("batch job: ")]
    import boto3

    (job,) = boto3.client("batch", region_name=REGION).describe_jobs(jobs=ids)["jobs"]
    assert job["jobQueue"] == arns["GpuJobQueueArn"] and job["arrayProperties"]["size"] == 3
    assert job["jobDefinition"].split("/")[-1].startswith("headstart-features")
    assert job["parameters"] == {"dataset": f"s3://{BUCKET}/datasets/big", "out": f"s3://{BUCKET}/runs/big/features"}
    env = {e["name"]: e["value"] for e in job["container"]["environment"]}
    assert env["HEADSTART_SHARD_COUNT"] == "3" and env["HEADSTART_SPATIAL"] == "true"
    code, _, err = headstart("submit", "features", f"s3://{BUCKET}/datasets/big", "--args=--spatial maybe")
    assert code == 2 and "spatial" in err
