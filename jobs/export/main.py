"""Entrypoint of ``headstart export``."""
from headstart.jobs.export.spec import ExportSpec

SPEC = ExportSpec
HELP = "export a trained model (SavedModel, TFLite float32/float16/int8, ONNX) with a parity report"


def run(spec: ExportSpec) -> None:
    from headstart.jobs.export.workflow import export

    export(spec)
