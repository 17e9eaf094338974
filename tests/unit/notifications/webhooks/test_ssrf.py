"""Where a webhook may go: public addresses over https, checked after resolution and pinned."""

from __future__ import annotations

import ipaddress
import socket

import pytest

from notifications.webhooks.ssrf import (
    PinnedResolver,
    RefusedDestination,
    check_url,
    refusal,
    resolve,
)

REFUSED = {
    "127.0.0.1": "loopback", "127.255.255.254": "loopback", "::1": "loopback",
    "10.0.0.1": "private", "172.16.5.4": "private", "172.31.255.255": "private", "192.168.0.1": "private",
    "fc00::1": "private", "fd12:3456::1": "private",
    "169.254.169.254": "link-local", "fe80::1": "link-local",
    "100.64.0.1": "shared (CGNAT)", "100.127.255.254": "shared (CGNAT)",
    "0.0.0.0": "unspecified", "::": "unspecified",
    "224.0.0.251": "multicast", "239.255.255.250": "multicast", "ff02::1": "multicast",
    "240.0.0.1": "reserved", "255.255.255.255": "reserved",
}
# IPv6 forms that connect to an IPv4 address: judged by that address.
EMBEDDED = {
    "::ffff:127.0.0.1": "loopback", "::ffff:10.1.2.3": "private", "::ffff:169.254.169.254": "link-local",
    "::ffff:100.64.1.1": "shared (CGNAT)",
    "2002:7f00:1::1": "loopback",  # 6to4 of 127.0.0.1
    "64:ff9b::a00:1": "private",  # NAT64 of 10.0.0.1
}
PUBLIC = ["8.8.8.8", "1.1.1.1", "100.63.255.255", "100.128.0.1", "172.32.0.1", "2606:4700:4700::1111",
          "::ffff:8.8.8.8", "2002:808:808::1", "64:ff9b::808:808"]


@pytest.mark.parametrize(("address", "kind"), sorted(REFUSED.items()))
def test_non_public_addresses_are_refused_by_kind(address: str, kind: str) -> None:
    assert refusal(ipaddress.ip_address(address)) == kind


@pytest.mark.parametrize(("address", "kind"), sorted(EMBEDDED.items()))
def test_ipv6_forms_of_non_public_ipv4_addresses_are_refused(address: str, kind: str) -> None:
    reason = refusal(ipaddress.ip_address(address))
    assert reason is not None and reason.startswith(kind), reason


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_pass(address: str) -> None:
    assert refusal(ipaddress.ip_address(address)) is None


def test_documentation_and_benchmark_ranges_are_not_public() -> None:
    for address in ("192.0.2.1", "198.51.100.7", "203.0.113.9", "198.18.0.1", "2001:db8::1"):
        assert refusal(ipaddress.ip_address(address)) is not None, address


def test_the_private_flag_admits_local_networks_but_never_unspecified_or_multicast() -> None:
    for address in ("127.0.0.1", "::1", "10.0.0.1", "192.168.1.1", "169.254.1.1", "100.64.0.1", "fd00::1",
                    "::ffff:127.0.0.1"):
        assert refusal(ipaddress.ip_address(address), allow_private=True) is None, address
    for address in ("0.0.0.0", "::", "224.0.0.1", "ff02::1", "::ffff:0.0.0.0"):
        assert refusal(ipaddress.ip_address(address), allow_private=True) is not None, address


def test_urls_must_be_https_with_a_host_and_no_credentials() -> None:
    assert str(check_url("https://hooks.example.com/in?x=1")) == "https://hooks.example.com/in?x=1"
    for url in ("http://hooks.example.com/", "ftp://hooks.example.com/", "/relative", "https://",
                "https://user:pass@hooks.example.com/"):
        with pytest.raises(RefusedDestination):
            check_url(url)
    assert check_url("http://127.0.0.1:8080/", allow_private=True).port == 8080


@pytest.mark.parametrize("url", ["https://127.0.0.1/", "https://[::1]/", "https://[::ffff:127.0.0.1]/",
                                 "https://169.254.169.254/latest/meta-data/", "https://10.0.0.1:8443/",
                                 "https://localhost/", "https://localhost./", "http://8.8.8.8/"])
async def test_urls_reaching_this_host_or_its_networks_are_refused_after_resolution(url: str) -> None:
    with pytest.raises(RefusedDestination):
        await resolve(url)


async def test_a_public_literal_is_kept_with_its_port() -> None:
    destination = await resolve("https://8.8.8.8:8443/hook")
    assert (destination.host, destination.port, destination.addresses) == ("8.8.8.8", 8443, ("8.8.8.8",))


async def test_with_the_flag_localhost_resolves_to_its_loopback_addresses() -> None:
    destination = await resolve("http://localhost:9/", allow_private=True)
    assert destination.addresses and all(ipaddress.ip_address(a).is_loopback for a in destination.addresses)


async def test_the_pinned_resolver_answers_only_the_checked_name_with_the_checked_addresses() -> None:
    destination = await resolve("http://localhost:9/", allow_private=True)
    resolver = PinnedResolver(destination)
    answers = await resolver.resolve("localhost", 9, socket.AF_UNSPEC)
    assert sorted(answer["host"] for answer in answers) == sorted(destination.addresses)
    assert all(answer["port"] == 9 for answer in answers)
    with pytest.raises(OSError):
        await resolver.resolve("metadata.google.internal", 80, socket.AF_UNSPEC)
