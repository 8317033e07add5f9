"""``headstart status ID``: state, current step, failure reason and log stream of a run."""
from __future__ import annotations

from pydantic import Field

from headstart.infra.cloud.settings import CloudSpec

HELP = "show a pipeline execution (ARN) or Batch job (id): state, step, failure, log stream"


class StatusSpec(CloudSpec):
    id: str = Field(description="execution ARN or Batch job id, as printed by `headstart submit`",
                    json_schema_extra={"positional": True})


SPEC = StatusSpec


def run(spec: StatusSpec) -> None:
    """Print the state, step, failure reason and log stream of an execution or job."""
    from headstart.infra.cloud.settings import resolve
    from headstart.infra.cloud.status import format_status, get_status

    print(format_status(get_status(resolve(spec), spec.id)))
