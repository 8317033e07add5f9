"""The SAM template: lint (before and after the SAM transform), job commands, IAM, wiring."""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from infra_helpers import (PLACEHOLDER, ROOT, TEMPLATE, load_template, resources,
                           state_machine_definition, transformed_template)

JOB_DEFINITIONS = {"TrainJobDefinition": "train", "EvaluateJobDefinition": "evaluate",
                   "GradcamJobDefinition": "gradcam", "ScrapeJobDefinition": "scrape",
                   "ScrapeMergeJobDefinition": "scrape-merge", "PredictJobDefinition": "predict",
                   "PredictMergeJobDefinition": "predict-merge", "AuditJobDefinition": "audit",
                   "FeaturesJobDefinition": "features"}
GPU_JOBS = {"train", "evaluate", "gradcam", "predict", "audit", "features"}
# The one AWS managed policy we allow: what the ECS agent on a Batch instance needs.
ALLOWED_MANAGED = ("service-role/AmazonEC2ContainerServiceforEC2Role",
                   "service-role/AWSLambdaBasicExecutionRole")


def _cfn_lint(path: Path) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("cfn-lint")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "cfnlint"]
    return subprocess.run([*cmd, str(path)], capture_output=True, text=True, timeout=120)


def test_cfn_lint_passes_on_the_sam_template():
    result = _cfn_lint(TEMPLATE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_cfn_lint_passes_after_the_sam_transform(tmp_path):
    # cfn-lint validates SAM resources directly; only the transformed template shows the
    # generated roles, permissions and notifications, and dependency cycles between them.
    out = tmp_path / "transformed.json"
    out.write_text(json.dumps(transformed_template(), indent=1))
    result = _cfn_lint(out)
    assert result.returncode == 0, result.stdout + result.stderr


def _job_definitions(template):
    return dict(resources(template, "AWS::Batch::JobDefinition"))


def test_one_job_definition_per_job_with_gpu_only_where_needed():
    defs = _job_definitions(load_template())
    assert set(defs) == set(JOB_DEFINITIONS)
    for name, props in defs.items():
        job = JOB_DEFINITIONS[name]
        reqs = {r["Type"]: r["Value"] for r in props["ContainerProperties"]["ResourceRequirements"]}
        expected = {"Ref": "TrainGpuCount"} if job == "train" else "1" if job in GPU_JOBS else None
        assert reqs.get("GPU") == expected, name
        assert props["Timeout"]["AttemptDurationSeconds"] > 0


def test_retry_strategy_retries_host_loss_and_exits_on_application_errors():
    for name, props in _job_definitions(load_template()).items():
        rules = props["RetryStrategy"]["EvaluateOnExit"]
        assert props["RetryStrategy"]["Attempts"] >= 2, name
        assert {"OnStatusReason": "Host EC2*", "Action": "RETRY"} in rules, name
        assert rules[-1] == {"OnReason": "*", "Action": "EXIT"}, f"{name}: last rule must be the catch-all EXIT"


def _substitute_refs(command: list[str], params: dict[str, str]) -> list[str]:
    out = []
    for part in command:
        if part.startswith("Ref::"):
            key = part[len("Ref::"):]
            assert key in params, f"{part} has no default in the job definition's Parameters"
            part = f"s3://bucket/{key}"
        out.append(part)
    return out


def _parser_for(job: str, monkeypatch: pytest.MonkeyPatch) -> argparse.ArgumentParser:
    """``headstart.shared.runtime.cli.build_parser()`` restricted to one command, so that a sibling command still
    being written elsewhere cannot hide this one; skip while ``job`` is not available."""
    import importlib

    from headstart.shared.runtime import cli

    if job not in cli.COMMANDS:
        pytest.skip(f"`headstart {job}` is not registered in headstart.shared.runtime.cli.COMMANDS yet")
    try:
        importlib.import_module(cli.COMMANDS[job])
    except ImportError as exc:
        pytest.skip(f"`headstart {job}` is registered but not importable yet: {exc}")
    monkeypatch.setattr(cli, "COMMANDS", {job: cli.COMMANDS[job]})
    return cli.build_parser()


@pytest.mark.parametrize("logical_id", sorted(JOB_DEFINITIONS))
def test_job_definition_command_is_a_real_headstart_command(logical_id, monkeypatch):
    props = _job_definitions(load_template())[logical_id]
    command = _substitute_refs(props["ContainerProperties"]["Command"], props.get("Parameters", {}))
    job = JOB_DEFINITIONS[logical_id]
    assert command[0] == job
    args = _parser_for(job, monkeypatch).parse_args(command)  # SystemExit on a bad flag
    assert args.command == job
    assert getattr(args, "out", None) == "s3://bucket/out"
    for value in command[1:]:
        if value.startswith("s3://"):
            assert value in vars(args).values(), f"{value} did not land in an argument of `{job}`"


def test_every_state_machine_placeholder_is_substituted():
    template = load_template()
    machine = dict(resources(template, "AWS::Serverless::StateMachine"))["Pipeline"]
    used = set(PLACEHOLDER.findall(json.dumps(state_machine_definition())))
    provided = set(machine["DefinitionSubstitutions"])
    assert used, "the definition should use ${...} substitutions"
    assert used <= provided, f"not substituted: {sorted(used - provided)}"
    assert provided <= used, f"substituted but unused: {sorted(provided - used)}"
    assert (ROOT / machine["DefinitionUri"]).is_file()


def test_state_machine_tasks_use_sync_batch_with_throttling_retry_and_catch():
    states = state_machine_definition()["States"]
    batch = {n: s for n, s in states.items() if s.get("Resource", "").startswith("arn:aws:states:::batch:")}
    assert {"Scrape", "ScrapeArray", "ScrapeMerge", "Train", "Evaluate", "Gradcam"} <= set(batch)
    for name, state in batch.items():
        assert state["Resource"].endswith("submitJob.sync"), name
        retry = state["Retry"][0]
        assert "Batch.TooManyRequestsException" in retry["ErrorEquals"] and retry["BackoffRate"] > 1
        assert state["Catch"][0]["Next"] == f"{name}Failed"  # names the step, then RecordFailure
    assert "ArrayProperties" in states["ScrapeArray"]["Parameters"]
    assert states["ScrapeArray"]["Next"] == "ScrapeMerge" and states["ScrapeMerge"]["Next"] == "CountImages"
    assert "ArrayProperties" in states["FeaturesArray"]["Parameters"]
    assert states["FeaturesArray"]["Next"] == "UseFeatures" and states["UseFeatures"]["Next"] == "AuditNeeded"
    assert states["FeaturesNeeded"]["Default"] == "AuditNeeded"
    # The optional audit: a choice on the input's `audit` flag, then train either way.
    assert states["AuditNeeded"]["Choices"][0]["Next"] == "Audit" and states["AuditNeeded"]["Default"] == "Train"
    assert states["Audit"]["Next"] == "Train"


def _statements(template):
    for name, res in template["Resources"].items():
        if res["Type"] != "AWS::IAM::Role":
            continue
        for policy in res["Properties"].get("Policies", []):
            for st in policy["PolicyDocument"]["Statement"]:
                yield name, st
        for arn in res["Properties"].get("ManagedPolicyArns", []):
            text = json.dumps(arn)
            assert any(text.endswith(f'/{m}"') or f"policy/{m}" in text for m in ALLOWED_MANAGED), \
                f"{name}: unexpected managed policy {text}"


def _as_list(value):
    return value if isinstance(value, list) else [value]


def test_every_role_is_least_privilege():
    template = transformed_template()  # includes the roles SAM generates
    seen = 0
    for role, st in _statements(template):
        seen += 1
        if st.get("Effect") != "Allow":
            continue
        actions = _as_list(st.get("Action", []))
        res = _as_list(st.get("Resource", []))
        assert not any(a == "*" or a.endswith(":*") for a in actions), f"{role}: wildcard action {actions}"
        if "*" in res:
            # Only read-only calls that have no resource-level permissions may use "*".
            assert set(actions) <= {"batch:DescribeJobs"}, f"{role}: {actions} on '*'"
    assert seen >= 5


def test_launch_template_requires_imdsv2_with_hop_limit_one():
    (_, props), = resources(load_template(), "AWS::EC2::LaunchTemplate")
    meta = props["LaunchTemplateData"]["MetadataOptions"]
    assert meta["HttpTokens"] == "required" and meta["HttpPutResponseHopLimit"] == 1
    for name, ce in resources(load_template(), "AWS::Batch::ComputeEnvironment"):
        assert "LaunchTemplate" in ce["ComputeResources"], name


def test_bucket_is_versioned_encrypted_private_and_expires_temporary_data():
    (_, bucket), = resources(load_template(), "AWS::S3::Bucket")
    assert bucket["VersioningConfiguration"]["Status"] == "Enabled"
    assert bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert all(bucket["PublicAccessBlockConfiguration"].values())
    rules = bucket["LifecycleConfiguration"]["Rules"]
    assert any(r.get("Prefix") == {"Ref": "TemporaryPrefix"} and r.get("ExpirationInDays") for r in rules)


def test_gpu_queue_tries_spot_before_on_demand():
    template = load_template()
    queues = dict(resources(template, "AWS::Batch::JobQueue"))
    order = queues["GpuJobQueue"]["ComputeEnvironmentOrder"]
    assert order[0] == {"Order": 1, "ComputeEnvironment": {"Ref": "GpuComputeEnvironment"}}
    fallback = order[1]["Fn::If"][1]
    assert fallback["ComputeEnvironment"] == {"Ref": "GpuOnDemandComputeEnvironment"}
    envs = dict(resources(template, "AWS::Batch::ComputeEnvironment"))
    assert envs["GpuOnDemandComputeEnvironment"]["ComputeResources"]["Type"] == "EC2"


def test_upload_trigger_subscribes_to_urls_and_ready_marker():
    (_, fn), = resources(load_template(), "AWS::Serverless::Function")
    suffixes = {rule["Value"] for ev in fn["Events"].values()
                for rule in ev["Properties"]["Filter"]["S3Key"]["Rules"] if rule["Name"] == "suffix"}
    assert suffixes == {"/urls.csv", "/_READY"}
    assert (ROOT / fn["CodeUri"] / "app.py").is_file()


def test_outputs_name_bucket_queues_and_state_machine():
    outputs = load_template()["Outputs"]
    assert {"BucketName", "GpuJobQueueArn", "CpuJobQueueArn", "StateMachineArn"} <= set(outputs)


def test_transformed_lint_catches_a_cycle_that_the_sam_lint_misses(tmp_path):
    # Guards the reason we lint twice: referencing the bucket from the state machine closes
    # bucket -> notification -> trigger -> state machine -> bucket.
    import infra_helpers

    template = load_template()
    subs = template["Resources"]["Pipeline"]["Properties"]["DefinitionSubstitutions"]
    subs["BucketName"] = {"Ref": "DataBucket"}
    original = infra_helpers.load_template
    try:
        infra_helpers.load_template = lambda: template
        out = tmp_path / "cyclic.json"
        out.write_text(json.dumps(infra_helpers.transformed_template()))
    finally:
        infra_helpers.load_template = original
    result = _cfn_lint(out)
    assert "E3004" in result.stdout, result.stdout


def test_queues_cancel_jobs_no_instance_can_take_and_gpu_uses_al2023():
    template = load_template()
    for name, queue in resources(template, "AWS::Batch::JobQueue"):
        (limit,) = queue["JobStateTimeLimitActions"]
        assert limit["State"] == "RUNNABLE" and limit["Action"] == "CANCEL", name
        assert limit["MaxTimeSeconds"] == {"Ref": "RunnableTimeoutSeconds"} and limit["Reason"].startswith("headstart:")
    images = {name: ce["ComputeResources"]["Ec2Configuration"][0]["ImageType"]
              for name, ce in resources(template, "AWS::Batch::ComputeEnvironment")}
    assert images == {"GpuComputeEnvironment": "ECS_AL2023_NVIDIA",
                      "GpuOnDemandComputeEnvironment": "ECS_AL2023_NVIDIA",
                      "CpuComputeEnvironment": "ECS_AL2023"}


def test_images_are_immutable_and_the_repository_empties_on_delete():
    (_, repo), = resources(load_template(), "AWS::ECR::Repository")
    assert repo["ImageTagMutability"] == "IMMUTABLE" and repo["EmptyOnDelete"] is True
    for name, props in _job_definitions(load_template()).items():
        image = json.dumps(props["ContainerProperties"]["Image"])
        assert ":latest" not in image and "ImageTag" in image, name
    assert "ImageUri" in load_template()["Outputs"]


def test_trigger_failures_go_to_a_dead_letter_queue_with_an_alarm():
    template = load_template()
    (_, fn), = resources(template, "AWS::Serverless::Function")
    assert fn["DeadLetterQueue"] == {"Type": "SQS", "TargetArn": {"Fn::GetAtt": ["TriggerDeadLetterQueue", "Arn"]}}
    (_, alarm), = resources(template, "AWS::CloudWatch::Alarm")
    assert alarm["Dimensions"][0]["Value"] == {"Fn::GetAtt": ["TriggerDeadLetterQueue", "QueueName"]}
    assert (ROOT / fn["CodeUri"] / "requirements.txt").read_text().startswith("PyYAML==")
    assert (ROOT / fn["CodeUri"] / "config_schema.json").is_file()


def test_read_buckets_grant_reading_only():
    template = load_template()
    role = template["Resources"]["JobRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
    conditional = [st["Fn::If"][1] for st in role if isinstance(st, dict) and "Fn::If" in st]
    assert {st["Action"] for st in conditional} == {"s3:ListBucket", "s3:GetObject"}
    assert all(st["Fn::If"][0] == "HasReadBuckets" for st in role if "Fn::If" in st)


def test_samconfig_stack_name_is_the_cli_default():
    import tomllib

    from headstart.infra.cloud.settings import CloudSpec

    config = tomllib.loads((ROOT / "samconfig.toml").read_text())
    assert config["default"]["deploy"]["parameters"]["stack_name"] == CloudSpec.model_fields["stack"].default
