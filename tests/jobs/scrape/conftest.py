"""A loopback HTTP server (stdlib, port 0, in a thread) serving generated images and bad cases.

``image_server.url(path)`` builds URLs; ``image_server.allow`` is the ``--allow-loopback``
value admitting exactly this server (``localhost:PORT``). Routes:

* ``/img/<name>.jpg|png`` — a generated image, different per name (``?size=WxH&delay=S``);
* ``/status/<code>`` — that status with no image;
* ``/flaky/<name>`` — 500 twice, then the image (``/flaky429/<name>``: 429 once);
* ``/slow`` — headers and a few bytes, then silence; ``/trickle`` — a byte every 0.1 s;
* ``/reset`` — the connection is reset (RST) before any response;
* ``/html`` — HTML served as ``image/jpeg``; ``/truncated.jpg`` — a cut-off JPEG;
* ``/huge.png`` — a PNG header declaring 30000x30000 pixels; ``/tiny.png`` — 4x4 pixels;
* ``/big`` — a 3 MB body with Content-Length, ``/big-nolength`` — the same without it;
* ``/loop`` — redirects to itself; ``/redirect?to=URL`` — redirects to URL;
* ``/same/<name>`` — always the same bytes (duplicates).
"""
from __future__ import annotations

import io
import socket
import struct
import threading
import time
import zlib
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest
from PIL import Image


def make_image(name: str, size: tuple[int, int] = (64, 48), fmt: str = "JPEG") -> bytes:
    """A small image whose pixels depend on ``name`` (distinct names, distinct bytes)."""
    seed = zlib.crc32(name.encode())
    img = Image.new("RGB", size, ((seed >> 16) & 255, (seed >> 8) & 255, seed & 255))
    img.putpixel((seed % size[0], 0), (255 - (seed & 255), 0, 0))
    buf = io.BytesIO()
    img.save(buf, format=fmt, quality=90)
    return buf.getvalue()


def huge_png(width: int = 30000, height: int = 30000) -> bytes:
    """A valid PNG header declaring a huge image (the pixel data is never reached)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, *args) -> None:  # keep test output quiet
        pass

    def _send(self, code: int, body: bytes = b"", ctype: str = "image/jpeg", headers=None,
              length: bool = True) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        if length:
            self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
        self.close_connection = True

    def do_GET(self) -> None:  # noqa: C901 - a route table reads best flat
        parts = urlsplit(self.path)
        path, query = parts.path, parse_qs(parts.query)
        self.server.hits[path] += 1
        hits = self.server.hits[path]
        name = path.rsplit("/", 1)[-1]
        if path.startswith("/img/"):
            time.sleep(float(query.get("delay", ["0"])[0]))
            w, h = map(int, query.get("size", ["64x48"])[0].split("x"))
            fmt = "PNG" if name.endswith(".png") else "JPEG"
            return self._send(200, make_image(name, (w, h), fmt), ctype="application/octet-stream")
        if path.startswith("/status/"):
            return self._send(int(name), b"nope", ctype="text/plain")
        if path.startswith("/flaky/"):
            return self._send(500, b"busy") if hits <= 2 else self._send(200, make_image(name))
        if path.startswith("/flaky429/"):
            if hits <= 1:
                return self._send(429, b"slow down", headers={"Retry-After": "0"})
            return self._send(200, make_image(name))
        if path.startswith("/same/"):
            return self._send(200, make_image("the-same-image"))
        if path == "/slow":
            self.send_response(200)
            self.send_header("Content-Length", "100000")
            self.end_headers()
            self.wfile.write(b"\xff\xd8\xff")
            self.wfile.flush()
            time.sleep(3)
            return
        if path == "/trickle":
            self.send_response(200)
            self.send_header("Content-Length", "100")
            self.end_headers()
            for _ in range(40):
                self.wfile.write(b"x")
                self.wfile.flush()
                time.sleep(0.1)
            return
        if path == "/reset":
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
            self.close_connection = True
            return
        if path == "/html":
            return self._send(200, b"<html><body>not an image</body></html>")
        if path == "/truncated.jpg":
            data = make_image("trunc", (256, 256))
            return self._send(200, data[: len(data) // 2])
        if path == "/huge.png":
            return self._send(200, huge_png(), ctype="image/png")
        if path == "/tiny.png":
            return self._send(200, make_image("tiny", (4, 4), "PNG"), ctype="image/png")
        if path == "/big":
            return self._send(200, b"\xff\xd8\xff" + b"\0" * 3_000_000)
        if path == "/big-nolength":
            return self._send(200, b"\xff\xd8\xff" + b"\0" * 3_000_000, length=False)
        if path == "/loop":
            return self._send(302, headers={"Location": "/loop"})
        if path == "/redirect":
            return self._send(302, headers={"Location": query["to"][0]})
        self._send(404, b"not found", ctype="text/plain")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.hits: Counter = Counter()


class ImageServer:
    def __init__(self) -> None:
        self.httpd = _Server()
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def allow(self) -> str:
        return f"localhost:{self.port}"

    def url(self, path: str) -> str:
        return f"http://localhost:{self.port}{path}"


@pytest.fixture(scope="module")
def _server_module():
    server = ImageServer()
    server.thread.start()
    yield server
    server.httpd.shutdown()
    server.httpd.server_close()


@pytest.fixture
def image_server(_server_module: ImageServer) -> ImageServer:
    """The module's server with its hit counters reset."""
    _server_module.httpd.hits.clear()
    return _server_module
