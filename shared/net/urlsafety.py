"""SSRF guard for fetching user-supplied URLs from inside a cloud account.

A URL is fetched only when every hop (the first request and each redirect) passes:

* the scheme is ``http`` or ``https`` and the URL carries no ``user:pass@`` part;
* the host resolves (IP literals in any spelling, ``0x7f000001``, ``2130706433``, ``127.1``,
  are parsed as addresses, never passed to DNS) and **every** resolved address is public —
  not loopback, private, link-local (``169.254.0.0/16`` holds the instance-metadata and
  ECS-credentials endpoints), CGNAT, multicast, reserved, unspecified, documentation, nor an
  IPv6 form embedding such an IPv4 address (IPv4-mapped, NAT64, 6to4, Teredo).

The validated address is then *pinned*: the client connects to exactly that IP (see
:mod:`headstart.shared.net.fetch`) instead of resolving the name again, so DNS rebinding cannot swap in a
private address between the check and the connection.

Loopback endpoints can be allowed for tests and local demos through a narrow
:class:`AllowList` of ``host:port`` pairs, matched on the host exactly as written in the URL.
"""
from __future__ import annotations

import ipaddress
import logging
import socket
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

from headstart.shared.runtime.errors import UserError

log = logging.getLogger(__name__)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# (network, why it is refused). Checked in order, so the most telling reason is reported.
_BLOCKED: list[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str]] = [
    (ipaddress.ip_network(net), why) for net, why in [
        ("169.254.0.0/16", "link-local (cloud metadata/credentials endpoints)"),
        ("127.0.0.0/8", "loopback"),
        ("0.0.0.0/8", "unspecified/'this network'"),
        ("10.0.0.0/8", "private"),
        ("172.16.0.0/12", "private"),
        ("192.168.0.0/16", "private"),
        ("100.64.0.0/10", "CGNAT shared address space"),
        ("192.0.0.0/24", "IETF protocol assignments"),
        ("192.0.2.0/24", "documentation"),
        ("198.51.100.0/24", "documentation"),
        ("203.0.113.0/24", "documentation"),
        ("192.88.99.0/24", "6to4 relay anycast"),
        ("198.18.0.0/15", "benchmarking"),
        ("224.0.0.0/4", "multicast"),
        ("240.0.0.0/4", "reserved"),
        ("::/128", "unspecified"),
        ("::1/128", "loopback"),
        ("fe80::/10", "link-local"),
        ("fec0::/10", "site-local"),
        ("fc00::/7", "unique-local (private; holds fd00:ec2::254)"),
        ("ff00::/8", "multicast"),
        ("100::/64", "discard-only"),
        ("2001:db8::/32", "documentation"),
        ("2001::/23", "IETF protocol assignments (incl. Teredo)"),
        ("64:ff9b:1::/48", "local-use NAT64"),
    ]
]
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_V4_COMPAT = ipaddress.ip_network("::/96")


class UrlRejected(ValueError):
    """A URL failed a check; ``status`` is ``bad_url`` or ``blocked``."""

    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Target:
    """A URL that passed the syntax checks, split into what the client needs."""

    url: str
    scheme: str
    host: str  # lower-case, without brackets; an IP literal is in canonical form
    port: int
    path: str  # path + query, never empty
    ip_literal: IPAddress | None


def _parse_ipv4_part(part: str) -> int | None:
    """One dotted component in inet_aton syntax: decimal, ``0x`` hex or ``0``-leading octal."""
    try:
        if part.lower().startswith("0x"):
            return int(part[2:] or "0", 16)
        if len(part) > 1 and part.startswith("0"):
            return int(part[1:], 8)
        return int(part, 10) if part.isdigit() else None
    except ValueError:
        return None


