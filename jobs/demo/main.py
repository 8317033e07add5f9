"""Entrypoint of ``headstart demo``."""
from jobs.demo.spec import DemoSpec

SPEC = DemoSpec
HELP = "run train + evaluate end to end on a sample dataset, offline"


def run(spec: DemoSpec) -> None:
    from jobs.demo.workflow import demo

    demo(spec)
