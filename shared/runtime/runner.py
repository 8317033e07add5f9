"""The one top-level place that maps outcomes to exit codes and failure records.

User errors exit 2 with one clear line, an interruption that saved a checkpoint exits 75,
crashes exit 1. Every failure writes ``_FAILURE.json`` next to the outputs and never a
manifest, so nothing half-written looks complete.
"""
from __future__ import annotations

import logging
import signal
import threading
import time
import traceback
from typing import Any, Callable

from headstart.shared.runtime.errors import EXIT_CRASH, EXIT_OK, HeadstartError, Interrupted
from headstart.shared.runtime.specs import JobSpec
from headstart.shared.runtime.stop import STOP
from headstart.shared.storage.manifest import FAILURE, to_json

log = logging.getLogger("headstart")


def _install_signal_handlers() -> dict[int, Any]:
    """Route SIGTERM/SIGINT to :data:`STOP`; return the previous handlers (main thread only)."""
    previous: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGTERM, signal.SIGINT):
            previous[signum] = signal.signal(signum, STOP.request)
    return previous


def _restore_signal_handlers(previous: dict[int, Any]) -> None:
    for signum, handler in previous.items():
        signal.signal(signum, handler if handler is not None else signal.SIG_DFL)


def write_failure(out_uri: str | None, job: str, kind: str, message: str, code: int,
                  spec: JobSpec | None = None, tb: str | None = None) -> None:
    """Write ``_FAILURE.json`` next to the outputs; never raises (we are already failing)."""
    if not out_uri:
        return
    try:
        from headstart.shared.storage.store import open_store

        record = {"job": job, "kind": kind, "exit_code": code, "message": message,
                  "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                  "spec": spec.dump() if spec else None, "traceback": tb}
        open_store(out_uri).write_text(FAILURE, to_json(record))
    except Exception as exc:  # noqa: BLE001 - a failure record must not mask the failure
        log.warning("could not write %s to %s: %s", FAILURE, out_uri, exc)


def run_job(job: str, spec: JobSpec, fn: Callable[[JobSpec], Any]) -> int:
    """Run ``fn(spec)`` and return the process exit code."""
    out_uri = getattr(spec, "out", None)
    STOP.reset()
    previous = _install_signal_handlers()
    try:
        return _run(job, spec, fn, out_uri)
    finally:
        _restore_signal_handlers(previous)


def _run(job: str, spec: JobSpec, fn: Callable[[JobSpec], Any], out_uri: str | None) -> int:
    try:
        fn(spec)
        return EXIT_OK
    except HeadstartError as exc:  # its class says how it ends: kind and exit code
        if isinstance(exc, Interrupted):
            log.warning("interrupted: %s; rerun the same command to resume (exit %d)", exc, exc.exit_code)
        else:
            log.error("error: %s", exc)
        write_failure(out_uri, job, exc.kind, str(exc), exc.exit_code, spec)
        return exc.exit_code
    except Exception as exc:  # noqa: BLE001 - the crash boundary
        tb = traceback.format_exc()
        log.error("crash in %s: %s\n%s", job, exc, tb)
        write_failure(out_uri, job, "crash", f"{type(exc).__name__}: {exc}", EXIT_CRASH, spec, tb)
        return EXIT_CRASH
