"""Entrypoint of ``headstart features``."""
from headstart.jobs.features.spec import FeaturesSpec

SPEC = FeaturesSpec
HELP = "run the frozen backbone over a dataset (one shard of an array job): feature shards for train --features"


def run(spec: FeaturesSpec):
    from headstart.jobs.features.workflow import features

    return features(spec)
