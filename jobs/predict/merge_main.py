"""Entrypoint of ``headstart predict-merge``."""
from headstart.jobs.predict.spec import PredictMergeSpec

SPEC = PredictMergeSpec
HELP = "merge the shards of a sharded `headstart predict` into one predictions.csv and report"


def run(spec: PredictMergeSpec) -> None:
    from headstart.jobs.predict.merge import merge

    merge(spec)
