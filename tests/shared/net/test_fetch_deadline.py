"""--timeout is a deadline for the whole attempt, enforced on every read (hostile servers)."""
from __future__ import annotations

import socket
import threading
import time

import pytest

from headstart.shared.net.fetch import FetchConfig, fetch
from headstart.shared.net.urlsafety import AllowList
from tests.hostile_server import HostileServer


@pytest.fixture(scope="module")
def hostile():
    with HostileServer() as server:
        yield server


def _cfg(server, **kw) -> FetchConfig:
    return FetchConfig(**{**dict(timeout=1.0, retries=0, backoff=0.01,
                                 allow=AllowList.parse([server.allow])), **kw})


@pytest.mark.parametrize("path", ["/trickle-status?interval=0.3", "/trickle-headers?interval=0.3",
                                  "/many-headers?interval=0.1", "/trickle-chunks?interval=0.3",
                                  "/never-ending?interval=0.05"])
def test_slow_responses_are_cut_off_at_the_deadline(hostile, path):
    """Every piece arrives well within the timeout, but the whole attempt does not."""
    start = time.monotonic()
    result = fetch(hostile.url(path), _cfg(hostile))
    elapsed = time.monotonic() - start
    assert result.status == "timeout", result
    assert elapsed < 1.6, f"{path} held the attempt {elapsed:.1f}s with --timeout 1"


def test_the_deadline_spans_retries_per_attempt(hostile):
    start = time.monotonic()
    result = fetch(hostile.url("/trickle-headers?interval=0.3"), _cfg(hostile, timeout=0.5, retries=2))
    assert (result.status, result.attempts) == ("timeout", 3)
    assert time.monotonic() - start < 0.5 * 3 + 0.5 + 1.0  # three deadlines + backoff + slack


def test_a_short_body_is_a_retried_connection_error(hostile):
    hostile.hits.clear()
    short = fetch(hostile.url("/short-body"), _cfg(hostile, retries=2))
    assert (short.status, short.attempts, short.transient) == ("connection_error", 3, True)
    assert "5000 of 10000" in short.error
    healed = fetch(hostile.url("/short-body-once"), _cfg(hostile, retries=1))
    assert (healed.status, healed.attempts, len(healed.data)) == ("ok", 2, 10000)


def test_a_stop_request_abandons_a_slow_attempt_promptly(hostile):
    stop = threading.Event()
    threading.Timer(0.3, stop.set).start()
    start = time.monotonic()
    result = fetch(hostile.url("/trickle-headers?interval=0.2"),
                   _cfg(hostile, timeout=30, retries=3, cancelled=stop.is_set))
    assert result.status == "cancelled"
    assert time.monotonic() - start < 1.5


def _slow_resolver(monkeypatch, seconds: float) -> list[str]:
    real, calls = socket.getaddrinfo, []

    def slow(host, *args, **kwargs):
        calls.append(host)
        time.sleep(seconds)  # a black-holed DNS server: the resolver's own retries take this long
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", slow)
    return calls


def test_a_hanging_resolver_times_out_at_the_deadline(hostile, monkeypatch):
    calls = _slow_resolver(monkeypatch, 5.0)
    start = time.monotonic()
    result = fetch(hostile.url("/img/a.jpg"), _cfg(hostile, timeout=0.5, retries=1))
    elapsed = time.monotonic() - start
    assert (result.status, result.attempts) == ("timeout", 2), result
    assert "resolving 'localhost'" in result.error and calls == ["localhost", "localhost"]
    assert elapsed < 0.5 * 2 + 0.5, f"DNS held the fetch {elapsed:.1f}s with --timeout 0.5"


def test_a_stop_request_abandons_a_hanging_lookup(hostile, monkeypatch):
    _slow_resolver(monkeypatch, 5.0)
    stop = threading.Event()
    threading.Timer(0.2, stop.set).start()
    start = time.monotonic()
    result = fetch(hostile.url("/img/a.jpg"), _cfg(hostile, timeout=30, cancelled=stop.is_set))
    assert result.status == "cancelled" and time.monotonic() - start < 1.2


def test_a_slow_lookup_within_the_deadline_still_fetches(hostile, monkeypatch):
    hostile.payloads["dns"] = b"x" * 100
    _slow_resolver(monkeypatch, 0.3)
    result = fetch(hostile.url("/bytes/dns"), _cfg(hostile, timeout=3))
    assert (result.status, result.data) == ("ok", b"x" * 100), result
