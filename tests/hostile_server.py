"""A hostile HTTP server on loopback (raw sockets, a thread per connection) for tests and
``bench/hostile.py``: it sends exactly the bytes, at exactly the pace, a test scripts.

Routes (``server.url(path)``); ``interval`` is the pause between pieces (``?interval=S``):

* ``/trickle-status`` — the status line one byte per interval;
* ``/trickle-headers`` — valid status, then the headers one byte per interval;
* ``/many-headers`` — 99 headers, one per interval;
* ``/trickle-chunks`` — chunked body whose chunk-size lines arrive one byte per interval;
* ``/never-ending`` — a chunked body that never ends (a small chunk per interval);
* ``/short-body`` — Content-Length 10000, then half of it and close (``/short-body-once``:
  short on the first hit only);
* ``/bytes/<name>`` — 200 with the payload registered under ``name`` (``server.payloads``).
"""
from __future__ import annotations

import socketserver
import threading
import time
from collections import Counter
from urllib.parse import parse_qs, urlsplit


class _Handler(socketserver.BaseRequestHandler):
    server: _TCPServer

    def _send(self, data: bytes, interval: float = 0.0, piece: int = 0) -> None:
        if not piece:
            self.request.sendall(data)
            return
        for i in range(0, len(data), piece):
            if self.server.stopping.is_set():
                return
            self.request.sendall(data[i:i + piece])
            time.sleep(interval)

    def _read_request(self) -> str:
        data = b""
        while b"\r\n\r\n" not in data and len(data) < 65536:
            chunk = self.request.recv(4096)
            if not chunk:
                break
            data += chunk
        line = data.split(b"\r\n", 1)[0].decode("latin-1")
        return line.split(" ")[1] if line.count(" ") >= 2 else "/"

    def handle(self) -> None:  # noqa: C901 - a route table reads best flat
        try:
            self._route(self._read_request())
        except (BrokenPipeError, ConnectionResetError, OSError):
            pass  # the client gave up: that is the point of most routes

    def _route(self, target: str) -> None:
        parts = urlsplit(target)
        path, query = parts.path, parse_qs(parts.query)
        interval = float(query.get("interval", ["2"])[0])
        self.server.hits[path] += 1
        ok = b"HTTP/1.1 200 OK\r\n"
        if path == "/trickle-status":
            self._send(ok + b"Content-Length: 2\r\n\r\nok", interval, 1)
        elif path == "/trickle-headers":
            self._send(ok)
            self._send(b"Content-Type: image/jpeg\r\nX-Slow: " + b"a" * 200 + b"\r\n\r\n", interval, 1)
        elif path == "/many-headers":
            self._send(ok)
            for i in range(99):
                self._send(f"X-Header-{i}: {i}\r\n".encode())
                time.sleep(interval)
            self._send(b"Content-Length: 2\r\n\r\nok")
        elif path == "/trickle-chunks":
            self._send(ok + b"Transfer-Encoding: chunked\r\n\r\n")
            self._send(b"0000000000000000000000000000000000000000000000000000001\r\n", interval, 1)
        elif path == "/never-ending":
            self._send(ok + b"Transfer-Encoding: chunked\r\n\r\n")
            while not self.server.stopping.is_set():
                self._send(b"10\r\n" + b"x" * 16 + b"\r\n")
                time.sleep(interval)
        elif path in ("/short-body", "/short-body-once"):
            body = self.server.payloads.get("short", b"\xff\xd8\xff" + b"\0" * 9997)
            if path == "/short-body" or self.server.hits[path] == 1:
                self._send(ok + f"Content-Length: {len(body)}\r\n\r\n".encode() + body[:len(body) // 2])
            else:
                self._send(ok + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        elif path.startswith("/bytes/"):
            body = self.server.payloads[path[len("/bytes/"):]]
            self._send(ok + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
        else:
            self._send(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")


class _TCPServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128


class HostileServer:
    """Start with ``with HostileServer() as server:``; ``server.allow`` admits it to the fetcher."""

    def __init__(self) -> None:
        self.tcp = _TCPServer(("127.0.0.1", 0), _Handler)
        self.tcp.hits, self.tcp.payloads, self.tcp.stopping = Counter(), {}, threading.Event()
        self.port = self.tcp.server_address[1]
        self.thread = threading.Thread(target=self.tcp.serve_forever, daemon=True)

    @property
    def allow(self) -> str:
        return f"localhost:{self.port}"

    @property
    def hits(self) -> Counter:
        return self.tcp.hits

    @property
    def payloads(self) -> dict[str, bytes]:
        return self.tcp.payloads

    def url(self, path: str) -> str:
        return f"http://localhost:{self.port}{path}"

    def __enter__(self) -> HostileServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.tcp.stopping.set()
        self.tcp.shutdown()
        self.tcp.server_close()
