"""HTTPS through the pinned connection: the TCP socket goes to the checked address while SNI
and certificate verification use the URL's hostname."""
from __future__ import annotations

import shutil
import ssl
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from headstart.shared.net import fetch as fetch_module
from headstart.shared.net.fetch import FetchConfig, fetch
from headstart.shared.net.urlsafety import AllowList

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl CLI")


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A throwaway CA and two server certificates: one for localhost, one for another name."""
    d = tmp_path_factory.mktemp("pki")
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
             "-days", "2", "-subj", "/CN=headstart test CA", cwd=d)
    for name in ("localhost", "elsewhere.example"):
        (d / f"{name}.ext").write_text(f"subjectAltName=DNS:{name}\n")
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
                 "-subj", f"/CN={name}", cwd=d)
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                 "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext", cwd=d)
    return d


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        body = f"secure {self.headers.get('Host')}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def _serve(pki: Path, cert_name: str):
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pki / f"{cert_name}.pem", pki / f"{cert_name}.key")
    httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd


@pytest.fixture
def trust_test_ca(pki: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fetch_module._PinnedHTTPSConnection, "_context",
                        ssl.create_default_context(cafile=str(pki / "ca.pem")))


def _get(httpd) -> fetch_module.FetchResult:
    port = httpd.server_address[1]
    cfg = FetchConfig(timeout=5, retries=0, allow=AllowList.parse([f"localhost:{port}"]))
    return fetch(f"https://localhost:{port}/img.jpg", cfg)


def test_https_verifies_the_hostname_over_the_pinned_address(pki: Path, trust_test_ca) -> None:
    httpd = _serve(pki, "localhost")
    try:
        result = _get(httpd)
    finally:
        httpd.shutdown()
    assert result.status == "ok", result
    assert result.data.startswith(b"secure localhost")


def test_a_certificate_for_another_name_is_refused(pki: Path, trust_test_ca) -> None:
    httpd = _serve(pki, "elsewhere.example")
    try:
        result = _get(httpd)
    finally:
        httpd.shutdown()
    assert result.status == "connection_error" and "TLS" in result.error, result


def test_an_untrusted_certificate_is_refused(pki: Path) -> None:
    httpd = _serve(pki, "localhost")  # the default context does not trust the test CA
    try:
        result = _get(httpd)
    finally:
        httpd.shutdown()
    assert result.status == "connection_error" and "TLS" in result.error, result
