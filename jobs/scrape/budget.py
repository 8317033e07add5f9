"""A pixel budget shared by every decode of a scrape, so memory is bounded by pixels in
flight rather than by the number of URLs in flight.

Decoding a 190 KB PNG that declares 7000x7000 needs ~150 MB of RGB (more while converting),
so 16 such downloads decoded at once peaked at 2.8 GB. Before decoding, the header (cheap:
:func:`headstart.shared.data.images.inspect_image`) gives the pixel count; a decode then waits
until that many pixels of the budget are free. One image larger than the whole budget still
runs, alone. Peak decode memory is then about ``budget x bytes-per-pixel`` (measured by
``bench/hostile.py``), whatever the URLs are.
"""
from __future__ import annotations

import ctypes
import threading
from contextlib import contextmanager
from typing import Callable, Iterator

from headstart.shared.data.images import inspect_image


class BudgetCancelled(Exception):
    """A stop request arrived while waiting for pixels; nothing is held."""


_POLL = 0.2  # seconds between checks of the stop flag while waiting (a signal notifies no one)


class PixelBudget:
    """A counting semaphore over pixels (thread-safe; waits wake when pixels are released)."""

    def __init__(self, pixels: int) -> None:
        self.total = max(1, int(pixels))
        self.free = self.total
        self.peak_in_use = 0
        self._cond = threading.Condition()

    @contextmanager
    def hold(self, pixels: int, cancelled: Callable[[], bool] = lambda: False) -> Iterator[int]:
        """Hold ``pixels`` (capped at the whole budget) while the block runs. Raises
        :class:`BudgetCancelled` when ``cancelled()`` turns true while waiting, so a SIGTERM
        does not wait for every queued decode to take its turn."""
        need = min(max(0, int(pixels)), self.total)
        with self._cond:
            while self.free < need:
                if cancelled():
                    raise BudgetCancelled("stop requested while waiting for decode budget")
                self._cond.wait(timeout=_POLL)
            self.free -= need
            self.peak_in_use = max(self.peak_in_use, self.total - self.free)
        try:
            yield need
        finally:
            if need >= _TRIM_ABOVE:
                _release_freed_memory()
            with self._cond:
                self.free += need
                self._cond.notify_all()


_TRIM_ABOVE = 4_000_000  # pixels: decodes this big leave tens of MB in malloc's arenas


def _release_freed_memory() -> None:
    """Hand memory freed by a big decode back to the OS. Each download thread decodes in its
    own glibc malloc arena, which keeps its high-water mark: without this, 16 threads that
    decoded one 7000x7000 PNG each *one after another* still peaked at 5.8 GB RSS."""
    global _LIBC
    if _LIBC is None:
        try:
            _LIBC = ctypes.CDLL("libc.so.6")
            _LIBC.malloc_trim.argtypes = [ctypes.c_size_t]
        except (OSError, AttributeError):  # not glibc: nothing to do
            _LIBC = False
    if isinstance(_LIBC, ctypes.CDLL):
        _LIBC.malloc_trim(0)


_LIBC: ctypes.CDLL | bool | None = None


def declared_pixels(data: bytes, max_pixels: int) -> int:
    """What the header says the image decodes to (0 when it is refused or unreadable: the
    decode then fails fast on the header without allocating pixels)."""
    try:
        info = inspect_image(data, max_pixels=max_pixels, min_side=1)
    except Exception:  # noqa: BLE001 - any refusal is reported by the decode itself
        return 0
    return info.width * info.height
