"""Entrypoint of ``headstart demo``."""
from headstart.jobs.demo.spec import DemoSpec

SPEC = DemoSpec
HELP = "run train + evaluate end to end on a sample dataset, offline"


def run(spec: DemoSpec) -> None:
    from headstart.jobs.demo.workflow import demo

    demo(spec)
