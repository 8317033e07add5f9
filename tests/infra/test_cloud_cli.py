"""``headstart submit | status | results`` against moto (Step Functions, Batch, S3, CloudFormation)."""
from __future__ import annotations

import json
import time

import pytest

from moto_pipeline import BUCKET, REGION, deploy_pipeline, patch_sfn_batch

from headstart.shared.runtime import cli

MINE = ("submit", "status", "results", "train", "evaluate")


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
