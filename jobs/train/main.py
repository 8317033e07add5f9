"""Entrypoint of ``headstart train``."""
from headstart.jobs.train.spec import TrainSpec

SPEC = TrainSpec
HELP = "fine-tune a new head on a pretrained backbone (fast path: cached features)"


def run(spec: TrainSpec):
    from headstart.jobs.train.workflow import train

    return train(spec)
