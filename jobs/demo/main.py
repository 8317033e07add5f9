"""Entrypoint of ``headstart demo``."""
from headstart.jobs.demo.spec import DemoSpec

SPEC = DemoSpec
HELP = "run train + evaluate end to end on a sample dataset, offline"


def run(spec: DemoSpec):
    from headstart.jobs.demo.workflow import demo

    return demo(spec)
