"""The one line a job ends with on stdout: what it produced, its headline metric, what to open.

A job's ``run(spec)`` returns a :class:`Summary`; the ``headstart`` CLI prints
:meth:`Summary.line` on stdout (logs and progress go to stderr), or :meth:`Summary.as_dict`
as JSON with ``--json``, so a script can capture where the outputs are.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, kw_only=True)
class Summary:
    """What a finished job hands back to the CLI."""

    job: str                      # the subcommand, e.g. "train"
    out: str                      # URI of the published run
    produced: str                 # a few words on what was written, e.g. "model.keras + report"
    metric: str | None = None     # headline metric name, e.g. "test accuracy"
    value: float | int | None = None
    report: str | None = None     # URI of the report to open (None when the job has none)
    details: dict[str, Any] = field(default_factory=dict)  # extra JSON-only facts

    def line(self) -> str:
        """``train: model.keras + report -> runs/x · test accuracy 0.912 · open runs/x/report.html``."""
        parts = [f"{self.job}: {self.produced} -> {self.out}"]
        if self.metric is not None and self.value is not None:
            shown = f"{self.value:.3f}" if isinstance(self.value, float) else str(self.value)
            parts.append(f"{self.metric} {shown}")
        if self.report:
            parts.append(f"open {self.report}")
        return " · ".join(parts)

    def as_dict(self) -> dict[str, Any]:
        return {"job": self.job, "ok": True, "out": self.out, "produced": self.produced,
                "metric": self.metric, "value": self.value, "report": self.report,
                **({"details": self.details} if self.details else {})}

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), sort_keys=False, default=str)


def failure_dict(job: str, code: int, out: str | None) -> dict[str, Any]:
    """The ``--json`` answer of a failed job (details are in ``_FAILURE.json`` next to ``out``)."""
    return {"job": job, "ok": False, "exit_code": code, "out": out,
            "failure": f"{out.rstrip('/')}/_FAILURE.json" if out else None}
