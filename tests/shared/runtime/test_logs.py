"""Progress reporting (log lines off a terminal, a bar on one) and logging setup."""
from __future__ import annotations

import io
import logging

import pytest

from headstart.shared.runtime import logs
from headstart.shared.runtime.logs import Progress, setup_logging


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def clock(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(logs.time, "monotonic", clock)
    return clock


@pytest.fixture
def plain_stderr(monkeypatch):
    stream = io.StringIO()  # isatty() is False: a container / CI log
    monkeypatch.setattr(logs.sys, "stderr", stream)
    return stream


def messages(caplog):
    return [r.getMessage() for r in caplog.records if r.name == "headstart.progress"]


def test_non_tty_logs_counts_and_rate_every_interval(clock, plain_stderr, caplog):
    caplog.set_level(logging.INFO)
    p = Progress(total=10, desc="decode", every=5.0)
    assert not p.tty
    clock.now += 30  # the first item pays the TensorFlow import: not part of the rate
    p.update()
    assert messages(caplog) == ["decode: 1/10 img (10%)"]  # at once, no rate or ETA yet
    for _ in range(4):
        clock.now += 1
        p.update()
    assert len(messages(caplog)) == 1  # nothing more before `every` seconds
    clock.now += 1
    p.update()
    assert messages(caplog)[-1] == "decode: 6/10 img (60%) eta 4s 1.0 img/s"
    clock.now += 1
    p.update(2, failed=1)
    assert len(messages(caplog)) == 2  # next line only after another interval
    clock.now += 4
    p.update()
    assert messages(caplog)[-1] == "decode: 9/10 img (90%) eta 1s 0.8 img/s 1 failed"
    assert plain_stderr.getvalue() == ""  # no bar drawn off a terminal


def test_first_eta_is_not_inflated_by_startup(clock, plain_stderr, caplog):
    """The issue's case: 1/140 after 40 s of imports used to read eta 5560s."""
    caplog.set_level(logging.INFO)
    p = Progress(total=140, desc="decode train", every=5.0)
    clock.now += 40
    p.update()
    for _ in range(10):
        clock.now += 0.1
        p.update()
    assert p.rate == pytest.approx(10.0)
    assert "eta 13s" in p._line()


def test_non_tty_unknown_total(clock, plain_stderr, caplog):
    caplog.set_level(logging.INFO)
    p = Progress(total=None, desc="scrape", unit="url", every=0)
    clock.now += 2
    p.update(3)
    clock.now += 2
    p.update(3)
    assert messages(caplog) == ["scrape: 3 url", "scrape: 6 url 1.5 url/s"]


def test_close_logs_summary(clock, plain_stderr, caplog):
    caplog.set_level(logging.INFO)
    p = Progress(total=4, desc="eval")
    clock.now += 2
    p.update(4, failed=2)
    p.close()
    assert messages(caplog)[-1] == "eval: 4/4 img (100%) 2.0 img/s 2 failed done in 2.0s"
    assert plain_stderr.getvalue() == ""


def test_custom_logger(clock, plain_stderr, caplog):
    caplog.set_level(logging.INFO)
    p = Progress(total=2, desc="x", logger=logging.getLogger("headstart.custom"), every=0)
    clock.now += 1
    p.update()
    assert [r.name for r in caplog.records] == ["headstart.custom"]


def test_rate_before_time_passes_is_finite(clock, plain_stderr):
    p = Progress(total=10, desc="x")
    p.update()
    p.update()
    assert p.rate > 0 and p.rate < float("inf")
    assert "img/s" in p._line()


def test_tty_draws_a_bar(clock, monkeypatch, caplog):
    caplog.set_level(logging.INFO)
    tty = FakeTTY()
    monkeypatch.setattr(logs.sys, "stderr", tty)
    p = Progress(total=10, desc="train")
    assert p.tty
    clock.now += 0.1
    p.update()
    assert tty.getvalue() == "\rtrain: [###...........................] 1/10 img (10%)"  # at once
    clock.now += 0.1
    p.update()
    assert tty.getvalue().count("\r") == 1  # redraws at most every 0.2 s
    clock.now += 0.2
    p.update(3)
    assert tty.getvalue().endswith("\rtrain: [###############...............] 5/10 img (50%) eta 0s 13.3 img/s")
    assert messages(caplog) == []  # no log lines on a terminal while running
    p.close()
    assert tty.getvalue().endswith("\n")
    assert len(messages(caplog)) == 1


def test_setup_logging_is_idempotent_and_reads_env(monkeypatch):
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    try:
        monkeypatch.setenv("HEADSTART_LOG_LEVEL", "WARNING")
        setup_logging()
        setup_logging()
        ours = [h for h in root.handlers if getattr(h, "_headstart", False)]
        assert len(ours) == 1
        assert root.level == logging.WARNING
        assert logging.getLogger("botocore").level == logging.WARNING
        setup_logging("DEBUG")
        assert root.level == logging.DEBUG
        monkeypatch.setenv("HEADSTART_LOG_LEVEL", "debug")  # case-insensitive
        setup_logging()
        assert root.level == logging.DEBUG
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
