"""Entrypoint of ``headstart predict``."""
from headstart.jobs.predict.spec import PredictSpec
from headstart.shared.runtime.summary import Summary

SPEC = PredictSpec
HELP = "classify images with a trained model: predictions.csv (top-k, calibrated confidence), gallery report"


def run(spec: PredictSpec) -> Summary:
    from headstart.jobs.predict.workflow import predict

    return predict(spec)
