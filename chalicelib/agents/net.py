"""Outbound HTTP for agents, guarded against server-side request forgery.

An agent's URL is chosen by a tenant, so the request must not reach what the
scheduler can reach and the tenant may not: the cloud's metadata service
(169.254.169.254), the Lambda runtime API on loopback, private networks, or,
locally, the emulator that holds every tenant's data.

How a request is made (:meth:`GuardedHttp.request`, or :func:`open_checked`):

1. The host name is resolved once (the resolver is a seam; the default asks the
   system). An IP literal in the URL is used as it is.
2. **Every** resolved address is checked against :class:`NetPolicy`; one refused
   address refuses the request (a name must not mix public and internal answers).
3. The connection goes to a checked address itself: there is no second lookup,
   so a name that answers differently the next time (DNS rebinding) cannot slip
   past the check. ``Host`` carries the name from the URL and, for https, so do
   SNI and certificate verification.
4. Redirects are never followed: a 3xx answer is handed back as it is, so a
   redirect cannot lead to an address that was not checked.
5. At most ``max_body`` bytes of the answer are read; the rest is dropped and the
   answer is marked ``truncated``.

The rules (:meth:`NetPolicy.check`): loopback, link-local, private, shared
(carrier-grade NAT), multicast, unspecified and reserved ranges, IPv4 and IPv6,
are refused, and so are IPv6 forms that carry an IPv4 address (IPv4-mapped,
NAT64, 6to4) when the IPv4 address is refused; an operator can allow ranges
(``SCHEDULER_HTTP_ALLOW_CIDRS``). On the local system loopback is allowed too
(people test webhooks on their laptop), but never the system's own ports
(REST API, WebSocket gateway, AWS emulator).
"""
from __future__ import annotations

import ipaddress
import socket
import ssl
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping
from urllib.parse import urlsplit

import urllib3
from urllib3 import exceptions as u3

from chalicelib.errors import SchedulerError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], "list[str]"]
"""``resolver(host, port)`` -> the host's addresses as text, in the order to try them."""

DEFAULT_PORTS = {"http": 80, "https": 443}

# (range, what it is). The first range that holds an address names the rule.
_V4_RULES: tuple[tuple[str, str], ...] = (
    ("0.0.0.0/8", "unspecified range"),  # "this network"; 0.0.0.0 reaches the local host
    ("10.0.0.0/8", "private range"),
    ("100.64.0.0/10", "shared (carrier-grade NAT) range"),
    ("127.0.0.0/8", "loopback range"),
    ("169.254.0.0/16", "link-local range"),  # 169.254.169.254: instance metadata
    ("172.16.0.0/12", "private range"),
    ("192.0.0.0/24", "reserved range"),  # IETF protocol assignments
    ("192.0.2.0/24", "reserved range"),  # documentation
    ("192.88.99.0/24", "reserved range"),  # 6to4 relay anycast
    ("192.168.0.0/16", "private range"),
    ("198.18.0.0/15", "reserved range"),  # benchmarking
    ("198.51.100.0/24", "reserved range"),  # documentation
    ("203.0.113.0/24", "reserved range"),  # documentation
    ("224.0.0.0/4", "multicast range"),
    ("240.0.0.0/4", "reserved range"),  # includes the broadcast address
)
_V6_RULES: tuple[tuple[str, str], ...] = (
    ("::/128", "unspecified address"),
    ("::1/128", "loopback address"),
    ("::/96", "reserved range"),  # IPv4-compatible (deprecated)
    ("::ffff:0:0:0/96", "reserved range"),  # IPv4-translated
    ("64:ff9b:1::/48", "reserved range"),  # local-use NAT64
    ("100::/64", "reserved range"),  # discard-only
    ("2001:db8::/32", "reserved range"),  # documentation
    ("2001::/23", "reserved range"),  # IETF protocol assignments (Teredo, ...)
    ("3fff::/20", "reserved range"),  # documentation
    ("fc00::/7", "private range"),  # unique local (AWS metadata: fd00:ec2::254)
    ("fe80::/10", "link-local range"),
    ("fec0::/10", "reserved range"),  # site-local (deprecated)
    ("ff00::/8", "multicast range"),
)
_GLOBAL_UNICAST_V6 = ipaddress.ip_network("2000::/3")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_LOOPBACK_RULES = frozenset({"loopback range", "loopback address"})

_RULES: tuple[tuple[IPNetwork, str], ...] = tuple(
    (ipaddress.ip_network(net), rule) for net, rule in _V4_RULES + _V6_RULES
)


