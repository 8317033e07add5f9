"""A small, SSRF-safe HTTP GET client for untrusted URLs (stdlib ``http.client``).

Each hop is checked by :mod:`headstart.shared.net.urlsafety` and the connection is pinned to the address
that passed the check (the name is never resolved twice; for https the hostname is still
sent as SNI and checked against the certificate). Bodies stream under a byte cap and a
wall-clock deadline, so neither a huge nor a trickling response can stall a worker.

Failures are data: :func:`fetch` returns a :class:`FetchResult` with a status
(``http_error``, ``timeout``, ``connection_error``, ``too_large``, ``blocked``, ``bad_url``,
``too_many_redirects``) instead of raising. Transient failures (timeouts, resets, 429, 5xx)
are retried with exponential backoff; permanent ones are not.
"""
from __future__ import annotations

import http.client
import io
import ipaddress
import logging
import random
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from typing import Callable
from urllib.parse import urljoin

from headstart.shared.net.urlsafety import AllowList, IPAddress, Target, UrlRejected, check_address, parse_url, resolve

log = logging.getLogger(__name__)

USER_AGENT = "headstart-scraper/0.1 (+image dataset builder; honours robots via its operator)"
REDIRECT_CODES = {301, 302, 303, 307, 308}
TRANSIENT_CODES = {408, 425, 429, 500, 502, 503, 504}
_CHUNK = 256 * 1024
_POLL = 0.5  # seconds between checks of the stop flag while a read waits


def _never() -> bool:
    return False


@dataclass(frozen=True)
class FetchConfig:
    """How to fetch: limits, retries and the loopback allow-list."""

    timeout: float = 10.0  # seconds per attempt: connect + headers + body, across redirects
    max_bytes: int = 16 * 2**20
    max_redirects: int = 5
    retries: int = 2
    backoff: float = 0.5  # seconds before the first retry; doubles each time (with jitter)
    max_backoff: float = 20.0
    user_agent: str = USER_AGENT
    allow: AllowList = field(default_factory=AllowList)
    # Polled while reads wait and before retries: True abandons the URL as ``cancelled``
    # (a stop request; the caller does not record it, so a rerun fetches it again).
    cancelled: Callable[[], bool] = _never


@dataclass
class FetchResult:
    """The outcome of one URL: ``status == "ok"`` with ``data``, or a failure with ``error``."""

    url: str
    status: str = "ok"
    http_code: int | None = None
    data: bytes | None = None
    error: str = ""
    final_url: str = ""
    attempts: int = 0
    retry_after: float | None = None
    transient: bool = False


