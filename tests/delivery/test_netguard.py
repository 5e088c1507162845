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


@pytest.mark.parametrize("address", ["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"])
def test_public_addresses_are_allowed(address: str) -> None:
    assert Guard().allowed(address)


def test_an_allow_listed_network_is_reachable_and_only_it() -> None:
    guard = Guard([ipaddress.ip_network("10.20.0.0/16"), ipaddress.ip_network("::1/128")])
    assert guard.allowed("10.20.3.4")
    assert guard.allowed("::1")
    assert not guard.allowed("10.21.0.1")
    assert not guard.allowed("127.0.0.1")