def parse_ipv4_loose(host: str) -> ipaddress.IPv4Address | None:
    """Parse every IPv4 spelling that resolvers and browsers accept (``127.1``,
    ``0x7f000001``, ``2130706433``, ``0177.0.0.1``); None when ``host`` is not numeric."""
    parts = host.split(".")
    if parts and parts[-1] == "":
        parts = parts[:-1]  # a trailing dot is still the same address
    if not 1 <= len(parts) <= 4:
        return None
    parsed = [_parse_ipv4_part(p) for p in parts]
    values = [v for v in parsed if v is not None]
    if len(values) != len(parsed):
        return None
    *head, last = values
    if any(v > 255 for v in head) or last >= 256 ** (4 - len(head)):
        raise UrlRejected("bad_url", f"numeric host {host!r} is out of range for an IPv4 address")
    number = 0
    for v in head:
        number = number * 256 + v
    number = number * 256 ** (4 - len(head)) + last
    return ipaddress.IPv4Address(number)


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address tunnels to, when it has one."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in _NAT64 or (ip in _V4_COMPAT and int(ip) > 1):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def blocked_reason(ip: IPAddress) -> str | None:
    """Why ``ip`` must not be contacted, or None when it is a public unicast address."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id:
            return "IPv6 address with a zone id"
        inner = _embedded_ipv4(ip)
        if inner is not None:
            why = blocked_reason(inner)
            return f"embeds {inner}: {why}" if why else None
    for net, why in _BLOCKED:
        if ip.version == net.version and ip in net:
            return why
    if not ip.is_global:  # catch-all for registry entries the table does not name
        return "not globally routable"
    return None


def parse_url(url: str) -> Target:
    """Check a URL's syntax (scheme, userinfo, host, port); raise :class:`UrlRejected`."""
    if not isinstance(url, str) or not url.strip():
        raise UrlRejected("bad_url", "empty URL")
    url = url.strip()
    if any(ord(c) < 33 or ord(c) == 127 for c in url):
        raise UrlRejected("bad_url", "URL contains whitespace or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
        host = parts.hostname
    except ValueError as exc:
        raise UrlRejected("bad_url", f"unparseable URL: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise UrlRejected("bad_url", f"scheme {parts.scheme or '(none)'!r} is not http or https")
    if "@" in parts.netloc:
        raise UrlRejected("bad_url", "URLs with credentials (user:pass@host) are refused")
    if not host:
        raise UrlRejected("bad_url", "URL has no host")
    host = host.rstrip(".")  # "localhost." is "localhost"
    literal = _ip_literal(host)
    if literal is not None:
        host = str(literal)
    else:
        try:  # international names go on the wire (DNS, Host, SNI) as ASCII
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            raise UrlRejected("bad_url", f"host {host!r} is not a valid domain name") from None
    # Keep existing %-escapes, escape the rest (search results hold raw non-ASCII paths).
    path = quote(parts.path or "/", safe="/%:@!$&'()*+,;=~-._")
    if parts.query:
        path = f"{path}?{quote(parts.query, safe='/%:@!$&()*+,;=?~-._')}"
    return Target(url, scheme, host, port or (443 if scheme == "https" else 80), path, literal)


def _ip_literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    return parse_ipv4_loose(host)


@dataclass(frozen=True)
class AllowList:
    """Loopback ``host:port`` endpoints that may be contacted despite the guard.

    For tests and local demos only. Matching is on the host exactly as written in the URL
    and the port, *and* the connected address must be loopback: allowing ``localhost:8000``
    does not allow ``127.0.0.1:8000``, ``localhost:8001`` or any non-loopback address.
    """

    endpoints: frozenset[tuple[str, int]] = frozenset()

    @classmethod
    def parse(cls, items: list[str] | None) -> AllowList:
        """Build from ``["localhost:8000", "127.0.0.1:9000", "[::1]:80"]``."""
        endpoints = set()
        for item in items or []:
            host, sep, port = item.strip().rpartition(":")
            host = host.strip("[]").lower()
            if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise UserError(f"allowed loopback endpoint must be HOST:PORT. Received: {item!r}")
            literal = _ip_literal(host)
            if host != "localhost" and (literal is None or not literal.is_loopback):
                raise UserError("only loopback endpoints (localhost, 127.x.x.x, ::1) can be allowed. "
                                f"Received: {item!r}")
            endpoints.add((str(literal) if literal else host, int(port)))
        if endpoints:
            log.warning("SECURITY: loopback fetching is ENABLED for %s. For tests and local demos only; "
                        "never use this in a cloud account.", sorted(endpoints))
        return cls(frozenset(endpoints))

    def allows(self, target: Target, ip: IPAddress) -> bool:
        """Whether ``target`` connected at ``ip`` is an allowed loopback endpoint."""
        return ip.is_loopback and (target.host, target.port) in self.endpoints


def check_address(target: Target, ip: IPAddress, allow: AllowList) -> None:
    """Raise ``UrlRejected('blocked', ...)`` unless ``ip`` may be contacted for ``target``."""
    why = blocked_reason(ip)
    if why and not allow.allows(target, ip):
        raise UrlRejected("blocked", f"{target.host}:{target.port} -> {ip} is {why}; refused")


def resolve(target: Target, allow: AllowList) -> list[IPAddress]:
    """Resolve ``target`` and validate every address; return them in resolver order.

    One bad record refuses the lot: a name that resolves to both a public and a private
    address is an attack or a misconfiguration either way.
    """
    if target.ip_literal is not None:
        addresses: list[IPAddress] = [target.ip_literal]
    else:
        try:
            infos = socket.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as exc:
            raise UrlRejected("connection_error", f"cannot resolve {target.host!r}: {exc}") from None
        addresses = []
        for info in infos:
            ip = ipaddress.ip_address(info[4][0])
            if ip not in addresses:
                addresses.append(ip)
    for ip in addresses:
        check_address(target, ip, allow)
    return addresses
