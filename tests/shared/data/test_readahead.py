"""read_ahead: order, bounded look-ahead, errors at their place, clean-up on early close."""
from __future__ import annotations

import threading
import time

import pytest

from headstart.shared.data.readahead import read_ahead


def _threads(name: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == name and t.is_alive()]


def test_items_in_order_and_no_thread_left():
    assert list(read_ahead(iter(range(100)), 3, "ra-order")) == list(range(100))
    assert not _threads("ra-order")


def test_runs_at_most_depth_ahead_of_the_reader():
    produced = []

    def source():
        for i in range(50):
            produced.append(i)
            yield i

    reader = read_ahead(source(), 2, "ra-depth")
    assert next(reader) == 0
    time.sleep(0.3)  # the producer runs on while the reader waits: queue (2) + one in hand
    assert len(produced) <= 1 + 2 + 1
    reader.close()
    assert not _threads("ra-depth")


def test_an_error_in_the_source_is_raised_in_the_reader_after_the_items_before_it():
    def source():
        yield 1
        yield 2
        raise ValueError("bad image 'x'")

    got = []
    with pytest.raises(ValueError, match="bad image 'x'"):
        for item in read_ahead(source(), 4, "ra-error"):
            got.append(item)
    assert got == [1, 2]
    assert not _threads("ra-error")


def test_closing_early_closes_the_source_on_its_thread():
    closed = []

    def source():
        try:
            yield from range(10**6)
        finally:
            closed.append(threading.current_thread().name)

    reader = read_ahead(source(), 2, "ra-close")
    assert [next(reader) for _ in range(3)] == [0, 1, 2]
    reader.close()
    assert closed == ["ra-close"]  # its clean-up ran (e.g. a decode pool shut down)
    assert not _threads("ra-close")


def test_an_error_in_the_reader_stops_the_producer():
    closed = []

    def source():
        try:
            yield from range(10**6)
        finally:
            closed.append(True)

    with pytest.raises(KeyError):
        for item in read_ahead(source(), 2, "ra-reader-error"):
            if item == 5:
                raise KeyError(item)
    assert closed == [True] and not _threads("ra-reader-error")
