"""Where the deployed stack is: flags > ``HEADSTART_*`` env > ``--spec`` file > config file >
the CloudFormation stack's outputs.

The first three layers come from :class:`CloudSpec` fields (the generic spec machinery); the
config file is the one Headstart config file (:mod:`headstart.shared.runtime.configfile`);
whatever is still missing is read from ``describe_stacks`` of ``--stack`` (one call, only if
needed).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from pydantic import Field

from headstart.shared.runtime.configfile import read_config
from headstart.shared.runtime.errors import UserError
from headstart.shared.runtime.specs import JobSpec

log = logging.getLogger(__name__)

# setting -> stack output key (template.yaml Outputs).
OUTPUT_KEYS = {"bucket": "BucketName", "state_machine": "StateMachineArn",
               "gpu_queue": "GpuJobQueueArn", "cpu_queue": "CpuJobQueueArn"}
SETTINGS = ("region", *OUTPUT_KEYS, "read_buckets")


class CloudSpec(JobSpec):
    """Cloud settings shared by ``submit`` and ``status``."""

    stack: str = Field("headstart", description="CloudFormation stack deployed from template.yaml")
    region: str | None = Field(None, description="AWS region; unset: the AWS SDK's")
    bucket: str | None = Field(None, description="data bucket; unset: the stack's BucketName output")
    state_machine: str | None = Field(None, description="pipeline state machine ARN; unset: from the stack")
    gpu_queue: str | None = Field(None, description="GPU Batch job queue; unset: from the stack")
    cpu_queue: str | None = Field(None, description="CPU Batch job queue; unset: from the stack")
    read_buckets: str | None = Field(None, description="comma-separated buckets the jobs may read besides "
                                     "the data bucket; unset: the stack's ReadBuckets output")


@dataclass
class Cloud:
    """Resolved settings plus the stack's outputs (job definition ARNs among them)."""

    stack: str
    region: str | None
    values: dict[str, str] = field(default_factory=dict)
    outputs: dict[str, str] | None = None

    def client(self, service: str) -> Any:
        """A boto3 client for ``service`` in the resolved region."""
        import boto3

        return boto3.client(service, region_name=self.region)

    def stack_outputs(self) -> dict[str, str]:
        """The stack's outputs (fetched once); UserError when the stack does not exist."""
        if self.outputs is None:
            cfn = self.client("cloudformation")
            try:
                stacks = cfn.describe_stacks(StackName=self.stack)["Stacks"]
            except cfn.exceptions.ClientError as exc:
                raise UserError(
                    f"cannot read CloudFormation stack {self.stack!r} ({exc.response['Error']['Message']}); "
                    "deploy it with `sam deploy`, pass --stack NAME, or set --bucket/--state-machine/"
                    "--gpu-queue/--cpu-queue") from None
            self.outputs = {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}
        return self.outputs

    def get(self, name: str) -> str:
        """One setting, falling back to the stack output that provides it."""
        if self.values.get(name):
            return self.values[name]
        key = OUTPUT_KEYS[name]
        value = self.stack_outputs().get(key)
        if not value:
            raise UserError(f"stack {self.stack!r} has no output {key!r}; pass --{name.replace('_', '-')}")
        self.values[name] = value
        return value

    def read_buckets(self) -> list[str]:
        """Buckets the jobs may read besides the data bucket (the stack's ReadBuckets)."""
        value = self.values.get("read_buckets")
        if value is None:
            try:
                value = self.stack_outputs().get("ReadBuckets", "")
            except UserError:
                value = ""  # settings given explicitly, no stack to read: the data bucket only
            self.values["read_buckets"] = value
        return [b.strip() for b in value.split(",") if b.strip()]

    def job_definition(self, job: str) -> str:
        """The job definition of ``headstart <job>``: the stack output, else its name."""
        key = "".join(part.title() for part in job.split("-")) + "JobDefinitionArn"
        try:
            found = self.stack_outputs().get(key)
        except UserError:
            found = None  # settings given explicitly, no stack to read: use the name
        # Batch resolves a bare name to the latest active revision.
        return found or f"{self.stack}-{job}"


# Errors that mean "you pointed at the wrong thing" rather than a crash.
USER_ERROR_CODES = {"ClientException", "StateMachineDoesNotExist", "InvalidArn", "InvalidName",
                    "InvalidExecutionInput", "AccessDenied", "AccessDeniedException",
                    "UnrecognizedClientException", "ValidationError", "ValidationException"}


def aws_call(what: str, fn: Any, **kwargs: Any) -> Any:
    """Call ``fn(**kwargs)``; AWS rejecting the request becomes a one-line UserError."""
    from botocore.exceptions import ClientError, NoCredentialsError, NoRegionError

    try:
        return fn(**kwargs)
    except ClientError as exc:
        error = exc.response.get("Error", {})
        if error.get("Code") not in USER_ERROR_CODES:
            raise
        raise UserError(f"{what} failed: {error.get('Code')}: {error.get('Message')}") from None
    except (NoCredentialsError, NoRegionError) as exc:
        raise UserError(f"{what} failed: {exc} (configure AWS credentials, or pass --region)") from None


def resolve(spec: CloudSpec) -> Cloud:
    """Merge the spec's settings over the config file; stack outputs fill the rest lazily."""
    config = read_config()
    chosen = {name: getattr(spec, name) or config.get(name) for name in SETTINGS}
    default_stack = CloudSpec.model_fields["stack"].default
    stack = spec.stack if spec.stack != default_stack else config.get("stack", spec.stack)
    region = chosen.pop("region")
    return Cloud(stack=stack, region=region, values={k: v for k, v in chosen.items() if v})
