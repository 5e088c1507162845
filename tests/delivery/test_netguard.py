"""Which destination addresses outgoing requests may reach."""

from __future__ import annotations

import ipaddress

import pytest

from gateway.delivery.netguard import Guard


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",  # cloud metadata
        "100.64.0.1",  # carrier-grade NAT
        "0.0.0.0",  # noqa: S104 - a destination here, not a bind address
        "224.0.0.1",
        "240.0.0.1",
        "255.255.255.255",
        "::1",
        "::",
        "fc00::1",
        "fe80::1%eth0",
        "ff02::1",
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
        "not an address",
    ],
)
def test_non_public_addresses_are_refused(address: str) -> None:
    assert not Guard().allowed(address)


# IPv6 forms that carry an IPv4 address (gateway/delivery/netguard.py's docstring).
EMBEDDED_IPV4 = {
    # IPv4-compatible ::/96 (deprecated): refused whatever it carries.
    "::127.0.0.1": False,
    "::a9fe:a9fe": False,
    "::8.8.8.8": False,
    # IPv4-mapped ::ffff:0:0/96 and SIIT ::ffff:0:0:0/96: judged as the IPv4 address.
    "::ffff:127.0.0.1": False,
    "::ffff:169.254.169.254": False,
    "::ffff:8.8.8.8": True,
    "::ffff:0:7f00:1": False,
    "::ffff:0:a9fe:a9fe": False,
    "::ffff:0:a00:1": False,
    "::ffff:0:808:808": True,
    # Well-known NAT64 64:ff9b::/96: judged as the IPv4 address (IPv6-only hosts use it).
    "64:ff9b::a9fe:a9fe": False,  # the cloud metadata service
    "64:ff9b::7f00:1": False,
    "64:ff9b::c0a8:101": False,
    "64:ff9b::808:808": True,
    # Local-use NAT64 64:ff9b:1::/48: refused.
    "64:ff9b:1::a9fe:a9fe": False,
    "64:ff9b:1:ffff::808:808": False,
    # 6to4 2002::/16: refused, a private or a public IPv4 inside.
    "2002:7f00:1::1": False,
    "2002:a9fe:a9fe::1": False,
    "2002:808:808::1": False,
    # Teredo 2001::/32 (its client address stored inverted: 3fff:fdd2 is 192.0.2.45): refused.
    "2001:0:4136:e378:8000:63bf:3fff:fdd2": False,
    "2001:0:808:808:8000:63bf:80ff:fffe": False,  # client 127.0.0.1, inverted
    # Site-local fec0::/10 (deprecated).
    "fec0::1": False,
    "feff:ffff::1": False,
}


@pytest.mark.parametrize(("address", "allowed"), EMBEDDED_IPV4.items())
def test_ipv6_forms_that_carry_ipv4_are_unwrapped(address: str, allowed: bool) -> None:
    assert Guard().allowed(address) is allowed


@pytest.mark.parametrize("address", ["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"])
def test_public_addresses_are_allowed(address: str) -> None:
    assert Guard().allowed(address)


def test_an_allow_listed_ipv4_network_is_reachable_through_its_translated_forms() -> None:
    guard = Guard([ipaddress.ip_network("10.20.0.0/16")])
    for address in ("10.20.1.1", "::ffff:10.20.1.1", "::ffff:0:a14:101", "64:ff9b::a14:101"):
        assert guard.allowed(address), address
    # Tunnels stay refused: allow-list the IPv6 network itself to reach one.
    assert not guard.allowed("2002:a14:101::1")
    assert Guard([ipaddress.ip_network("2002:a14:101::/48")]).allowed("2002:a14:101::1")


def test_an_allow_listed_network_is_reachable_and_only_it() -> None:
    guard = Guard([ipaddress.ip_network("10.20.0.0/16"), ipaddress.ip_network("::1/128")])
    assert guard.allowed("10.20.3.4")
    assert guard.allowed("::1")
    assert not guard.allowed("10.21.0.1")
    assert not guard.allowed("127.0.0.1")
