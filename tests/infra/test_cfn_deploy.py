"""Deploy the SAM-transformed template into moto's CloudFormation, then use it via its outputs.

moto's CloudFormation differs from the real one in three ways this test bridges, each on the
transformed template only: it ignores ``DefinitionSubstitutions`` (we express them as the
equivalent ``Fn::Sub``), it wants a ``ServiceRole`` on compute environments (the real service
falls back to its service-linked role), and it cannot read the packaged code from S3 unless the
object exists (we upload a zip of the trigger). It skips ``AWS::S3::BucketPolicy`` (warned,
filtered below) and does not wire the bucket notification; both are linted instead.
"""
from __future__ import annotations

import io
import json
import zipfile

import pytest

from infra_helpers import ROOT, resources, transformed_template

REGION = "us-east-1"
ARTIFACTS = "headstart-artifacts"  # the bucket infra_helpers points CodeUri at
pytestmark = [pytest.mark.filterwarnings("ignore:Tried to parse AWS.*BucketPolicy:UserWarning"),
              pytest.mark.filterwarnings("ignore:Tried to parse AWS.*Alarm:UserWarning")]


def _moto_ready(template: dict) -> dict:
    for _name, props in resources(template, "AWS::StepFunctions::StateMachine"):
        definition = props.pop("Definition", None)
        text = json.dumps(definition) if definition is not None else _joined(props["DefinitionString"])
        props["DefinitionString"] = {"Fn::Sub": [text, props.pop("DefinitionSubstitutions")]}
    template["Resources"]["BatchServiceRole"] = {"Type": "AWS::IAM::Role", "Properties": {
        "AssumeRolePolicyDocument": {"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Principal": {"Service": "batch.amazonaws.com"}, "Action": "sts:AssumeRole"}]}}}
    for _, props in resources(template, "AWS::Batch::ComputeEnvironment"):
        props["ServiceRole"] = {"Fn::GetAtt": ["BatchServiceRole", "Arn"]}
    return template


def _joined(value) -> str:
    if isinstance(value, str):
        return value
    sep, parts = value["Fn::Join"]
    assert all(isinstance(p, str) for p in parts), "the definition should be literal text"
    return sep.join(parts)


def _upload_trigger_code(s3) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name in ("app.py", "dataset_config.py", "config_schema.json"):
            zf.write(ROOT / "infra" / "trigger" / name, name)
    s3.create_bucket(Bucket=ARTIFACTS)
    s3.put_object(Bucket=ARTIFACTS, Key="trigger.zip", Body=buf.getvalue())


@pytest.fixture
def deployed(monkeypatch):
    import boto3
    from moto import mock_aws

    with mock_aws(config={"lambda": {"use_docker": False}}):
        ec2 = boto3.client("ec2", region_name=REGION)
        vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.0.0/24")["Subnet"]["SubnetId"]
        _upload_trigger_code(boto3.client("s3", region_name=REGION))
        cfn = boto3.client("cloudformation", region_name=REGION)
        template = _moto_ready(transformed_template(inline_definition=True))
        cfn.create_stack(StackName="headstart", TemplateBody=json.dumps(template),
                         Capabilities=["CAPABILITY_IAM", "CAPABILITY_AUTO_EXPAND"],
                         Parameters=[{"ParameterKey": "BucketName", "ParameterValue": "headstart-data"},
                                     {"ParameterKey": "VpcId", "ParameterValue": vpc},
                                     {"ParameterKey": "SubnetIds", "ParameterValue": subnet},
                                     # moto does not split a CommaDelimitedList default; pass them
                                     {"ParameterKey": "GpuInstanceTypes", "ParameterValue": "g4dn.xlarge,g5.xlarge"},
                                     {"ParameterKey": "CpuInstanceTypes", "ParameterValue": "c6i.large"},
                                     {"ParameterKey": "ImageTag", "ParameterValue": "abc123"},
                                     {"ParameterKey": "ReadBuckets", "ParameterValue": "shared-data,more"}])
        yield cfn.describe_stacks(StackName="headstart")["Stacks"][0]


def test_the_stack_deploys_with_every_output(deployed):
    assert deployed["StackStatus"] == "CREATE_COMPLETE", deployed.get("StackStatusReason")
    outputs = {o["OutputKey"]: o["OutputValue"] for o in deployed["Outputs"]}
    assert outputs["BucketName"] == "headstart-data"
    for key in ("GpuJobQueueArn", "CpuJobQueueArn", "StateMachineArn", "TrainJobDefinitionArn",
                "PredictJobDefinitionArn", "PredictMergeJobDefinitionArn"):
        assert outputs[key].startswith("arn:aws:"), (key, outputs[key])
    assert outputs["ImageUri"].endswith("-headstart:abc123")
    assert outputs["ReadBuckets"] == "shared-data,more"


def test_the_deployed_state_machine_has_every_substitution_resolved(deployed):
    import boto3

    outputs = {o["OutputKey"]: o["OutputValue"] for o in deployed["Outputs"]}
    sfn = boto3.client("stepfunctions", region_name=REGION)
    definition = sfn.describe_state_machine(stateMachineArn=outputs["StateMachineArn"])["definition"]
    assert "${" not in definition
    states = json.loads(definition)["States"]
    assert states["Train"]["Parameters"]["JobQueue"] == outputs["GpuJobQueueArn"]
    assert states["Train"]["Parameters"]["JobDefinition"] == outputs["TrainJobDefinitionArn"]
    assert states["RecordFailure"]["Parameters"]["Bucket"] == "headstart-data"


def test_gpu_queue_orders_spot_then_on_demand(deployed):
    import boto3

    outputs = {o["OutputKey"]: o["OutputValue"] for o in deployed["Outputs"]}
    batch = boto3.client("batch", region_name=REGION)
    queue = batch.describe_job_queues(jobQueues=[outputs["GpuJobQueueArn"]])["jobQueues"][0]
    order = sorted(queue["computeEnvironmentOrder"], key=lambda o: o["order"])
    envs = batch.describe_compute_environments(computeEnvironments=[o["computeEnvironment"] for o in order])
    types = {e["computeEnvironmentArn"]: e["computeResources"]["type"] for e in envs["computeEnvironments"]}
    assert [types[o["computeEnvironment"]] for o in order] == ["SPOT", "EC2"]


def test_submit_finds_everything_from_the_stack_outputs(deployed, capsys, monkeypatch, tmp_path):
    from headstart.shared.runtime import cli

    monkeypatch.setenv("HEADSTART_CONFIG", str(tmp_path / "empty.yaml"))
    (tmp_path / "empty.yaml").write_text("{}")
    monkeypatch.setattr(cli, "COMMANDS", {k: cli.COMMANDS[k] for k in ("submit", "train")})
    code = cli.main(["submit", "pipeline", "s3://headstart-data/datasets/flowers", "--region", REGION])
    out = capsys.readouterr().out
    assert code == 0
    assert "execution: arn:aws:states:us-east-1:123456789012:execution:headstart-pipeline:flowers-" in out
