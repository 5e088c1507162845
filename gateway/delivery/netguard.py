"""Outgoing requests never reach private, loopback, link-local, multicast or reserved addresses
unless the operator allow-lists a network (``delivery.allow_networks``).

A CRM URL is configuration, but a name in it can resolve anywhere (DNS rebinding, a typo, an
internal host), so the check runs where the address is final:

- ``GuardedResolver`` resolves a host name and refuses it when ANY of its addresses is not
  allowed (a clear error, and no fallback to a half-good answer);
- ``Guard.socket_factory`` runs for every address the connector is about to connect to,
  IP literals in the URL included (aiohttp does not resolve those), so nothing connects to a
  refused address whatever path led there.

IPv6 has several ways of carrying an IPv4 address, and a connection to one of them can end
at that IPv4 address: ``::ffff:127.0.0.1`` is loopback, ``64:ff9b::a9fe:a9fe`` is the cloud
metadata service behind a NAT64 gateway. Python's ``is_global`` judges the IPv6 prefix, not
what it carries (and differently from one Python release to the next), so ``allowed`` unwraps:

- forms that translate to the IPv4 address (IPv4-mapped ``::ffff:0:0/96``, SIIT
  ``::ffff:0:0:0/96``, the well-known NAT64 prefix ``64:ff9b::/96``) are judged as that IPv4
  address, allow-list included: an IPv6-only host reaches a public CRM through NAT64;
- tunnels and deprecated forms (IPv4-compatible ``::/96``, 6to4 ``2002::/16``, Teredo
  ``2001::/32`` whose client address is stored inverted, local-use NAT64 ``64:ff9b:1::/48``,
  site-local ``fec0::/10``) are refused unless their IPv6 network is allow-listed: none is a
  way to reach a CRM today, and each can carry a private address;
- everything else is judged as itself.
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

_V6 = ipaddress.IPv6Network
#: Prefixes whose last 32 bits are an IPv4 address a connection is translated to.
_TRANSLATED = (_V6("::ffff:0:0/96"), _V6("::ffff:0:0:0/96"), _V6("64:ff9b::/96"))
#: Tunnels and deprecated forms: refused unless allow-listed (the module's docstring).
_TUNNELS_AND_DEPRECATED = (
    _V6("::/96"),  # IPv4-compatible (RFC 4291, deprecated); :: and ::1 are judged as such
    _V6("2002::/16"),  # 6to4 (RFC 3056, deprecated by RFC 7526)
    _V6("2001::/32"),  # Teredo (RFC 4380)
    _V6("64:ff9b:1::/48"),  # local-use NAT64 (RFC 8215)
    _V6("fec0::/10"),  # site-local (deprecated by RFC 3879)
)


class Guard:
    def __init__(self, allow: Sequence[Network] = ()) -> None:
        self.allow = tuple(allow)

    def allowed(self, address: str) -> bool:
        try:
            ip: IPAddress = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            return False
        if self._listed(ip):
            return True
        if isinstance(ip, ipaddress.IPv6Address):
            if any(ip in network for network in _TRANSLATED):
                # ::ffff:127.0.0.1 is loopback, 64:ff9b::a9fe:a9fe the metadata service.
                ip = ipaddress.IPv4Address(int(ip) & 0xFFFF_FFFF)
                return self._listed(ip) or _public(ip)
            if ip not in (_LOOPBACK_V6, _UNSPECIFIED_V6) and any(
                ip in network for network in _TUNNELS_AND_DEPRECATED
            ):
                return False
        return _public(ip)

    def _listed(self, ip: IPAddress) -> bool:
        return any(ip in network for network in self.allow)

    def check(self, address: str) -> None:
        if not self.allowed(address):
            raise DestinationRefused(address)

    def socket_factory(self, addr_info: AddrInfoType) -> socket.socket:
        """For ``aiohttp.TCPConnector(socket_factory=...)``: the last check before connect."""
        family, type_, proto, _, sockaddr = addr_info
        self.check(str(sockaddr[0]))
        return socket.socket(family=family, type=type_, proto=proto)


_LOOPBACK_V6 = ipaddress.IPv6Address("::1")
_UNSPECIFIED_V6 = ipaddress.IPv6Address("::")


def _public(ip: IPAddress) -> bool:
    return ip.is_global and not ip.is_multicast


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
