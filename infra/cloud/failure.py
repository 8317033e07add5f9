"""Why a pipeline or job failed, from what Step Functions and Batch record.

A failed ``batch:submitJob.sync`` step's Catch output is ``{"Error": "States.TaskFailed",
"Cause": "<the Batch job description as JSON>"}``; the pipeline's RecordFailure state writes
it, with the step's name, to ``_PIPELINE_FAILURE.json``. :func:`explain` turns either shape
(and a history event's ``error``/``cause``) into the fields an operator needs.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any


@dataclass
class Failure:
    """What failed and why; None where the record does not say."""

    step: str | None = None
    error: str | None = None
    reason: str | None = None          # Batch status reason, else the cause text
    job_id: str | None = None
    job_name: str | None = None
    exit_code: int | None = None
    log_stream: str | None = None
    attempts: int | None = None

    def lines(self) -> list[str]:
        """``key: value`` lines of the fields that are known."""
        names = {"step": "step", "error": "error", "job_id": "batch job", "job_name": "job name",
                 "reason": "reason", "exit_code": "exit code", "log_stream": "log stream", "attempts": "attempts"}
        return [f"{label}: {getattr(self, key)}" for key, label in names.items() if getattr(self, key) is not None]


def parse_json(text: Any) -> Any:
    """``text`` decoded as JSON when it is a JSON string, else unchanged."""
    if isinstance(text, str):
        try:
            return json.loads(text)
        except ValueError:
            return text
    return text


def _get(data: dict[str, Any], *names: str) -> Any:
    """The first present key among PascalCase/camelCase spellings."""
    for name in names:
        for key in (name, name[:1].lower() + name[1:]):
            if data.get(key) is not None:
                return data[key]
    return None


def from_job(job: dict[str, Any], failure: Failure | None = None) -> Failure:
    """Fill a Failure from a Batch job description (either key case)."""
    failure = failure or Failure()
    container = _get(job, "Container") or {}
    attempts = _get(job, "Attempts") or []
    last = (_get(attempts[-1], "Container") or {}) if attempts else {}
    failure.job_id = failure.job_id or _get(job, "JobId")
    failure.job_name = failure.job_name or _get(job, "JobName")
    reason = _get(job, "StatusReason")
    detail = _get(container, "Reason") or _get(last, "Reason")
    if detail and detail != reason:
        reason = f"{reason}: {detail}" if reason else detail
    failure.reason = reason or failure.reason
    exit_code = _get(container, "ExitCode")
    failure.exit_code = exit_code if exit_code is not None else _get(last, "ExitCode")
    failure.log_stream = _get(container, "LogStreamName") or _get(last, "LogStreamName") or failure.log_stream
    failure.attempts = len(attempts) if attempts else failure.attempts
    return failure


def explain(record: dict[str, Any]) -> Failure:
    """A failure record (ours, a raw Catch output, or history-event details) explained."""
    failure = Failure(step=record.get("step"), error=_get(record, "Error"))
    cause = parse_json(_get(record, "Cause"))
    if isinstance(cause, dict) and (_get(cause, "JobId") or _get(cause, "Status")):
        return from_job(cause, failure)
    if isinstance(cause, dict):
        failure.reason = _get(cause, "ErrorMessage", "Message") or json.dumps(cause)[:500]
    elif cause:
        failure.reason = str(cause)[:1000]
    return failure


def full_record(record: dict[str, Any]) -> dict[str, Any]:
    """The record with its JSON-encoded cause decoded, for printing whole."""
    out = dict(record)
    for key in ("cause", "Cause"):
        if key in out:
            out[key] = parse_json(out[key])
    return out


def as_dict(failure: Failure) -> dict[str, Any]:
    return {k: v for k, v in asdict(failure).items() if v is not None}
