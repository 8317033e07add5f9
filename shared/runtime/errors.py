"""Error taxonomy shared by every job.

One top-level place (:func:`headstart.shared.runtime.runner.run_job`) maps these to exit codes:
user errors exit 2, an interruption with a saved checkpoint exits 75, anything else is a
crash and exits 1.
"""
from __future__ import annotations

EXIT_OK = 0
EXIT_CRASH = 1
EXIT_USER_ERROR = 2
# EX_TEMPFAIL from sysexits.h: "try again later". A SIGTERM (spot interruption, Batch
# job termination) saved a checkpoint; rerunning the same command resumes.
EXIT_INTERRUPTED = 75


class UserError(Exception):
    """Bad input from the user: a wrong path, value or file. Exits 2 with one clear line."""


class Interrupted(Exception):
    """The job received SIGTERM/SIGINT, saved what it could and should exit with 75."""


def expect(condition: bool, message: str) -> None:
    """Raise :class:`UserError` with ``message`` when ``condition`` is false."""
    if not condition:
        raise UserError(message)
