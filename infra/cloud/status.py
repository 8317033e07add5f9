"""State of a pipeline execution (by ARN) or a Batch job (by id): step, failure, log stream."""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

from headstart.infra.cloud.settings import Cloud, aws_call
from headstart.shared.runtime.errors import UserError

log = logging.getLogger(__name__)

LOG_GROUP = "/aws/batch/job"
BOOKKEEPING = {"RecordFailure", "Failed", "Succeeded"}


@dataclass
class Status:
    """What ``headstart status`` prints."""

    id: str
    kind: str                        # "execution" or "job"
    state: str
    step: str | None = None          # the state machine's current (or last) state
    job_id: str | None = None        # the Batch job of that step
    job_state: str | None = None
    reason: str | None = None        # why it failed
    log_stream: str | None = None
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


def _job(cloud: Cloud, job_id: str) -> Status:
    batch = cloud.client("batch")
    jobs = aws_call("describing the job", batch.describe_jobs, jobs=[job_id])["jobs"]
    if not jobs:
        raise UserError(f"no Batch job with id {job_id!r} (ids are UUIDs; pipeline runs are "
                        "arn:aws:states:...:execution:... ARNs)")
    job = jobs[0]
    container = job.get("container", {})
    reason = job.get("statusReason") if job["status"] == "FAILED" else None
    if reason and container.get("exitCode") is not None:
        reason = f"{reason} (exit code {container['exitCode']})"
    extra = {"attempts": len(job.get("attempts", []))}
    summary = job.get("arrayProperties", {}).get("statusSummary")
    if summary:
        extra["children"] = summary
    return Status(job_id, "job", job["status"], step=job.get("jobName"), job_id=job_id,
                  job_state=job["status"], reason=reason, log_stream=container.get("logStreamName"),
                  extra=extra)


def _history(sfn: Any, arn: str) -> list[dict[str, Any]]:
    """Every history event, newest first (sorted here: not every endpoint honours reverseOrder)."""
    pages = sfn.get_paginator("get_execution_history").paginate(executionArn=arn, reverseOrder=True)
    return sorted((event for page in pages for event in page["events"]), key=lambda e: e["id"], reverse=True)


def _details(event: dict[str, Any]) -> dict[str, Any]:
    return next((v for k, v in event.items() if k.endswith("EventDetails") and isinstance(v, dict)), {})


def _failed_job(cause: str | None) -> dict[str, Any]:
    """The Batch job described in a failed .sync task's cause (JSON), if it is one."""
    try:
        data = json.loads(cause or "")
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _execution(cloud: Cloud, arn: str) -> Status:
    sfn = cloud.client("stepfunctions")
    try:
        desc = aws_call("describing the execution", sfn.describe_execution, executionArn=arn)
    except sfn.exceptions.ExecutionDoesNotExist:
        raise UserError(f"no pipeline execution {arn!r}") from None
    status = Status(arn, "execution", desc["status"])
    events = _history(sfn, arn)  # newest first
    # The newest state entered, skipping the failure bookkeeping so a failed run names the
    # step that failed rather than its Catch.
    entered = next((_details(e).get("name") for e in events if e["type"].endswith("StateEntered")
                    and _details(e).get("name") not in BOOKKEEPING), None)
    status.step = entered
    submitted = next((e for e in events if e["type"] == "TaskSubmitted"), None)
    if submitted:
        output = _failed_job(_details(submitted).get("output"))
        status.job_id = output.get("JobId") or output.get("jobId")
    failed = next((e for e in events if e["type"] in ("TaskFailed", "ExecutionFailed")), None)
    if failed:
        detail = _details(failed)
        job = _failed_job(detail.get("cause"))
        status.reason = job.get("StatusReason") or detail.get("cause") or detail.get("error")
        status.log_stream = (job.get("Container") or {}).get("LogStreamName")
        status.job_id = job.get("JobId") or status.job_id
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
    if status.log_stream:
        lines.append(f"log stream: {status.log_stream} (group {LOG_GROUP})")
        lines.append(f"  aws logs tail {LOG_GROUP} --log-stream-names {status.log_stream} --follow")
    return "\n".join(lines)
