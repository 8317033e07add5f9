"""The HTTP client: retries, redirects checked per hop, caps, deadlines and address pinning."""
from __future__ import annotations

import socket
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

from headstart.shared.net import fetch as fetch_module
from headstart.shared.net.fetch import FetchConfig, fetch
from headstart.shared.net.urlsafety import AllowList


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass

    def _send(self, code: int, body: bytes = b"", headers: dict | None = None) -> None:
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        self.server.hits[url.path] += 1
        self.server.agents.append(self.headers.get("User-Agent"))
        n = self.server.hits[url.path]
        if url.path == "/ok":
            return self._send(200, b"hello")
        if url.path == "/flaky":
            return self._send(503 if n <= 2 else 200, b"x")
        if url.path == "/missing":
            return self._send(404)
        if url.path == "/redirect":
            return self._send(302, headers={"Location": parse_qs(url.query)["to"][0]})
        if url.path == "/trickle":
            self.send_response(200)
            self.send_header("Content-Length", "50")
            self.end_headers()
            for _ in range(50):
                self.wfile.write(b"x")
                self.wfile.flush()
                time.sleep(0.05)
            return
        if url.path == "/big":
            self.send_response(200)
            self.end_headers()  # no Content-Length: the cap must hold while streaming
            self.wfile.write(b"y" * 100_000)
            self.close_connection = True
            return
        self._send(404)


@pytest.fixture(scope="module")
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    httpd.hits, httpd.agents = Counter(), []
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def _cfg(server, **kw) -> FetchConfig:
    base = dict(timeout=2.0, retries=2, backoff=0.01, allow=AllowList.parse([f"localhost:{server.server_port}"]))
    return FetchConfig(**{**base, **kw})


def _url(server, path: str) -> str:
    return f"http://localhost:{server.server_port}{path}"


def test_ok_sends_an_honest_user_agent(server) -> None:
    result = fetch(_url(server, "/ok"), _cfg(server))
    assert (result.status, result.data, result.http_code, result.attempts) == ("ok", b"hello", 200, 1)
    assert server.agents[-1].startswith("headstart-scraper/")


def test_transient_errors_are_retried_and_permanent_ones_are_not(server) -> None:
    assert fetch(_url(server, "/flaky"), _cfg(server)).attempts == 3
    missing = fetch(_url(server, "/missing"), _cfg(server))
    assert (missing.status, missing.http_code, missing.attempts) == ("http_error", 404, 1)
    server.hits.clear()
    gave_up = fetch(_url(server, "/flaky"), _cfg(server, retries=1))
    assert (gave_up.status, gave_up.http_code, gave_up.attempts) == ("http_error", 503, 2)


def test_loopback_is_refused_without_the_allow_list(server) -> None:
    before = server.hits["/ok"]
    result = fetch(_url(server, "/ok"), FetchConfig(timeout=1))
    assert result.status == "blocked" and server.hits["/ok"] == before


@pytest.mark.parametrize("target", [
    "http://127.0.0.1:{port}/ok", "http://localhost:1/ok", "http://169.254.169.254/latest/meta-data/",
    "http://[::ffff:127.0.0.1]:{port}/ok", "http://0x7f000001:{port}/ok",
])
def test_redirect_hops_are_checked_even_when_the_server_is_allowed(server, target: str) -> None:
    before = server.hits["/ok"]
    result = fetch(_url(server, "/redirect?to=" + target.format(port=server.server_port)), _cfg(server))
    assert result.status == "blocked", result
    assert server.hits["/ok"] == before


def test_redirects_within_the_allowed_endpoint_are_followed_and_bounded(server) -> None:
    ok = fetch(_url(server, "/redirect?to=/ok"), _cfg(server))
    assert ok.status == "ok" and ok.final_url.endswith("/ok")
    loop = fetch(_url(server, "/redirect?to=/redirect?to=/ok"), _cfg(server, max_redirects=1))
    assert loop.status == "too_many_redirects"


def test_a_trickling_body_hits_the_deadline(server) -> None:
    start = time.monotonic()
    result = fetch(_url(server, "/trickle"), _cfg(server, timeout=0.5, retries=0))
    assert result.status == "timeout"
    assert time.monotonic() - start < 1.5


def test_bodies_over_the_cap_are_refused_while_streaming(server) -> None:
    result = fetch(_url(server, "/big"), _cfg(server, max_bytes=10_000))
    assert result.status == "too_large" and result.data is None


def test_the_connection_is_pinned_to_the_validated_address(monkeypatch: pytest.MonkeyPatch) -> None:
    """DNS rebinding: the first answer is public, later ones private. The client must
    connect to the address it validated and never ask DNS again."""
    answers = iter(["93.184.216.34", "127.0.0.1", "127.0.0.1"])
    lookups, connects = [], []

    def fake_getaddrinfo(host, port, *args, **kwargs):
        lookups.append(host)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (next(answers), port))]

    def fake_connect(address, timeout=None, *args):
        connects.append(address)
        raise ConnectionRefusedError("test: no network")

    monkeypatch.setattr(socket, "getaddrinfo", fake_getaddrinfo)
    monkeypatch.setattr(fetch_module.socket, "create_connection", fake_connect)
    result = fetch("http://rebind.example/a.jpg", FetchConfig(timeout=1, retries=0))
    assert result.status == "connection_error"
    assert lookups == ["rebind.example"] and connects == [("93.184.216.34", 80)]


def test_bad_urls_fail_without_retries() -> None:
    result = fetch("ftp://example.com/x.jpg", FetchConfig(retries=3))
    assert (result.status, result.attempts) == ("bad_url", 1)
