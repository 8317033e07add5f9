"""Entrypoint of ``headstart export``."""
from headstart.jobs.export.spec import ExportSpec
from headstart.shared.runtime.summary import Summary

SPEC = ExportSpec
HELP = "export a trained model (SavedModel, TFLite float32/float16/int8, ONNX) with a parity report"


def run(spec: ExportSpec) -> Summary:
    from headstart.jobs.export.workflow import export

    return export(spec)
