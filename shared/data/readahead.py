"""Run an iterator on a background thread, a bounded number of items ahead of its reader.

The train job's stream resizes decoded images with TensorFlow ops (the model's own
antialiased resize: 3-5 ms a 640x480 photo here) and hands batches to the backbone. Run in
the reader's thread, the resize and the backbone take turns; on a thread of its own the next
batch is resized while the backbone computes this one (TensorFlow releases the GIL in ops).
"""
from __future__ import annotations

import queue
import threading
from typing import Iterator, TypeVar

T = TypeVar("T")
_END = object()


def read_ahead(source: Iterator[T], depth: int = 2, name: str = "read-ahead") -> Iterator[T]:
    """``source``'s items in order, produced on a daemon thread at most ``depth`` ahead.

    An exception in ``source`` is raised in the reader at that point. Closing the reader
    early (or an exception in it) stops the thread at its next item and closes ``source`` on
    that thread, so ``source``'s own clean-up runs; the reader waits for that."""
    items: queue.Queue = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()

    def put(entry: tuple[bool, object]) -> bool:
        while not stop.is_set():
            try:
                items.put(entry, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for item in source:
                if not put((True, item)):
                    return
            put((True, _END))
        except BaseException as exc:  # noqa: BLE001 - handed to the reader, which raises it
            put((False, exc))
        finally:
            close = getattr(source, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=work, name=name, daemon=True)
    thread.start()
    try:
        while True:
            ok, item = items.get()
            if not ok:
                raise item
            if item is _END:
                return
            yield item
    finally:
        stop.set()
        thread.join()