class _Failure(Exception):
    def __init__(self, status: str, message: str, transient: bool = False,
                 http_code: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status, self.transient = status, transient
        self.http_code, self.retry_after = http_code, retry_after


class _DeadlineReader(io.RawIOBase):
    """The socket's read side with the attempt's deadline applied to *every* recv.

    ``http.client`` reads the status line, headers and chunk-size lines through a file over
    the socket; a plain socket timeout bounds each recv, not their sum, so a server sending a
    byte every few seconds could hold a worker for minutes. Each read here gets what is left
    of the deadline (at most ``_POLL`` seconds, to notice a stop request) and fails past it."""

    def __init__(self, sock: socket.socket, deadline: float, cancelled: Callable[[], bool]) -> None:
        self.sock, self.deadline, self.cancelled = sock, deadline, cancelled

    def readable(self) -> bool:
        return True

    def readinto(self, buf) -> int:
        while True:
            if self.cancelled():
                raise _Failure("cancelled", "stop requested")
            left = _remaining(self.deadline)
            self.sock.settimeout(min(left, _POLL))
            try:
                return self.sock.recv_into(buf)
            except TimeoutError:
                continue  # re-check the deadline and the stop flag


class _DeadlineSocket:
    """Proxies a socket; ``makefile`` (what ``HTTPResponse`` reads from) honours the deadline."""

    def __init__(self, sock: socket.socket, deadline: float, cancelled: Callable[[], bool]) -> None:
        self._sock, self._deadline, self._cancelled = sock, deadline, cancelled

    def makefile(self, mode: str = "rb", *args, **kwargs):
        return io.BufferedReader(_DeadlineReader(self._sock, self._deadline, self._cancelled))

    def close(self) -> None:
        # http.client closes the connection's socket as soon as a "Connection: close" response
        # starts, while the body is still to be read through makefile(); the real socket is
        # closed by _PinnedHTTPConnection.release() once the attempt is over.
        pass

    def sendall(self, data) -> None:
        self._sock.settimeout(_remaining(self._deadline))
        self._sock.sendall(data)

    def __getattr__(self, name: str):
        return getattr(self._sock, name)


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """Connects to a pre-validated IP; the Host header keeps the URL's hostname."""

    def __init__(self, target: Target, ip: IPAddress, deadline: float,
                 cancelled: Callable[[], bool]) -> None:
        super().__init__(target.host, target.port, timeout=_remaining(deadline))
        self.pinned_ip, self.deadline, self.cancelled = ip, deadline, cancelled

    def _open_socket(self) -> socket.socket:
        sock = socket.create_connection((str(self.pinned_ip), self.port), _remaining(self.deadline))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    def _wrap(self, sock: socket.socket) -> None:
        self.raw_sock = sock
        self.sock = _DeadlineSocket(sock, self.deadline, self.cancelled)

    def connect(self) -> None:
        self._wrap(self._open_socket())

    def release(self) -> None:
        """Close the connection and its real socket (the attempt is over)."""
        self.close()
        raw = getattr(self, "raw_sock", None)
        if raw is not None:
            raw.close()


class _PinnedHTTPSConnection(_PinnedHTTPConnection):
    _context = ssl.create_default_context()

    def __init__(self, target: Target, ip: IPAddress, deadline: float,
                 cancelled: Callable[[], bool]) -> None:
        super().__init__(target, ip, deadline, cancelled)
        self.default_port = 443

    def connect(self) -> None:
        # SNI and certificate verification use the hostname, the TCP connection the pinned IP.
        # The handshake is bounded by the socket timeout, set from the deadline.
        self._wrap(self._context.wrap_socket(self._open_socket(), server_hostname=self.host))


def _classify(exc: BaseException) -> _Failure:
    """Map a network exception to a status; resets and timeouts are worth retrying."""
    if isinstance(exc, _Failure):
        return exc
    if isinstance(exc, UrlRejected):
        return _Failure(exc.status, str(exc))
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return _Failure("timeout", f"timed out: {exc}", transient=True)
    if isinstance(exc, ssl.SSLError):
        return _Failure("connection_error", f"TLS error: {exc}")
    if isinstance(exc, ConnectionRefusedError):
        return _Failure("connection_error", f"connection refused: {exc}")
    if isinstance(exc, (ConnectionError, http.client.IncompleteRead, http.client.RemoteDisconnected)):
        return _Failure("connection_error", f"{type(exc).__name__}: {exc}", transient=True)
    if isinstance(exc, (http.client.HTTPException, OSError)):
        return _Failure("connection_error", f"{type(exc).__name__}: {exc}")
    # Anything else is still one URL's problem, not the job's: record it and move on.
    log.warning("unexpected %s while fetching: %s", type(exc).__name__, exc, exc_info=log.isEnabledFor(logging.DEBUG))
    return _Failure("error", f"{type(exc).__name__}: {exc}")


_RESOLVERS = threading.BoundedSemaphore(64)  # lookups in flight, hung ones included


def _resolve_in_time(target: Target, allow: AllowList, deadline: float,
                     cancelled: Callable[[], bool]) -> list[IPAddress]:
    """:func:`resolve` under the attempt's deadline and the stop flag.

    ``getaddrinfo`` takes no timeout and cannot be interrupted (a slow or black-holed DNS
    server holds it for the resolver's own retries, 10-30 s; a stuck NSS module for ever),
    so it runs in a daemon thread that is abandoned when the deadline passes. At most 64
    lookups run at once, so a resolver that never answers cannot pile up threads."""
    if target.ip_literal is not None:
        return resolve(target, allow)
    while not _RESOLVERS.acquire(timeout=min(_remaining(deadline), _POLL)):
        if cancelled():
            raise _Failure("cancelled", "stop requested")
    box: dict[str, object] = {}
    done = threading.Event()

    def lookup() -> None:
        try:
            box["ips"] = resolve(target, allow)
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread
            box["error"] = exc
        finally:
            _RESOLVERS.release()
            done.set()

    threading.Thread(target=lookup, name="resolve", daemon=True).start()
    while not done.wait(timeout=min(max(deadline - time.monotonic(), 0), _POLL)):
        if cancelled():
            raise _Failure("cancelled", "stop requested")
        if time.monotonic() >= deadline:
            raise _Failure("timeout", f"resolving {target.host!r} did not finish within the deadline",
                           transient=True)
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["ips"]  # type: ignore[return-value]


def _open(target: Target, allow: AllowList, deadline: float,
          cancelled: Callable[[], bool]) -> _PinnedHTTPConnection:
    """Connect to the first validated address that answers."""
    cls = _PinnedHTTPSConnection if target.scheme == "https" else _PinnedHTTPConnection
    last: BaseException | None = None
    for ip in _resolve_in_time(target, allow, deadline, cancelled):
        conn = cls(target, ip, deadline, cancelled)
        try:
            conn.connect()
        except OSError as exc:
            last = exc
            conn.release()
            continue
        # Re-check the address the socket is really connected to (defence in depth).
        try:
            peer = conn.raw_sock.getpeername()[0]
            check_address(target, ipaddress.ip_address(peer.split("%")[0]), allow)
        except BaseException:
            conn.release()
            raise
        return conn
    raise last if last else _Failure("connection_error", f"no address for {target.host}")


def _remaining(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise _Failure("timeout", "request deadline exceeded", transient=True)
    return left


def _read_body(conn: _PinnedHTTPConnection, resp: http.client.HTTPResponse, cfg: FetchConfig,
               deadline: float) -> bytes:
    """Stream the body under the byte cap and the deadline."""
    length = resp.getheader("Content-Length")
    if length and length.strip().isdigit() and int(length) > cfg.max_bytes:
        raise _Failure("too_large", f"Content-Length {int(length)} exceeds the cap of {cfg.max_bytes} bytes")
    chunks, total = [], 0
    while True:
        chunk = resp.read1(_CHUNK)  # every recv under the deadline (_DeadlineReader)
        if not chunk:
            break
        total += len(chunk)
        if total > cfg.max_bytes:
            raise _Failure("too_large", f"body exceeds the cap of {cfg.max_bytes} bytes")
        chunks.append(chunk)
    if length and length.strip().isdigit() and total < int(length):
        # The connection dropped early: a network failure worth retrying, not a bad image.
        raise _Failure("connection_error", f"body ended after {total} of {int(length)} bytes "
                       "(Content-Length)", transient=True)
    return b"".join(chunks)


def _retry_after(resp: http.client.HTTPResponse) -> float | None:
    value = (resp.getheader("Retry-After") or "").strip()
    return float(value) if value.isdigit() else None


def _fetch_once(url: str, cfg: FetchConfig, result: FetchResult) -> bytes:
    """One attempt: follow up to ``max_redirects`` redirects, checking every hop."""
    deadline = time.monotonic() + cfg.timeout
    for _hop in range(cfg.max_redirects + 1):
        target = parse_url(url)
        result.final_url = url
        conn = _open(target, cfg.allow, deadline, cfg.cancelled)
        try:
            conn.request("GET", target.path, headers={
                "User-Agent": cfg.user_agent, "Accept": "image/*,*/*;q=0.5",
                "Accept-Encoding": "identity", "Connection": "close"})
            resp = conn.getresponse()
            result.http_code = resp.status
            if resp.status in REDIRECT_CODES and resp.getheader("Location"):
                url = urljoin(url, resp.getheader("Location", "").strip())
                continue
            if resp.status != 200:
                raise _Failure("http_error", f"HTTP {resp.status} {resp.reason}",
                               transient=resp.status in TRANSIENT_CODES, http_code=resp.status,
                               retry_after=_retry_after(resp))
            return _read_body(conn, resp, cfg, deadline)
        finally:
            conn.release()
    raise _Failure("too_many_redirects", f"more than {cfg.max_redirects} redirects (last: {url})")


def fetch(url: str, cfg: FetchConfig) -> FetchResult:
    """GET ``url`` safely; never raises for network or content problems."""
    result = FetchResult(url=url)
    for attempt in range(cfg.retries + 1):
        result.attempts = attempt + 1
        try:
            result.data = _fetch_once(url, cfg, result)
            result.status, result.error = "ok", ""
            return result
        except Exception as exc:  # noqa: BLE001 - every failure becomes a status
            failure = _classify(exc)
        result.status, result.error, result.transient = failure.status, str(failure), failure.transient
        if failure.http_code is not None:
            result.http_code = failure.http_code
        if not failure.transient or attempt == cfg.retries or cfg.cancelled():
            break
        delay = min(cfg.max_backoff, cfg.backoff * 2 ** attempt) * random.uniform(0.75, 1.25)
        if failure.retry_after is not None:
            delay = min(cfg.max_backoff, max(delay, failure.retry_after))
        log.debug("retrying %s in %.2fs after %s", url, delay, failure)
        _sleep(delay, cfg.cancelled)
    if cfg.cancelled():
        result.status, result.error = "cancelled", "stop requested"
    return result


def _sleep(seconds: float, cancelled: Callable[[], bool]) -> None:
    """Back off, but wake for a stop request."""
    end = time.monotonic() + seconds
    while not cancelled() and (left := end - time.monotonic()) > 0:
        time.sleep(min(left, _POLL))
