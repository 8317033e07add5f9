"""Logging setup and a small progress reporter (a bar on a terminal, log lines otherwise)."""
from __future__ import annotations

import logging
import os
import sys
import time


def setup_logging(level: str | int | None = None) -> None:
    """Configure root logging once: timestamps, level and logger name on stderr."""
    level = level or os.environ.get("HEADSTART_LOG_LEVEL", "INFO")
    if isinstance(level, str):
        level = level.strip().upper()
    root = logging.getLogger()
    if not any(getattr(h, "_headstart", False) for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s",
                                               "%H:%M:%S"))
        handler._headstart = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(level)
    for noisy in ("absl", "botocore", "boto3", "urllib3", "s3transfer", "matplotlib", "PIL", "h5py"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


class Progress:
    """Counts work items and reports count, rate, ETA and failures.

    On a terminal it redraws a one-line bar; elsewhere (containers, CI, CloudWatch) it logs a
    line every ``every`` seconds, so long jobs always show they are alive.
    """

    def __init__(self, total: int | None, desc: str, unit: str = "img",
                 logger: logging.Logger | None = None, every: float = 5.0) -> None:
        self.total, self.desc, self.unit = total, desc, unit
        self.log = logger or logging.getLogger("headstart.progress")
        self.every = every
        self.done = 0
        self.failed = 0
        self.start = self._last = time.monotonic()  # wall time of the whole step (close())
        # Rate and ETA are measured from the first finished item, not from construction: the
        # first item pays one-off costs (TensorFlow import, graph tracing, first connection)
        # that would otherwise make the first ETAs absurd.
        self._t1: float | None = None
        self._n1 = 0
        self.tty = sys.stderr.isatty()

    def update(self, n: int = 1, failed: int = 0) -> None:
        self.done += n
        self.failed += failed
        now = time.monotonic()
        if self._t1 is None:
            self._t1, self._n1 = now, self.done
            self._last = now - self.every  # the first line comes at once: the step is alive
        if self.tty and now - self._last >= 0.2:
            sys.stderr.write("\r" + self._line(bar=True))
            sys.stderr.flush()
            self._last = now
        elif not self.tty and now - self._last >= self.every:
            self.log.info(self._line())
            self._last = now

    @property
    def rate(self) -> float:
        """Items per second since the first finished item (0 until a second one finishes)."""
        if self._t1 is None or self.done <= self._n1:
            return 0.0
        return (self.done - self._n1) / max(time.monotonic() - self._t1, 1e-9)

    def _line(self, bar: bool = False, final: bool = False) -> str:
        parts = [f"{self.desc}:"]
        if self.total:
            frac = min(self.done / self.total, 1.0)
            if bar:
                filled = int(frac * 30)
                parts.append("[" + "#" * filled + "." * (30 - filled) + "]")
            parts.append(f"{self.done}/{self.total} {self.unit} ({frac:.0%})")
            if not final and self.rate > 0 and self.done < self.total:
                parts.append(f"eta {(self.total - self.done) / self.rate:.0f}s")
        else:
            parts.append(f"{self.done} {self.unit}")
        # The closing line reports the whole step's throughput, start-up included.
        rate = self.done / max(time.monotonic() - self.start, 1e-9) if final else self.rate
        if rate > 0:
            parts.append(f"{rate:.1f} {self.unit}/s")
        if self.failed:
            parts.append(f"{self.failed} failed")
        return " ".join(parts)

    def close(self) -> None:
        if self.tty:
            sys.stderr.write("\r" + self._line(bar=True, final=True) + "\n")
            sys.stderr.flush()
        seconds = time.monotonic() - self.start
        self.log.info("%s done in %.1fs", self._line(final=True), seconds)
