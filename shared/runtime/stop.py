"""The stop flag: SIGTERM/SIGINT become a request that long loops honour at safe points.

Compute modules (training, feature extraction, prediction, explanations, the scrape pipeline)
poll :data:`STOP`; only :mod:`headstart.shared.runtime.runner` installs the signal handlers.
Kept apart from the runner so the library never imports the CLI boundary.
"""
from __future__ import annotations

import logging
import signal
import threading
from typing import Any

from headstart.shared.runtime.errors import Interrupted

log = logging.getLogger("headstart")


class StopFlag:
    """Set by SIGTERM/SIGINT. Cooperative jobs poll :meth:`check` at safe points (after a
    batch or an epoch) to save a checkpoint before leaving; others are interrupted at once."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.cooperative = False
        self.signal_name = ""

    def request(self, signum: int, _frame: Any = None) -> None:
        self.signal_name = signal.Signals(signum).name
        log.warning("received %s: stopping at the next safe point", self.signal_name)
        already = self._event.is_set()
        self._event.set()
        if not self.cooperative or already:
            raise Interrupted(f"received {self.signal_name}")

    def note(self, signum: int, _frame: Any = None) -> None:
        """A signal handler that records the request and never raises: for a worker process
        whose parent decides how hard to stop (it forwards one SIGTERM, then waits)."""
        self.signal_name = signal.Signals(signum).name
        self._event.set()

    @property
    def requested(self) -> bool:
        return self._event.is_set()

    def check(self) -> None:
        if self.requested:
            raise Interrupted(f"received {self.signal_name or 'stop request'}")

    def reset(self) -> None:
        self._event.clear()
        self.cooperative = False
        self.signal_name = ""


STOP = StopFlag()
