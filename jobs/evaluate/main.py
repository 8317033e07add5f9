"""Entrypoint of ``headstart evaluate``."""
from headstart.jobs.evaluate.spec import EvaluateSpec

SPEC = EvaluateSpec
HELP = "evaluate a trained model: metrics, confusion matrix, worst errors, HTML report"


def run(spec: EvaluateSpec):
    from headstart.jobs.evaluate.workflow import evaluate

    return evaluate(spec)
