"""Stand up the pipeline in moto: Batch queues and job definitions from template.yaml, the
state machine from infra/statemachine with its substitutions applied, and the data bucket.

moto's Step Functions interpreter hands ``batch:submitJob.sync`` parameters to boto3 in the
state language's PascalCase (``JobName``), which boto3 does not know (camelCase ``jobName``),
so the submission reaches moto empty and fails. :func:`patch_sfn_batch` swaps in a small
client adapter: camelCase request keys, PascalCase response keys, as the real service does.
moto's describe_jobs output (the .sync result) is camelCase; the adapter adds PascalCase keys.
"""
from __future__ import annotations

import json
import re
from typing import Any

from infra_helpers import load_template, resources, state_machine_definition

REGION = "us-east-1"
BUCKET = "headstart-data"
# Named as the stack names them ("<stack>-<job>"), so lookups by name work too.
JOB_DEFINITIONS = {"Train": "TrainJobDefinition", "Evaluate": "EvaluateJobDefinition",
                   "Gradcam": "GradcamJobDefinition", "Scrape": "ScrapeJobDefinition",
                   "ScrapeMerge": "ScrapeMergeJobDefinition", "Predict": "PredictJobDefinition",
                   "PredictMerge": "PredictMergeJobDefinition", "Audit": "AuditJobDefinition",
                   "Features": "FeaturesJobDefinition"}


def _camel(key: str) -> str:
    return key[:1].lower() + key[1:]


def camel_keys(value: Any) -> Any:
    """PascalCase -> camelCase keys, except inside Batch ``Parameters`` (user-chosen names)."""
    if isinstance(value, list):
        return [camel_keys(v) for v in value]
    if isinstance(value, dict):
        return {_camel(k): (v if k == "Parameters" else camel_keys(v)) for k, v in value.items()}
    return value


def pascal_keys(value: Any) -> Any:
    """camelCase -> PascalCase keys, recursively (the shape Step Functions returns)."""
    if isinstance(value, list):
        return [pascal_keys(v) for v in value]
    if isinstance(value, dict):
        return {k[:1].upper() + k[1:]: (v if k == "parameters" else pascal_keys(v)) for k, v in value.items()}
    return value


class BatchClientAdapter:
    """Wraps a boto3 Batch client for moto's Step Functions interpreter; records submissions."""

    submitted: list[dict[str, Any]] = []

    def __init__(self, client: Any) -> None:
        self._client = client

    def submit_job(self, **params: Any) -> dict[str, Any]:
        request = camel_keys(params)
        BatchClientAdapter.submitted.append(request)
        response = self._client.submit_job(**request)
        return {"JobId": response["jobId"], "JobName": response["jobName"], "JobArn": response["jobArn"]}

    def describe_jobs(self, **params: Any) -> dict[str, Any]:
        # The real .sync integration returns the job description in PascalCase; moto's
        # resolver still reads camelCase "status", so each job carries both spellings.
        response = self._client.describe_jobs(**params)
        response["jobs"] = [{**job, **pascal_keys(job)} for job in response["jobs"]]
        return response

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def patch_sfn_batch(monkeypatch) -> list[dict[str, Any]]:
    """Install the adapter; returns the list that records every submit_job request."""
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import (
        state_task_service_batch as module,
    )

    original = module.boto_client_for
    BatchClientAdapter.submitted = []
    monkeypatch.setattr(module, "boto_client_for",
                        lambda *a, **kw: BatchClientAdapter(original(*a, **kw)))
    return BatchClientAdapter.submitted


def _defaults(value: Any, parameters: dict[str, Any]) -> Any:
    """Replace ``{"Ref": <template parameter>}`` with the parameter's default, as a string."""
    if isinstance(value, list):
        return [_defaults(v, parameters) for v in value]
    if isinstance(value, dict):
        if set(value) == {"Ref"} and value["Ref"] in parameters:
            return str(parameters[value["Ref"]]["Default"])
        return {k: _defaults(v, parameters) for k, v in value.items()}
    return value


def _register_job_definitions(batch, template: dict[str, Any]) -> dict[str, str]:
    arns = {}
    defs = _defaults(dict(resources(template, "AWS::Batch::JobDefinition")), template["Parameters"])
    for short, logical in JOB_DEFINITIONS.items():
        props = defs[logical]
        container = {k: v for k, v in props["ContainerProperties"].items()
                     if k in ("Command", "ResourceRequirements")}
        container["image"] = "headstart:test"
        out = batch.register_job_definition(
            jobDefinitionName="headstart-" + re.sub(r"(?<!^)([A-Z])", r"-\1", short).lower(), type="container",
            parameters=props["Parameters"], containerProperties=camel_keys(container),
            retryStrategy=camel_keys(props["RetryStrategy"]), timeout=camel_keys(props["Timeout"]))
        arns[f"{short}JobDefinitionArn"] = out["jobDefinitionArn"]
    return arns


def _queue(batch, iam_role: str, name: str) -> str:
    env = batch.create_compute_environment(computeEnvironmentName=f"{name}-env", type="UNMANAGED",
                                           state="ENABLED", serviceRole=iam_role)
    return batch.create_job_queue(jobQueueName=name, state="ENABLED", priority=1, computeEnvironmentOrder=[
        {"order": 1, "computeEnvironment": env["computeEnvironmentArn"]}])["jobQueueArn"]


def deploy_pipeline(definition: dict[str, Any] | None = None) -> dict[str, str]:
    """Create bucket, queues, job definitions and the state machine (``definition``, default
    infra/statemachine/pipeline.asl.json); return their ARNs."""
    import boto3

    boto3.client("s3", region_name=REGION).create_bucket(Bucket=BUCKET)
    iam = boto3.client("iam", region_name=REGION)
    role = iam.create_role(RoleName="pipeline", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    batch = boto3.client("batch", region_name=REGION)
    subs = {"BucketName": BUCKET, "GpuJobQueueArn": _queue(batch, role, "gpu"),
            "CpuJobQueueArn": _queue(batch, role, "cpu"), **_register_job_definitions(batch, load_template())}
    text = json.dumps(definition or state_machine_definition())
    # DefinitionSubstitutions, as CloudFormation applies them.
    text = re.sub(r"\$\{([A-Za-z0-9_]+)\}", lambda m: subs[m.group(1)], text)
    sfn = boto3.client("stepfunctions", region_name=REGION)
    arn = sfn.create_state_machine(name="pipeline", definition=text, roleArn=role)["stateMachineArn"]
    return {**subs, "StateMachineArn": arn}


class S3ClientAdapter:
    """moto's ``aws-sdk:s3:getObject`` task hands back the boto3 body stream, which its
    intrinsic functions cannot read; the real service returns a text body as a string."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def get_object(self, **params: Any) -> dict[str, Any]:
        response = self._client.get_object(**params)
        response["Body"] = response["Body"].read().decode("utf-8")
        return response

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def patch_sfn_s3(monkeypatch) -> None:
    """Install :class:`S3ClientAdapter` for the state machine's ``aws-sdk:s3`` tasks."""
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import (
        state_task_service_aws_sdk as module,
    )

    original = module.boto_client_for

    def client_for(*args: Any, **kwargs: Any) -> Any:
        client = original(*args, **kwargs)
        return S3ClientAdapter(client) if kwargs.get("service", args[0] if args else None) == "s3" else client

    monkeypatch.setattr(module, "boto_client_for", client_for)