class TargetRefused(SchedulerError):
    """The request would reach an address this policy refuses. Never worth a retry."""

    code = "TARGET_REFUSED"

    def __init__(self, address: str, rule: str) -> None:
        super().__init__(f"refused {address}: {rule}")
        self.address = address
        self.rule = rule


class BadUrl(SchedulerError):
    code = "BAD_URL"


def refusal(address: IPAddress) -> tuple[str, IPNetwork] | None:
    """The rule and range that refuse ``address`` by default, or None (a public address).

    IPv6 forms that carry an IPv4 address (IPv4-mapped ``::ffff:a.b.c.d``, NAT64
    ``64:ff9b::/96``, 6to4 ``2002::/16``) are judged by that IPv4 address.
    """
    embedded = _embedded_v4(address)
    if embedded is not None:
        return refusal(embedded)
    for network, rule in _RULES:
        if address.version == network.version and address in network:
            return rule, network
    if address.version == 6 and address not in _GLOBAL_UNICAST_V6:
        return "reserved range, outside global unicast", _GLOBAL_UNICAST_V6
    return None


def _embedded_v4(address: IPAddress) -> ipaddress.IPv4Address | None:
    if address.version != 6:
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def _parse_ip(text: str) -> IPAddress:
    return ipaddress.ip_address(text.split("%", 1)[0])  # drop an IPv6 zone ("fe80::1%eth0")


@dataclass(frozen=True)
class NetPolicy:
    """What an agent's request may reach.

    ``allow_loopback``: loopback is allowed (the local system). ``allow_cidrs``:
    ranges allowed although a rule refuses them. ``reserved_ports``: ``(port,
    what)`` pairs never reachable on an address that only an exception (loopback
    or ``allow_cidrs``) lets through: the system's own servers.
    """

    allow_loopback: bool = False
    allow_cidrs: tuple[str, ...] = ()
    reserved_ports: tuple[tuple[int, str], ...] = ()
    _allowed: tuple[IPNetwork, ...] = field(default=(), init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        nets = tuple(ipaddress.ip_network(c, strict=False) for c in self.allow_cidrs)
        object.__setattr__(self, "_allowed", nets)

    @classmethod
    def from_settings(cls, settings: Any) -> "NetPolicy":
        """Locally: loopback allowed except the system's own ports. In AWS: neither."""
        from chalicelib import settings as names

        if settings.environment != "local":
            return cls(allow_cidrs=tuple(settings.http_allow_cidrs))
        ports: list[tuple[int, str]] = [
            (settings.api_port, f"the scheduler's REST API port ({names.API_PORT})"),
            (settings.ws_port, f"the scheduler's WebSocket port ({names.WS_PORT})"),
        ]
        for url, what in (
            (settings.aws_endpoint_url, f"the local AWS emulator's port ({names.AWS_ENDPOINT_URL})"),
            (settings.ws_endpoint, f"the scheduler's WebSocket port ({names.WS_ENDPOINT})"),
        ):
            port = _port_of(url)
            if port is not None and all(port != p for p, _ in ports):
                ports.append((port, what))
        return cls(
            allow_loopback=True,
            allow_cidrs=tuple(settings.http_allow_cidrs),
            reserved_ports=tuple(ports),
        )

    def check(self, address: str, port: int) -> None:
        """Raise :class:`TargetRefused` unless ``address:port`` may be reached."""
        try:
            ip = _parse_ip(address)
        except ValueError:
            raise TargetRefused(address, "not an IP address") from None
        shown = _show(ip)
        found = refusal(ip)
        if found is not None:
            rule, network = found
            if not (self._is_allowed(ip) or (self.allow_loopback and rule in _LOOPBACK_RULES)):
                raise TargetRefused(shown, f"{rule} {network}")
            for reserved, what in self.reserved_ports:
                if port == reserved:
                    raise TargetRefused(_host_port(ip, port), what)

    def _is_allowed(self, ip: IPAddress) -> bool:
        candidates = [ip]
        embedded = _embedded_v4(ip)
        if embedded is not None:
            candidates.append(embedded)
        return any(c.version == n.version and c in n for c in candidates for n in self._allowed)


def _show(ip: IPAddress) -> str:
    embedded = _embedded_v4(ip)
    return f"{ip} (carries IPv4 {embedded})" if embedded is not None else str(ip)


def _host_port(ip: IPAddress, port: int) -> str:
    return f"[{ip}]:{port}" if ip.version == 6 else f"{ip}:{port}"


def _port_of(url: str | None) -> int | None:
    if not url:
        return None
    try:
        parts = urlsplit(url)
        return parts.port or DEFAULT_PORTS.get(parts.scheme.lower())
    except ValueError:
        return None


def system_resolver(host: str, port: int) -> list[str]:
    """The system's answer for ``host`` (IPv4 and IPv6), duplicates dropped, order kept."""
    out: list[str] = []
    for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM):
        address = str(info[4][0])
        if address not in out:
            out.append(address)
    return out


