"""Where our TRP messages may go: never to our own network, unless the operator vouches for the VASP.

A Travel Address comes from a customer (with a withdrawal) or a counterparty (the approval's
callback), and the compliance worker POSTs to it from inside our network, with our client
certificate and the customer's IVMS101 data. Pointed at ``127.0.0.1``, ``10.x`` or
``169.254.169.254`` it would reach our own services (SSRF). So a destination at a private,
loopback or link-local address (or any other not globally routable one) is refused, unless its https
origin (host and port) is in the VASP directory (``VIRTUOZ_TRAVEL_RULE_VASP_DIRECTORY``) or is one
of our own identities (``VIRTUOZ_TRAVEL_RULE_IDENTITIES``: the devnet's two VASPs talk on loopback).

Two checks, because a name is not an address: when a Travel Address is given, its host is refused
if it is such an address literally (every spelling the resolver accepts: ``127.1``,
``2130706433``, ``[::ffff:127.0.0.1]``) or a ``localhost`` name, answering 422
``travel_address_private``; names are not resolved then. When the worker connects, the name is
resolved by a resolver that refuses the connection if any address it finds is internal, so a
name pointing (or re-pointed, after the check) at our network is never connected to.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from compliance.travel_rule import trp
from core.errors import InvalidInput
from core.settings import Settings

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class PrivateDestination(InvalidInput):
    code = "travel_address_private"
    message = ("This Travel Address points at a private, loopback or link-local address; only a VASP in the "
               "configured directory may be reached there.")


def internal(address: Address) -> bool:
    """An address of our own network (or of nobody's): never a counterparty's, unless vouched for."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    # Not globally routable covers private, loopback, link-local, unspecified, reserved and shared
    # (100.64/10, carrier-grade NAT) space alike.
    return not address.is_global or address.is_multicast


def literal_address(host: str) -> Address | None:
    """The address a host written as one stands for, in any spelling the C resolver accepts."""
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        pass
    try:  # inet_aton takes the legacy IPv4 forms: "127.1", "2130706433", "0x7f.0.0.1"
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        return None


def _local_name(host: str) -> bool:
    return host == "localhost" or host.endswith(".localhost")  # RFC 6761: always loopback


def _origin(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return (parts.hostname or "").rstrip(".").lower(), parts.port or 443


@dataclass(frozen=True)
class Directory:
    """The https origins (host, port) a TRP message may go to even on an internal address."""

    origins: frozenset[tuple[str, int]] = frozenset()

    @classmethod
    def of(cls, settings: Settings) -> Directory:
        listed = {entry.origin for entry in settings.travel_rule_vasp_directory}
        ours = {_origin(identity.base_url) for identity in settings.travel_rule_identities}
        return cls(frozenset(listed | ours))

    def lists(self, url: str) -> bool:
        return _origin(url) in self.origins

    def check_url(self, url: str) -> None:
        """422 ``travel_address_private`` when ``url``'s host is internal as written (names are
        checked when connecting: ``resolver``)."""
        if self.lists(url):
            return
        host, port = _origin(url)
        address = literal_address(host)
        if _local_name(host) or (address is not None and internal(address)):
            raise PrivateDestination(details={"host": host, "port": port})

    def check_travel_address(self, travel_address: str) -> None:
        """A Travel Address (or an https inquiry URL) is well formed and not internal."""
        self.check_url(trp.inquiry_url(travel_address))

    def resolver(self, url: str) -> AbstractResolver | None:
        """The resolver to connect to ``url`` with: one that refuses internal addresses, unless listed."""
        return None if self.lists(url) else PublicOnlyResolver()


class PublicOnlyResolver(AbstractResolver):
    """Resolves as usual, and refuses a name any of whose addresses is internal: the check and the
    connection use the same answer, so re-pointing the name in between gains nothing."""

    def __init__(self) -> None:
        self._resolver = DefaultResolver()

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
                      ) -> list[ResolveResult]:
        results = await self._resolver.resolve(host, port, family)
        refused = sorted({result["host"] for result in results if internal(ipaddress.ip_address(result["host"]))})
        if refused:
            # Not an OSError: the HTTP client would wrap it as a connection failure worth retrying.
            raise PrivateDestination(details={"host": host, "port": port, "addresses": refused})
        return results

    async def close(self) -> None:
        await self._resolver.close()
