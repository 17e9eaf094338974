from __future__ import annotations

from ipaddress import ip_address, ip_network

import pytest

from api.client_ip import resolve_client_address
from identity.throttle import ip_bucket

PROXIES = (ip_network("10.0.0.0/8"), ip_network("2001:db8:ff::/48"))


@pytest.mark.parametrize(("peer", "forwarded_for", "client"), [
    # Not from a trusted proxy: the header is the client's own words.
    ("203.0.113.5", ["198.51.100.1"], "203.0.113.5"),
    ("::ffff:203.0.113.5", [], "203.0.113.5"),  # an IPv4 client on a dual-stack socket
    # From a trusted proxy: the right-most hop that is not a trusted proxy.
    ("10.0.0.1", ["198.51.100.1, 203.0.113.7"], "203.0.113.7"),
    ("10.0.0.1", ["198.51.100.1", "203.0.113.7, 10.2.3.4"], "203.0.113.7"),  # several headers are one list
    ("2001:db8:ff::2", ["2001:db8:1::9, 2001:db8:ff::3"], "2001:db8:1::9"),
    ("10.0.0.1", ["not-an-address, 10.9.9.9"], "10.9.9.9"),  # a broken chain: the last vouched-for hop
    ("10.0.0.1", ["203.0.113.7, not-an-address"], "10.0.0.1"),
    ("10.0.0.1", [], "10.0.0.1"),  # the proxy itself calls
])
def test_the_client_is_the_rightmost_untrusted_hop(peer, forwarded_for, client):
    assert resolve_client_address(peer, forwarded_for, PROXIES) == ip_address(client)


def test_without_a_peer_address_there_is_no_client_address():
    assert resolve_client_address(None, ["203.0.113.7"], PROXIES) is None


def test_ipv6_clients_share_a_bucket_per_64():
    assert ip_bucket("2001:db8:1:2::1") == ip_bucket("2001:db8:1:2:ffff::9") == "2001:db8:1:2::/64"
    assert ip_bucket("2001:db8:1:3::1") != ip_bucket("2001:db8:1:2::1")
    assert ip_bucket("203.0.113.7") == "203.0.113.7"
