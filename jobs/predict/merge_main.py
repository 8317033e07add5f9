"""Entrypoint of ``headstart predict-merge``."""
from headstart.jobs.predict.spec import PredictMergeSpec
from headstart.shared.runtime.summary import Summary

SPEC = PredictMergeSpec
HELP = "merge the shards of a sharded `headstart predict` into one predictions.csv and report"


def run(spec: PredictMergeSpec) -> Summary:
    from headstart.jobs.predict.merge import merge

    return merge(spec)
