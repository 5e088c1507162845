"""Outgoing requests never reach private, loopback, link-local, multicast or reserved addresses
unless the operator allow-lists a network (``delivery.allow_networks``).

A CRM URL is configuration, but a name in it can resolve anywhere (DNS rebinding, a typo, an
internal host), so the check runs where the address is final:

- ``GuardedResolver`` resolves a host name and refuses it when ANY of its addresses is not
  allowed (a clear error, and no fallback to a half-good answer);
- ``Guard.socket_factory`` runs for every address the connector is about to connect to,
  IP literals in the URL included (aiohttp does not resolve those), so nothing connects to a
  refused address whatever path led there.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Sequence

from aiohappyeyeballs import AddrInfoType
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from gateway.config.delivery import Network
from gateway.errors import DestinationRefused

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class Guard:
    def __init__(self, allow: Sequence[Network] = ()) -> None:
        self.allow = tuple(allow)

    def allowed(self, address: str) -> bool:
        try:
            ip: IPAddress = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped  # ::ffff:127.0.0.1 is loopback
        if any(ip in network for network in self.allow):
            return True
        return ip.is_global and not ip.is_multicast

    def check(self, address: str) -> None:
        if not self.allowed(address):
            raise DestinationRefused(address)

    def socket_factory(self, addr_info: AddrInfoType) -> socket.socket:
        """For ``aiohttp.TCPConnector(socket_factory=...)``: the last check before connect."""
        family, type_, proto, _, sockaddr = addr_info
        self.check(str(sockaddr[0]))
        return socket.socket(family=family, type=type_, proto=proto)


class GuardedResolver(AbstractResolver):
    """aiohttp's default resolver, refusing a name when any address it resolves to is refused."""

    def __init__(self, guard: Guard, inner: AbstractResolver | None = None) -> None:
        self.guard = guard
        self.inner = inner if inner is not None else DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self.inner.resolve(host, port, family)
        for result in results:
            self.guard.check(result["host"])
        return results

    async def close(self) -> None:
        await self.inner.close()
