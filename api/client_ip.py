"""Who the client is, by address: the one answer every route, limit and log line uses.

X-Forwarded-For is written by whoever sends the request, so it is believed only from a trusted
proxy (``VIRTUOZ_TRUSTED_PROXIES``), and then only as far as the chain of trusted proxies goes:
each proxy appends the address it saw, so walking from the right, the first address that is not
a trusted proxy is the client; whatever stands to its left was written by the client itself.
The RFC 7239 ``Forwarded`` header is not read: a proxy in front of us must send X-Forwarded-For.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address

from aiohttp import web

from api.keys import SETTINGS

UNKNOWN = "unknown"  # no peer address (a Unix socket): one bucket for all such callers

Network = IPv4Network | IPv6Network
Address = IPv4Address | IPv6Address


def _address(text: str) -> Address | None:
    try:
        address = ip_address(text.strip())
    except ValueError:
        return None
    # An IPv4 client seen on a dual-stack socket is still an IPv4 client.
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def resolve_client_address(peer: str | None, forwarded_for: Iterable[str], trusted: Sequence[Network]
                           ) -> Address | None:
    """The client's address from the connection's ``peer`` and the X-Forwarded-For headers (each may
    list several addresses; several headers read as one list, in order); None without a peer address."""
    address = _address(peer) if peer else None
    if address is None or not any(address in network for network in trusted):
        return address
    hops = [hop for header in forwarded_for for hop in header.split(",") if hop.strip()]
    for hop in reversed(hops):
        forwarded = _address(hop)
        if forwarded is None:
            break  # not an address: nothing to its left can be believed either
        address = forwarded
        if not any(address in network for network in trusted):
            return address
    # Every hop was a trusted proxy (or the chain broke): the last address a trusted proxy vouched for.
    return address


def client_address(request: web.Request) -> Address | None:
    """The client's address for this request (see the module's docstring); None without one."""
    settings = request.config_dict[SETTINGS]
    return resolve_client_address(request.remote, request.headers.getall("X-Forwarded-For", ()),
                                  settings.trusted_proxy_networks)


def client_ip(request: web.Request) -> str:
    """The client's address as text, for counters, sessions and logs."""
    address = client_address(request)
    return str(address) if address is not None else request.remote or UNKNOWN
