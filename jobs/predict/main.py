"""Entrypoint of ``headstart predict``."""
from headstart.jobs.predict.spec import PredictSpec

SPEC = PredictSpec
HELP = "classify images with a trained model: predictions.csv (top-k, calibrated confidence), gallery report"


def run(spec: PredictSpec) -> None:
    from headstart.jobs.predict.workflow import predict

    predict(spec)
