"""The ``headstart`` console script: one subcommand per job.

Each command module exposes ``SPEC`` (a :class:`~headstart.shared.runtime.specs.JobSpec` subclass), ``HELP``
(one line) and ``run(spec)``. Modules are imported only when their subcommand runs or
``--help`` is built, and they import TensorFlow lazily inside ``run``, so the CLI starts fast.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
from types import ModuleType

from headstart.shared.runtime.errors import EXIT_USER_ERROR, UserError

# name -> module path. New jobs register here.
COMMANDS: dict[str, str] = {
    "train": "headstart.jobs.train.main",
    "evaluate": "headstart.jobs.evaluate.main",
    "demo": "headstart.jobs.demo.main",
    "submit": "headstart.infra.commands.submit",
    "status": "headstart.infra.commands.status",
    "results": "headstart.infra.commands.results",
    "scrape": "headstart.jobs.scrape.main",
    "scrape-merge": "headstart.jobs.scrape.merge_main",
    "gradcam": "headstart.jobs.gradcam.main",
    "similarity": "headstart.jobs.similarity.main",
    "predict": "headstart.jobs.predict.main",
    "predict-merge": "headstart.jobs.predict.merge_main",
    "export": "headstart.jobs.export.main",
}


def _load(name: str) -> ModuleType:
    return importlib.import_module(COMMANDS[name])


def build_parser() -> argparse.ArgumentParser:
    """The full parser with every registered subcommand."""
    from headstart.shared.runtime.specs import add_spec_arguments

    parser = argparse.ArgumentParser(
        prog="headstart",
        description="Transfer learning for image classifiers: scrape, train, evaluate, explain.",
        epilog="Exit codes: 0 ok, 1 crash, 2 bad input, 75 interrupted (checkpoint saved; "
               "rerun the same command to resume). Failures write _FAILURE.json next to the outputs.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        module = _load(name)
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        add_spec_arguments(p, module.SPEC)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``headstart`` console script."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from headstart.shared.runtime.logs import setup_logging
    from headstart.shared.runtime.runner import run_job
    from headstart.shared.runtime.specs import spec_from_args

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return EXIT_USER_ERROR
    setup_logging()
    module = _load(args.command)
    try:
        spec = spec_from_args(module.SPEC, args)
    except UserError as exc:
        print(f"headstart {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    return run_job(args.command, spec, module.run)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
