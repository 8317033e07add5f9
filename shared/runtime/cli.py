"""The ``headstart`` console script: one subcommand per job.

Each command module exposes ``SPEC`` (a :class:`~headstart.shared.runtime.specs.JobSpec` subclass), ``HELP``
(one line) and ``run(spec)``. Modules are imported only when their subcommand runs or
``--help`` is built, and they import TensorFlow lazily inside ``run``, so the CLI starts fast.
A job's ``run`` returns a :class:`~headstart.shared.runtime.summary.Summary`: its one line goes
to stdout at the end (``--json``: the summary as JSON); logs and progress go to stderr.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import re
import sys
from types import ModuleType
from typing import Any, NoReturn

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
    "audit": "headstart.jobs.audit.main",
    "predict": "headstart.jobs.predict.main",
    "predict-merge": "headstart.jobs.predict.merge_main",
    "features": "headstart.jobs.features.main",
    "export": "headstart.jobs.export.main",
}


def _load(name: str) -> ModuleType:
    return importlib.import_module(COMMANDS[name])


class Parser(argparse.ArgumentParser):
    """argparse without abbreviations (``--epoch`` is not ``--epochs``) and with "did you mean"."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def option_names(self) -> list[str]:
        return [s for action in self._actions for s in action.option_strings if s.startswith("--")]

    def error(self, message: str) -> NoReturn:
        from headstart.shared.runtime.specs import did_you_mean

        choice = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
        if choice:
            options = re.findall(r"'([^']*)'", choice.group(2))
            message = f"unknown command {choice.group(1)!r}{did_you_mean(choice.group(1), options)}"
        elif message.startswith("unrecognized arguments:"):
            flags = [w.split("=", 1)[0] for w in message.split(":", 1)[1].split() if w.startswith("-")]
            hints = [h for h in (did_you_mean(f, self.option_names()) for f in flags) if h]
            message += "".join(hints)
        super().error(message)


def build_parser() -> Parser:
    """The full parser with every registered subcommand."""
    from headstart.shared.runtime.specs import add_spec_arguments

    parser = Parser(
        prog="headstart",
        description="Transfer learning for image classifiers: scrape, train, evaluate, explain.",
        epilog="Exit codes: 0 ok, 1 crash, 2 bad input, 75 interrupted (checkpoint saved; "
               "rerun the same command to resume). Failures write _FAILURE.json next to the outputs. "
               "Every job ends with one summary line on stdout (--json: as JSON).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for name in COMMANDS:
        module = _load(name)
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        add_spec_arguments(p, module.SPEC)
        p.add_argument("--json", dest="_json", action="store_true",
                       help="print the final summary as one JSON object on stdout")
    return parser


def _subparser(parser: Parser, name: str) -> Parser:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices[name]


def _from_manifest(job: str, out: str | None):
    """A summary for a job whose ``run`` returns none: what its published manifest lists."""
    from headstart.shared.runtime.summary import Summary

    if not out:
        return None
    try:
        from headstart.shared.storage.manifest import MANIFEST
        from headstart.shared.storage.store import join, open_store

        store = open_store(out)
        files = json.loads(store.read_text(MANIFEST)).get("files", {})
    except Exception:  # noqa: BLE001 - no manifest (a shard, a listing command): no line
        return None
    report = next((k for k in ("report.html", "auto_report.html") if k in files), None)
    return Summary(job=job, out=store.uri, produced=f"{len(files)} files",
                   report=join(store.uri, report) if report else None)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``headstart`` console script."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from headstart.shared.runtime.logs import setup_logging
    from headstart.shared.runtime.runner import run_job
    from headstart.shared.runtime.specs import spec_from_args
    from headstart.shared.runtime.summary import failure_dict

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args, extras = parser.parse_known_args(argv)
    if not args.command:
        parser.print_help()
        return EXIT_USER_ERROR
    if extras:  # the subcommand's usage, not the top-level one
        _subparser(parser, args.command).error("unrecognized arguments: " + " ".join(extras))
    setup_logging()
    module = _load(args.command)
    try:
        spec = spec_from_args(module.SPEC, args)
    except UserError as exc:
        print(f"headstart {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    holder: dict[str, Any] = {}

    def job(spec_: Any) -> None:
        holder["summary"] = module.run(spec_)

    code = run_job(args.command, spec, job)
    summary = holder.get("summary")
    if code == 0 and summary is None:
        summary = _from_manifest(args.command, getattr(spec, "out", None))
    if code != 0:
        if args._json:
            print(json.dumps(failure_dict(args.command, code, getattr(spec, "out", None))))
    elif summary is not None:
        print(summary.to_json() if args._json else summary.line(), flush=True)
    elif args._json:
        print(json.dumps({"job": args.command, "ok": True}))
    return code


def console() -> NoReturn:
    """The console script: Keras' import hook, :func:`main`, then a quick exit once TensorFlow
    is loaded.

    The hook (:mod:`headstart.shared.runtime.quickstart`) keeps Keras' start-up from loading
    scikit-learn, pandas and matplotlib, which no job uses through it (2.9 -> 2.1 s here).
    Tearing down an interpreter that holds TensorFlow takes ~0.8 s here (module and C++
    object teardown; measured on the 2-core machine), a sixth of a small run's fixed cost.
    Exit handlers still run (temporary folders, logging) and stdio is flushed; the quick
    exit is skipped while another non-daemon thread runs, which a normal exit would join."""
    from headstart.shared.runtime import quickstart

    quickstart.install()
    code = main()
    if "tensorflow" in sys.modules and not _other_threads():
        import atexit
        import logging

        atexit._run_exitfuncs()
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


def _other_threads() -> bool:
    import threading

    main_thread = threading.main_thread()
    return any(t is not main_thread and not t.daemon and t.is_alive() for t in threading.enumerate())


if __name__ == "__main__":  # pragma: no cover
    console()
