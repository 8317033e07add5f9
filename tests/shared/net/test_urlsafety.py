"""The SSRF guard: every spelling of a private address is refused, the allow-list is narrow."""
from __future__ import annotations

import ipaddress
import socket

import pytest

from headstart.shared.runtime.errors import UserError
from headstart.shared.net.urlsafety import AllowList, UrlRejected, blocked_reason, parse_ipv4_loose, parse_url, resolve

NONE = AllowList()


@pytest.mark.parametrize("url", [
    "http://127.0.0.1/", "http://127.1/", "http://0x7f000001/", "http://2130706433/",
    "http://0177.0.0.1/", "http://0x7f.0.0.1/", "http://127.0.0.1./", "http://localhost/",
    "http://169.254.169.254/latest/meta-data/", "http://169.254.170.2/v2/credentials",
    "http://0xa9fea9fe/", "http://2852039166/", "http://10.0.0.1/", "http://172.16.5.4/",
    "http://192.168.1.1/", "http://100.64.0.1/", "http://0.0.0.0/", "http://0/",
    "http://224.0.0.1/", "http://240.0.0.1/", "http://255.255.255.255/", "http://198.18.0.1/",
    "http://[::1]/", "http://[::]/", "http://[fe80::1]/", "http://[fc00::1]/", "http://[fd00:ec2::254]/",
    "http://[ff02::1]/", "http://[::ffff:127.0.0.1]/", "http://[::ffff:169.254.169.254]/",
    "http://[::ffff:a9fe:a9fe]/", "http://[64:ff9b::a9fe:a9fe]/", "http://[2002:a9fe:a9fe::1]/",
    "http://[::127.0.0.1]/", "http://[2001:db8::1]/", "http://[2001::1]/",
])
def test_private_loopback_and_metadata_addresses_are_blocked(url: str) -> None:
    with pytest.raises(UrlRejected) as err:
        resolve(parse_url(url), NONE)
    assert err.value.status == "blocked"


@pytest.mark.parametrize("url", ["http://8.8.8.8/", "https://1.1.1.1:8443/x?y=1",
                                 "http://[2606:4700:4700::1111]/", "http://[::ffff:8.8.8.8]/"])
def test_public_addresses_pass(url: str) -> None:
    assert resolve(parse_url(url), NONE)


@pytest.mark.parametrize("url,why", [
    ("ftp://example.com/a.jpg", "scheme"), ("file:///etc/passwd", "scheme"),
    ("gopher://127.0.0.1:70/", "scheme"), ("javascript:alert(1)", "scheme"),
    ("http://user:pass@example.com/a.jpg", "credentials"), ("http://@example.com/", "credentials"),
    ("http:///a.jpg", "no host"), ("http://exa mple.com/", "whitespace"), ("", "empty"),
    ("http://256.0.0.1/", "out of range"), ("http://example.com:99999/", "unparseable"),
])
def test_malformed_or_unsupported_urls_are_bad_url(url: str, why: str) -> None:
    with pytest.raises(UrlRejected, match=why) as err:
        parse_url(url)
    assert err.value.status == "bad_url"


def test_loose_ipv4_spellings_parse_like_inet_aton() -> None:
    for text in ("127.1", "0x7f000001", "2130706433", "0177.0.0.01", "127.0.1"):
        assert parse_ipv4_loose(text) == ipaddress.IPv4Address("127.0.0.1")
    assert parse_ipv4_loose("example.com") is None
    assert parse_ipv4_loose("1.2.3.4.5") is None


def test_embedded_ipv4_in_ipv6_is_judged_by_the_ipv4() -> None:
    assert "link-local" in blocked_reason(ipaddress.ip_address("::ffff:169.254.169.254"))
    assert blocked_reason(ipaddress.ip_address("64:ff9b::808:808")) is None


def test_every_resolved_address_must_be_public(monkeypatch: pytest.MonkeyPatch) -> None:
    def fake(host, port, *args, **kwargs):
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, port)) for ip in ("8.8.8.8", "10.0.0.5")]
    monkeypatch.setattr(socket, "getaddrinfo", fake)
    with pytest.raises(UrlRejected, match="10.0.0.5"):
        resolve(parse_url("http://mixed.example/"), NONE)


def test_unresolvable_host_is_a_connection_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args, **kwargs):
        raise socket.gaierror(-2, "Name or service not known")
    monkeypatch.setattr(socket, "getaddrinfo", fail)
    with pytest.raises(UrlRejected) as err:
        resolve(parse_url("http://nowhere.invalid/"), NONE)
    assert err.value.status == "connection_error"


def test_allow_list_admits_exactly_one_loopback_endpoint() -> None:
    allow = AllowList.parse(["localhost:8123"])
    assert resolve(parse_url("http://localhost:8123/a.jpg"), allow)
    for other in ("http://localhost:8124/", "http://127.0.0.1:8123/", "http://127.1:8123/",
                  "http://0x7f000001:8123/", "http://169.254.169.254/", "http://10.0.0.1:8123/"):
        with pytest.raises(UrlRejected):
            resolve(parse_url(other), allow)


def test_allow_list_refuses_non_loopback_entries() -> None:
    for bad in ("169.254.169.254:80", "10.0.0.1:80", "example.com:80", "localhost", "localhost:0"):
        with pytest.raises(UserError):
            AllowList.parse([bad])


def test_enabling_loopback_is_logged_loudly(caplog: pytest.LogCaptureFixture) -> None:
    AllowList.parse(["127.0.0.1:9000"])
    assert any(r.levelname == "WARNING" and "SECURITY" in r.getMessage() for r in caplog.records)


def test_non_ascii_hosts_and_paths_go_on_the_wire_as_ascii() -> None:
    target = parse_url("http://bücher.example/übild.jpg?q=ä&x=%20")
    assert (target.host, target.path) == ("xn--bcher-kva.example", "/%C3%BCbild.jpg?q=%C3%A4&x=%20")
