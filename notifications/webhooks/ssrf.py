"""Where a webhook may be sent: https to public addresses only, checked when it is sent.

An endpoint's URL is the integrator's, and so is its DNS: a name that resolved to a public address
when the endpoint was saved may resolve to 127.0.0.1 or 169.254.169.254 (cloud metadata) today, or
alternate between the two from one lookup to the next (DNS rebinding). So the name is resolved once,
at send time, every address is checked, and the connection goes to exactly the checked addresses
(``PinnedResolver``): the name still reaches the server as the Host header and the TLS SNI, and the
certificate is verified against it, but no second lookup can swap the address.

``allow_private`` (``VIRTUOZ_WEBHOOK_ALLOW_PRIVATE``, on in devnet and test) admits loopback and
private networks, over plain http too: a local receiver.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass

from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# RFC 6598 shared address space (carrier-grade NAT): not "private" to the ipaddress module, not
# public either; a cloud's internal services live there.
SHARED_CGNAT = ipaddress.ip_network("100.64.0.0/10")
# RFC 6052 NAT64 well-known prefix: the last 32 bits are an IPv4 address a NAT64 gateway connects to.
NAT64 = ipaddress.ip_network("64:ff9b::/96")


class RefusedDestination(Exception):
    """The URL or an address it resolves to may not receive webhooks; the message says why (no secret in it)."""


@dataclass(frozen=True)
class Destination:
    """A URL checked for sending: the name as written, and the addresses to connect to."""

    url: URL
    host: str
    port: int
    addresses: tuple[str, ...]
    families: tuple[int, ...]


def embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries and ends up connecting to (mapped, 6to4, NAT64)."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFF_FFFF)
    return None


def refusal(address: IPAddress, *, allow_private: bool = False) -> str | None:
    """Why ``address`` may not receive a webhook ("loopback", "private"…), or None when it may."""
    if isinstance(address, ipaddress.IPv6Address):
        inner = embedded_ipv4(address)
        if inner is not None:
            reason = refusal(inner, allow_private=allow_private)
            return None if reason is None else f"{reason} (in {address})"
    # Never, whatever the flag: no host listens there (0.0.0.0 even reaches this machine on Linux).
    if address.is_unspecified:
        return "unspecified"
    if address.is_multicast:
        return "multicast"
    local = _local_kind(address)
    if local is not None:
        return None if allow_private else local
    if address.is_reserved:
        return "reserved"
    if not address.is_global:
        return "not public"  # documentation, benchmarking and other special-purpose ranges
    return None


def _local_kind(address: IPAddress) -> str | None:
    """The kinds ``allow_private`` admits: this machine and the networks around it."""
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local"
    if isinstance(address, ipaddress.IPv4Address) and address in SHARED_CGNAT:
        return "shared (CGNAT)"
    if address.is_private and not address.is_reserved:
        return "private"
    if isinstance(address, ipaddress.IPv6Address) and address.is_site_local:
        return "site-local"
    return None


def check_url(url: str, *, allow_private: bool = False) -> URL:
    """The parsed URL if its scheme and form may receive webhooks (the addresses are checked at send time)."""
    try:
        parsed = URL(url)
    except (ValueError, TypeError):
        raise RefusedDestination("the URL does not parse") from None
    schemes = ("https", "http") if allow_private else ("https",)
    if parsed.scheme not in schemes:
        raise RefusedDestination(f"the URL must be {' or '.join(schemes)}, not {parsed.scheme or 'relative'}")
    if not parsed.raw_host:
        raise RefusedDestination("the URL has no host")
    if parsed.user is not None or parsed.password is not None:
        raise RefusedDestination("the URL carries credentials")
    return parsed


async def resolve(url: str, *, allow_private: bool = False) -> Destination:
    """Resolve the URL's host once and check every address; refused unless all of them may receive webhooks.

    One refused address refuses the URL: a connection could land on any of them.
    """
    parsed = check_url(url, allow_private=allow_private)
    host = parsed.raw_host or ""
    port = parsed.explicit_port or (443 if parsed.scheme == "https" else 80)
    if parsed.scheme == "http" and not allow_private:
        raise RefusedDestination("plain http is refused")
    literal = _literal(host)
    if literal is not None:
        infos = [(socket.AF_INET6 if literal.version == 6 else socket.AF_INET, str(literal))]
    else:
        try:
            found = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as error:
            raise RefusedDestination(f"the host does not resolve ({error.__class__.__name__})") from None
        infos = [(family, sockaddr[0]) for family, _, _, _, sockaddr in found
                 if family in (socket.AF_INET, socket.AF_INET6)]
    if not infos:
        raise RefusedDestination("the host resolves to no address")
    checked: dict[str, int] = {}
    for family, text in infos:
        address = ipaddress.ip_address(text.split("%", 1)[0])  # a scope id (fe80::1%eth0) is link-local anyway
        reason = refusal(address, allow_private=allow_private)
        if reason is not None:
            raise RefusedDestination(f"the host resolves to a {reason} address ({address})")
        checked.setdefault(str(address), family)
    return Destination(parsed, host, port, tuple(checked), tuple(checked.values()))


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


class PinnedResolver(AbstractResolver):
    """An aiohttp resolver that answers the checked destination's name with its checked addresses only.

    Use it with ``TCPConnector(resolver=..., use_dns_cache=False)``. aiohttp skips the resolver for
    IP literals and connects to the literal, which ``resolve`` checked already.
    """

    def __init__(self, destination: Destination) -> None:
        self.destination = destination

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        if host.rstrip(".") != self.destination.host.rstrip("."):
            # A redirect or a proxy would ask for another name: nothing else was checked.
            raise OSError(f"refused: {host} is not the checked webhook host")
        return [ResolveResult(hostname=host, host=address, port=port, family=address_family, proto=0,
                              flags=socket.AI_NUMERICHOST | socket.AI_NUMERICSERV)
                for address, address_family in zip(self.destination.addresses, self.destination.families,
                                                   strict=True)
                if family in (socket.AF_UNSPEC, address_family)]

    async def close(self) -> None:
        return None
