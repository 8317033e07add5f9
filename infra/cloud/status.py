"""State of a pipeline execution (by ARN) or a Batch job (by id): step, failure, log stream."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from headstart.infra.cloud.failure import Failure, explain, from_job, parse_json
from headstart.infra.cloud.settings import Cloud, aws_call
from headstart.shared.runtime.errors import UserError

log = logging.getLogger(__name__)

LOG_GROUP = "/aws/batch/job"
# States that only record a failure: a failed run names the step before them.
BOOKKEEPING = {"RecordFailure", "CopyScrapeFailure", "Failed", "Succeeded"}
FAILURE_EVENTS = {"TaskFailed", "TaskTimedOut", "TaskSubmitFailed", "TaskStartFailed"}


@dataclass
class Status:
    """What ``headstart status`` prints."""

    id: str
    kind: str                        # "execution" or "job"
    state: str
    step: str | None = None          # the state machine's current (or failed) state
    job_id: str | None = None        # the Batch job of that step
    job_state: str | None = None
    reason: str | None = None        # why it failed
    exit_code: int | None = None
    log_stream: str | None = None
    image: str | None = None         # the image the job ran, with its digest when known
    extra: dict[str, Any] = field(default_factory=dict)


def is_execution(ident: str) -> bool:
    """Whether ``ident`` is a Step Functions execution ARN (else: a Batch job id)."""
    return ident.startswith("arn:") and ":execution:" in ident


def get_status(cloud: Cloud, ident: str) -> Status:
    """Status of an execution ARN or a Batch job id."""
    ident = ident.strip()
    if not ident:
        raise UserError("expected an execution ARN or a Batch job id. Received: ''")
    return _execution(cloud, ident) if is_execution(ident) else _job(cloud, ident)


def image_with_digest(cloud: Cloud, image: str | None) -> str | None:
    """``image`` plus its digest: from the URI, else from ECR (tags there are immutable)."""
    if not image or "@sha256:" in image:
        return image
    repo_uri, _, tag = image.rpartition(":")
    if "/" not in repo_uri or ".dkr.ecr." not in repo_uri:
        return image
    try:
        found = cloud.client("ecr").describe_images(repositoryName=repo_uri.split("/", 1)[1],
                                                    imageIds=[{"imageTag": tag}])["imageDetails"]
    except Exception as exc:  # noqa: BLE001 - a digest is a nicety; never hide the status for it
        log.debug("cannot resolve the digest of %s: %s", image, exc)
        return image
    return f"{image} ({found[0]['imageDigest']})" if found else image


def _job(cloud: Cloud, job_id: str) -> Status:
    batch = cloud.client("batch")
    jobs = aws_call("describing the job", batch.describe_jobs, jobs=[job_id])["jobs"]
    if not jobs:
        raise UserError(f"no Batch job with id {job_id!r} (ids are UUIDs; pipeline runs are "
                        "arn:aws:states:...:execution:... ARNs)")
    job = jobs[0]
    explained = from_job(job)
    failed = job["status"] == "FAILED"
    extra = {"attempts": len(job.get("attempts", []))}
    summary = job.get("arrayProperties", {}).get("statusSummary")
    if summary:
        extra["children"] = summary
    return Status(job_id, "job", job["status"], step=job.get("jobName"), job_id=job_id,
                  job_state=job["status"], reason=explained.reason if failed else None,
                  exit_code=explained.exit_code if failed else None, log_stream=explained.log_stream,
                  image=image_with_digest(cloud, job.get("container", {}).get("image")), extra=extra)


def _history(sfn: Any, arn: str) -> list[dict[str, Any]]:
    """Every history event, oldest first (sorted here: not every endpoint honours the order)."""
    pages = sfn.get_paginator("get_execution_history").paginate(executionArn=arn)
    return sorted((event for page in pages for event in page["events"]), key=lambda e: e["id"])


def _details(event: dict[str, Any]) -> dict[str, Any]:
    return next((v for k, v in event.items() if k.endswith("EventDetails") and isinstance(v, dict)), {})


def read_history(events: list[dict[str, Any]]) -> tuple[str | None, str | None, Failure | None, dict[str, Any] | None]:
    """(last working step, its Batch job id, the failure of a working step, the execution's
    own failure/timeout details) from history events in any order.

    Walks the events oldest first, attributing each to the state entered last, so a failure
    of the bookkeeping states (RecordFailure, CopyScrapeFailure) or the Fail state's fixed
    text never hides the step that actually failed.
    """
    current = step = job_id = None
    failure = None
    ended = None
    for event in sorted(events, key=lambda e: e["id"]):
        kind, detail = event["type"], _details(event)
        if kind.endswith("StateEntered"):
            current = detail.get("name")
            if current not in BOOKKEEPING and not str(current).endswith("Failed"):
                step, job_id = current, None
        elif kind in ("ExecutionFailed", "ExecutionTimedOut", "ExecutionAborted"):
            ended = {"type": kind, **detail}
        elif current != step:
            continue
        elif kind == "TaskSubmitted":
            output = parse_json(detail.get("output")) or {}
            job_id = _get_id(output) or job_id
        elif kind in FAILURE_EVENTS:
            failure = explain({"step": step, "Error": detail.get("error"), "Cause": detail.get("cause")})
            if kind == "TaskTimedOut":
                failure.reason = (f"the step ran past its TimeoutSeconds ({failure.reason})"
                                  if failure.reason else "the step ran past its TimeoutSeconds")
            job_id = failure.job_id or job_id
    return step, job_id, failure, ended


def _get_id(output: Any) -> str | None:
    return (output.get("JobId") or output.get("jobId")) if isinstance(output, dict) else None


def _execution(cloud: Cloud, arn: str) -> Status:
    sfn = cloud.client("stepfunctions")
    try:
        desc = aws_call("describing the execution", sfn.describe_execution, executionArn=arn)
    except sfn.exceptions.ExecutionDoesNotExist:
        raise UserError(f"no pipeline execution {arn!r}") from None
    status = Status(arn, "execution", desc["status"])
    status.step, status.job_id, failure, ended = read_history(_history(sfn, arn))
    if failure:
        status.reason = f"{failure.error}: {failure.reason}" if failure.error and failure.reason else \
            failure.reason or failure.error
        status.exit_code, status.log_stream = failure.exit_code, failure.log_stream
    elif ended and desc["status"] != "SUCCEEDED":
        status.reason = {"ExecutionTimedOut": "the execution ran past its TimeoutSeconds",
                         "ExecutionAborted": "the execution was stopped"}.get(
            ended["type"], f"{ended.get('error')}: {ended.get('cause')}")
    if status.job_id:
        _add_job(cloud, status)
    return status


def _add_job(cloud: Cloud, status: Status) -> None:
    try:
        job = _job(cloud, status.job_id or "")
    except UserError:
        return  # the job has aged out of Batch (about a week); keep what the history said
    status.job_state = job.state
    status.log_stream = status.log_stream or job.log_stream
    status.reason = status.reason or job.reason
    status.exit_code = status.exit_code if status.exit_code is not None else job.exit_code
    status.image = job.image


def format_status(status: Status) -> str:
    """Human-readable lines, with how to read the logs."""
    lines = [f"{status.kind}: {status.id}", f"state: {status.state}"]
    if status.step:
        lines.append(f"step: {status.step}")
    if status.job_id:
        lines.append(f"batch job: {status.job_id} ({status.job_state or 'unknown'})")
    for key, value in status.extra.items():
        lines.append(f"{key}: {value}")
    if status.reason:
        lines.append(f"failure: {status.reason}")
    if status.exit_code is not None:
        lines.append(f"exit code: {status.exit_code}")
    if status.image:
        lines.append(f"image: {status.image}")
    if status.log_stream:
        lines.append(f"log stream: {status.log_stream} (group {LOG_GROUP})")
        lines.append(f"  aws logs tail {LOG_GROUP} --log-stream-names {status.log_stream} --follow")
    return "\n".join(lines)