@dataclass(frozen=True)
class Response:
    status: int
    headers: Mapping[str, str]  # case-insensitive
    body: bytes  # at most max_body bytes
    truncated: bool  # the answer was longer than max_body
    address: str  # the address that answered


class GuardedHttp:
    """One HTTP request at a time to a checked address; see the module's docstring.

    Errors: :class:`TargetRefused` (permanent), :class:`BadUrl`, and urllib3's own
    (``ReadTimeoutError``; ``NewConnectionError``/``ConnectTimeoutError`` once every
    address failed to connect; other ``HTTPError``) or ``OSError`` (the lookup).
    """

    def __init__(
        self,
        policy: NetPolicy,
        resolver: Resolver | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.policy = policy
        self.resolver = resolver or system_resolver
        self.ssl_context = ssl_context

    def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        body: bytes | None = None,
        timeout: urllib3.Timeout | float = 30.0,
        max_body: int = 64 * 1024,
    ) -> Response:
        scheme, host, port, target = _split(url)
        addresses = self._addresses(host, port)
        for address in addresses:
            self.policy.check(address, port)

        sent = {k: v for k, v in (headers or {}).items() if k.lower() != "host"}
        host_header = f"[{host}]" if ":" in host else host
        if port != DEFAULT_PORTS[scheme]:
            host_header = f"{host_header}:{port}"
        sent["Host"] = host_header

        last: Exception | None = None
        for address in addresses:
            pool = self._pool(scheme, address, port, host, timeout)
            try:
                try:
                    response = pool.urlopen(
                        method, target, body=body, headers=sent, retries=False, redirect=False,
                        assert_same_host=False, preload_content=False, release_conn=False,
                    )
                except (u3.NewConnectionError, u3.ConnectTimeoutError) as exc:
                    last = exc  # nothing was sent: the next address may answer
                    continue
                try:
                    raw = b"" if method.upper() == "HEAD" else response.read(max_body + 1)
                finally:
                    response.close()  # never reused: a half-read connection is dropped
                return Response(
                    status=response.status,
                    headers=response.headers,
                    body=raw[:max_body],
                    truncated=len(raw) > max_body,
                    address=address,
                )
            finally:
                pool.close()
        assert last is not None
        raise last

    def _addresses(self, host: str, port: int) -> list[str]:
        try:
            return [str(_parse_ip(host))]
        except ValueError:
            pass
        addresses = list(self.resolver(host, port))
        if not addresses:
            raise OSError(f"{host} has no address")
        return addresses

    def _pool(
        self, scheme: str, address: str, port: int, host: str, timeout: urllib3.Timeout | float
    ) -> urllib3.HTTPConnectionPool:
        if scheme == "https":
            return urllib3.HTTPSConnectionPool(
                address, port, timeout=timeout, maxsize=1, retries=False,
                server_hostname=host, ssl_context=self.ssl_context,
            )
        return urllib3.HTTPConnectionPool(address, port, timeout=timeout, maxsize=1, retries=False)


def open_checked(
    url: str,
    method: str = "GET",
    headers: Mapping[str, str] | None = None,
    body: bytes | None = None,
    timeout: urllib3.Timeout | float = 30.0,
    max_body: int = 64 * 1024,
    *,
    policy: NetPolicy,
    resolver: Resolver | None = None,
) -> Response:
    """One guarded request: ``GuardedHttp(policy, resolver).request(...)``."""
    return GuardedHttp(policy, resolver).request(
        method, url, headers=headers, body=body, timeout=timeout, max_body=max_body
    )


def _split(url: str) -> tuple[str, str, int, str]:
    """(scheme, host, port, request target) of an http(s) URL; user-info is dropped."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise BadUrl(f"not a valid URL ({exc})") from None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise BadUrl("only http:// and https:// URLs are allowed")
    host = parts.hostname
    if not host:
        raise BadUrl("the URL has no host")
    try:
        host = host.encode("idna").decode("ascii") if not host.isascii() else host
    except UnicodeError:
        raise BadUrl(f"bad host name {host!r}") from None
    target = parts.path or "/"
    if parts.query:
        target = f"{target}?{parts.query}"
    return scheme, host, port or DEFAULT_PORTS[scheme], target

