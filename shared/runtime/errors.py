"""Error taxonomy shared by every job.

One top-level place (:func:`headstart.shared.runtime.runner.run_job`) turns these into exit codes:
user errors exit 2, an interruption with a saved checkpoint exits 75, anything else is a
crash and exits 1.
"""
from __future__ import annotations

EXIT_OK = 0
EXIT_CRASH = 1  # any exception that is not a HeadstartError


class HeadstartError(Exception):
    """An outcome the runner reports without a traceback. Subclasses carry their exit code
    and failure kind as class attributes (as click's exceptions do)."""

    exit_code = EXIT_CRASH
    kind = "crash"


class UserError(HeadstartError):
    """Bad input from the user: a wrong path, value or file. Exits 2 with one clear line."""

    exit_code = 2
    kind = "user_error"


class Interrupted(HeadstartError):
    """The job received SIGTERM/SIGINT, saved what it could and should exit with 75."""

    # EX_TEMPFAIL from sysexits.h: "try again later". A SIGTERM (spot interruption, Batch
    # job termination) saved a checkpoint; rerunning the same command resumes.
    exit_code = 75
    kind = "interrupted"


EXIT_USER_ERROR = UserError.exit_code
EXIT_INTERRUPTED = Interrupted.exit_code


def expect(condition: bool, message: str) -> None:
    """Raise :class:`UserError` with ``message`` when ``condition`` is false."""
    if not condition:
        raise UserError(message)
