"""Decode the first images in a forked child while this process imports TensorFlow.

Importing TensorFlow and building the model take 6-9 s of one core, holding the GIL nearly
all the time: decode threads in the same process then starve the import (measured: the
import 6.3 s -> 8.1 s with decoding beside it) and decode little. A child forked *before*
that import decodes on another core with no GIL to share, into an anonymous shared memory
map; the parent stops it when the model is built and reads what it decoded for free.

The child runs the same :func:`headstart.shared.data.images.read_image` (bit-identical
pixels); anything it could not keep (a skipped file, an image over the map's room) is left
to the parent's normal decode, which records the reason. Fork is only used where it is
safe and pays: Linux, a local store, one thread in the process and TensorFlow not yet
imported (its thread pools' locks would be copied held), two or more usable CPUs. The parent
waits at most :data:`STOP_WAIT_S` for the child to stop, then kills it: what the child had
recorded as done is complete, whatever state it is killed in.
"""
from __future__ import annotations

import mmap
import os
import signal
import struct
import sys
import threading
import time
from typing import Any

import numpy as np

from headstart.shared.runtime.cpus import usable_cpus

# Room for decoded pixels in the shared map (uint8; a 128 px photo is 49 kB, a 640x480 one
# kept whole for a 160 px input 0.9 MB, one shrunk from a large photo 0.3-0.6 MB). Pages are
# touched only when used and the map is freed once read, so the room is a bound, not a cost:
# an eighth of the memory still available, between these two. 256 MB filled after ~280 of
# the mixed-size benchmark's 640x480 photos, ~4 s into a ~11 s import + build (measured).
EARLY_BYTES = 256 << 20
EARLY_BYTES_MAX = 1 << 30


def early_room() -> int:
    """The map's room: an eighth of the available memory, within EARLY_BYTES..EARLY_BYTES_MAX."""
    from headstart.shared.runtime.memory import available_bytes

    free = available_bytes()
    return EARLY_BYTES if free is None else max(EARLY_BYTES, min(EARLY_BYTES_MAX, free // 8))
# The header: the stop flag (parent writes), images done and the first image's time.time()
# (child writes): separate fields, so neither side overwrites the other's.
_STOP, _DONE, _FIRST = struct.Struct("<q"), struct.Struct("<q"), struct.Struct("<d")
_HEADER = 24
STOP_WAIT_S = 5.0
_SLOT = struct.Struct("<qiii")      # offset, height, width, status (1 = kept, else not)


def usable(store: Any) -> bool:
    """True where an early child helps and fork is safe."""
    local = getattr(store, "local_path", None)
    return (sys.platform.startswith("linux") and hasattr(os, "fork") and callable(local) and local() is not None
            and threading.active_count() == 1 and "tensorflow" not in sys.modules and usable_cpus() >= 2
            and os.environ.get("HEADSTART_EARLY_DECODE", "1") != "0")


class EarlyDecode:
    """A forked child decoding ``items`` in order until :meth:`stop` (or the map is full)."""

    def __init__(self, store: Any, items: list, size: int, min_side: int, max_pixels: int,
                 room: int | None = None) -> None:
        room = early_room() if room is None else room
        self.n = len(items)
        self._head = _HEADER + _SLOT.size * self.n
        self._map = mmap.mmap(-1, self._head + room)
        self._done = 0
        self.first_at: float | None = None  # time.time() of the child's first decoded image
        self._pid = os.fork()
        if self._pid == 0:  # the child: decode, write, never return into the parent's code
            code = 0
            try:
                self._child(store, items, size, min_side, max_pixels, room)
            except BaseException:  # noqa: BLE001 - the parent decodes whatever is missing
                code = 1
            os._exit(code)

    def _child(self, store: Any, items: list, size: int, min_side: int, max_pixels: int,
               room: int) -> None:
        from headstart.shared.data.images import read_image

        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles ^C and stops us
        try:  # die with the parent (PR_SET_PDEATHSIG), not decode on as an orphan
            import ctypes

            ctypes.CDLL(None).prctl(1, signal.SIGKILL)
        except (OSError, AttributeError):
            pass
        offset = self._head
        for i, item in enumerate(items):
            if _STOP.unpack_from(self._map, 0)[0]:
                return
            result = read_image(store, item.key, item.label, target=size, max_pixels=max_pixels,
                                min_side=min_side)
            status, h, w = 0, 0, 0
            if isinstance(result, np.ndarray) and result.ndim == 3 and result.shape[2] == 3 \
                    and offset + result.nbytes <= self._head + room:
                h, w = result.shape[:2]
                self._map[offset:offset + result.nbytes] = np.ascontiguousarray(result, np.uint8).tobytes()
                status = 1
            _SLOT.pack_into(self._map, _HEADER + _SLOT.size * i, offset, h, w, status)
            if status:
                offset += h * w * 3
                if not _FIRST.unpack_from(self._map, 16)[0]:
                    _FIRST.pack_into(self._map, 16, time.time())
            _DONE.pack_into(self._map, 8, i + 1)  # after the slot: a reader never sees half

    def stop(self) -> int:
        """Stop the child and wait for it; the number of leading items it got through."""
        if self._pid > 0:
            _STOP.pack_into(self._map, 0, 1)
            deadline = time.monotonic() + STOP_WAIT_S
            while os.waitpid(self._pid, os.WNOHANG) == (0, 0):
                if time.monotonic() > deadline:  # stuck (a decode that never ends): no matter
                    os.kill(self._pid, signal.SIGKILL)
                    os.waitpid(self._pid, 0)
                    break
                time.sleep(0.002)
            self._pid = -1
            self._done = _DONE.unpack_from(self._map, 8)[0]
            self.first_at = _FIRST.unpack_from(self._map, 16)[0] or None
        return self._done

    def get(self, i: int) -> np.ndarray | None:
        """Item ``i``'s decoded image (a copy), or None: not reached, or left to the parent."""
        if i >= self._done:
            return None
        offset, h, w, status = _SLOT.unpack_from(self._map, _HEADER + _SLOT.size * i)
        if status != 1:
            return None
        return np.frombuffer(self._map, np.uint8, h * w * 3, offset).reshape(h, w, 3).copy()

    def close(self) -> None:
        """Stop the child (if still running) and free the map."""
        self.stop()
        if not self._map.closed:
            self._map.close()
