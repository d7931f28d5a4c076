"""Webhook calls that cannot reach inside: which destinations are allowed, and an HTTP
client that connects only to the address it checked.

A partner chooses its webhook URL, so the hub must not become its way into the
council's network (the cloud metadata service, the broker, other services, the
database) nor a port scanner of it. A destination is allowed when every address
its host resolves to is public, or is in the operator's allow-list
(`EARLYHELP_NOTIFICATIONS_WEBHOOK_ALLOWED_NETWORKS`), the only way to reach a
private address (the tests' local receivers, partners on a council network).

The check runs when a subscription is made (a 422 naming `delivery.url`) and again
on every connection: the client resolves the host once, checks every address, and
connects to a checked one itself, keeping the host name for TLS (SNI, certificate)
and the Host header. There is no second lookup to answer differently (DNS
rebinding), no proxy from the environment, and redirects are not followed.

What a partner is told of a failure is its class (`timed out`, `connection refused`,
`TLS handshake failed`, `forbidden address`...), never the error's own text.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
from collections.abc import Callable, Iterable, Sequence
from typing import Any
from urllib.parse import urlsplit

import httpcore
import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], Sequence[str]]

# Names that only mean something inside a network: never resolved for a partner.
_INTERNAL_SUFFIXES = (
    ".localhost",
    ".local",
    ".internal",
    ".intranet",
    ".corp",
    ".home.arpa",
    ".lan",
    ".svc",
    ".cluster.local",
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class ForbiddenDestination(Exception):
    """A webhook host that is, or resolves to, an address the hub must not call."""


def parse_networks(text: str) -> tuple[IPNetwork, ...]:
    """The allow-list setting: CIDR networks (or single addresses), comma-separated."""
    return tuple(
        ipaddress.ip_network(part.strip(), strict=False) for part in text.split(",") if part.strip()
    )


def embedded_addresses(address: IPAddress) -> list[IPAddress]:
    """The address and every IPv4 address it carries inside it (IPv4-mapped, 6to4,
    Teredo, NAT64, IPv4-compatible): each of them is where a packet may end up."""
    found: list[IPAddress] = [address]
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            found.append(address.ipv4_mapped)
        if address.sixtofour is not None:
            found.append(address.sixtofour)
        if address.teredo is not None:
            found.extend(address.teredo)
        if address in _NAT64:
            found.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
        if int(address) >> 32 == 0 and int(address) > 1:  # ::a.b.c.d, deprecated
            found.append(ipaddress.IPv4Address(int(address)))
    return found


def is_public(address: IPAddress) -> bool:
    """A globally routable unicast address: not loopback, private, link-local (the cloud
    metadata service at 169.254.169.254), unique-local (fd00:ec2::254), shared (CGNAT,
    100.100.100.200), multicast, reserved or unspecified, in any spelling."""
    return all(
        a.is_global
        and not (a.is_multicast or a.is_reserved or a.is_unspecified or a.is_link_local)
        and not (a.is_loopback or a.is_private)
        for a in embedded_addresses(address)
    )


def literal_address(host: str) -> IPAddress | None:
    """The address a host names literally, in any spelling a resolver accepts: dotted,
    decimal (2852039166), hex (0xa9fea9fe), octal, shortened (127.1), or IPv6."""
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        pass
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        return None


def system_resolver(host: str, port: int) -> list[str]:
    answers = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(answer[4][0]) for answer in answers))


class Destinations:
    """Which webhook destinations the hub may call."""

    def __init__(
        self, allowed_networks: Iterable[IPNetwork] = (), resolve: Resolver = system_resolver
    ) -> None:
        self.allowed_networks = tuple(allowed_networks)
        self._resolve = resolve

    def allows(self, address: IPAddress) -> bool:
        if any(address in network for network in self.allowed_networks):
            return True
        return is_public(address)

    def addresses(self, host: str, port: int) -> list[IPAddress]:
        """Every address `host` stands for, all allowed; ForbiddenDestination otherwise,
        OSError when the name does not resolve."""
        literal = literal_address(host)
        if literal is not None:
            found = [literal]
        else:
            found = [ipaddress.ip_address(a.split("%")[0]) for a in self._resolve(host, port)]
        if not found or not all(self.allows(address) for address in found):
            raise ForbiddenDestination(host)
        return found

    def refusal(self, url: str) -> str | None:
        """Why a subscription may not use `url` (an absolute http(s) URL), or None.

        A name that does not resolve yet is accepted unless it can only be internal (one
        label, or an internal suffix such as .svc or .local): every delivery checks again."""
        parts = urlsplit(url)
        host = (parts.hostname or "").rstrip(".").lower()
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            self.addresses(host, port)
        except ForbiddenDestination:
            return "must be a public address (loopback, private, link-local and metadata "
            "addresses are refused)"
        except OSError:
            if "." not in host or host.endswith(_INTERNAL_SUFFIXES):
                return "must be a public host name, not a name internal to a network"
        return None


# --- the client -------------------------------------------------------------------------


class _VettingBackend(httpcore.SyncBackend):
    """Connects to an address the destinations allow, for the host name httpcore asks for;
    TLS is then started by httpcore with that host name as SNI."""

    def __init__(self, destinations: Destinations) -> None:
        self._destinations = destinations

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        try:
            addresses = self._destinations.addresses(host, port)
        except ForbiddenDestination as exc:
            raise httpcore.ConnectError("forbidden address") from exc
        except OSError as exc:
            raise httpcore.ConnectError("unresolvable host") from exc
        return super().connect_tcp(str(addresses[0]), port, timeout, local_address, socket_options)


def failure_class(exc: BaseException) -> str:
    """What a partner may be told about a failed call: its class, not its text."""
    causes: list[BaseException] = []
    cause: BaseException | None = exc
    while cause is not None and cause not in causes:
        causes.append(cause)
        cause = cause.__cause__ or cause.__context__
    if any(isinstance(c, ForbiddenDestination) for c in causes):
        return "forbidden address"
    if any(isinstance(c, (httpx.TimeoutException, httpcore.TimeoutException)) for c in causes):
        return "timed out"
    if any(isinstance(c, ssl.SSLError) for c in causes):
        return "TLS handshake failed"
    if any(isinstance(c, ConnectionRefusedError) for c in causes):
        return "connection refused"
    if any(isinstance(c, socket.gaierror) for c in causes):
        return "unresolvable host"
    if any(isinstance(c, (httpx.ProtocolError, httpcore.ProtocolError)) for c in causes):
        return "invalid HTTP response"
    if any(isinstance(c, (httpx.ReadError, httpx.WriteError)) for c in causes):
        return "connection lost"
    return "connection failed"


class VettedTransport(httpx.HTTPTransport):
    """httpx's transport, connecting through the vetting backend, its errors reduced to
    their class."""

    def __init__(
        self,
        destinations: Destinations,
        limits: httpx.Limits,
        verify: ssl.SSLContext | bool = True,
    ) -> None:
        super().__init__(verify=verify, limits=limits, trust_env=False)
        # httpx takes no network backend: its connection pool is replaced by one that has
        # ours, with the same TLS verification and limits.
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(verify=verify, trust_env=False),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=_VettingBackend(destinations),
        )

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        try:
            return super().handle_request(request)
        except httpx.HTTPError as exc:
            raise type(exc)(failure_class(exc), request=request) from None


def webhook_client(
    destinations: Destinations,
    *,
    timeout: httpx.Timeout,
    max_connections: int,
    verify: ssl.SSLContext | bool = True,
) -> httpx.Client:
    """The client that delivers webhooks: checked destinations, no redirects, no proxy."""
    limits = httpx.Limits(max_connections=max_connections)
    return httpx.Client(
        transport=VettedTransport(destinations, limits, verify),
        timeout=timeout,
        follow_redirects=False,
        trust_env=False,
    )
