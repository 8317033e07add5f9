"""``headstart results RUN_URI``: list a run's artifacts, summarise metrics, fetch the report."""
from __future__ import annotations

from pathlib import Path

from pydantic import Field

from headstart.shared.runtime.specs import JobSpec

HELP = "list a run's artifacts, print its metrics and download its report for local viewing"


class ResultsSpec(JobSpec):
    run: str = Field(description="run folder (s3://BUCKET/runs/..., or local)",
                     json_schema_extra={"positional": True})
    to: str | None = Field(None, description="local folder for the report; unset: "
                           "./results/<run folder name>")
    download: bool = Field(True, description="download report.html and metrics.json")


SPEC = ResultsSpec


def run(spec: ResultsSpec) -> None:
    """List the run's artifacts, print its metrics, download its report."""
    from headstart.infra.cloud.results import collect, format_results

    target = None
    if spec.download:
        target = Path(spec.to) if spec.to else Path("results") / spec.run.rstrip("/").rpartition("/")[2]
    print(format_results(collect(spec.run, target)))
