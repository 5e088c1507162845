"""Rate limits, per process (with N processes a partner gets N times the rate; the README
says so): per partner (its own ``rate_limit`` or ``server.default_rate_limit``), and per
client address for failed authentications and the feedback API.

A client address is the connection's peer, or, when the peer is one of
``server.trusted_proxies``, the rightmost ``X-Forwarded-For`` entry that is not itself a
trusted proxy. IPv6 addresses count by their /64 (one host usually holds a whole /64).
Addresses live in memory only, in tables of at most ``MAX_ADDRESSES`` entries (the least
recently used is dropped); never in a log line or a metric label.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Sequence
from dataclasses import dataclass

from aiohttp import web

from gateway.config.model import IPNetwork, RateLimit

#: Entries of each per-address table; beyond, the least recently used address is forgotten.
MAX_ADDRESSES = 10_000
#: ``X-Forwarded-For`` entries looked at, from the right (a longer header is a forgery).
_MAX_FORWARDED_HOPS = 16


@dataclass(slots=True)
class TokenBucket:
    rate_per_s: float
    burst: int
    tokens: float
    updated_s: float

    @classmethod
    def full(cls, limit: RateLimit, now_s: float) -> TokenBucket:
        return cls(limit.per_s, limit.burst, float(limit.burst), now_s)

    def take(self, n: int, now_s: float) -> float:
        """Take ``n`` tokens; 0.0 if granted, else the seconds to wait until they would be.

        A request larger than the burst (a big batch) is granted when the bucket is full and
        leaves it in debt, so every lead is paid for and later requests wait accordingly.
        """
        wait_s = self.wait_s(n, now_s)
        if wait_s == 0.0:
            self.tokens -= n
        return wait_s

    def wait_s(self, n: int, now_s: float) -> float:
        """How long until ``n`` tokens could be taken (0.0: now), taking none."""
        elapsed = max(0.0, now_s - self.updated_s)
        self.tokens = min(float(self.burst), self.tokens + elapsed * self.rate_per_s)
        self.updated_s = now_s
        needed = min(n, self.burst)
        if self.tokens >= needed:
            return 0.0
        return (needed - self.tokens) / self.rate_per_s

    def matches(self, limit: RateLimit) -> bool:
        return self.rate_per_s == limit.per_s and self.burst == limit.burst


def retry_after_s(wait_s: float) -> int:
    return max(1, math.ceil(wait_s))


class AddressBuckets:
    """One token bucket per client address, at most ``max_entries`` of them."""

    def __init__(self, max_entries: int = MAX_ADDRESSES) -> None:
        self._buckets: dict[str, TokenBucket] = {}
        self._max = max_entries

    def __len__(self) -> int:
        return len(self._buckets)

    def _bucket(self, address: str, limit: RateLimit, now_s: float) -> TokenBucket:
        # Popped and put back: the dict's order is then least recently used first.
        bucket = self._buckets.pop(address, None)
        if bucket is None or not bucket.matches(limit):
            bucket = TokenBucket.full(limit, now_s)
            while len(self._buckets) >= self._max:
                del self._buckets[next(iter(self._buckets))]
        self._buckets[address] = bucket
        return bucket

    def take(self, address: str, limit: RateLimit, n: int, now_s: float) -> float:
        """Take ``n`` tokens from ``address``'s bucket: 0.0 if granted, else the wait."""
        return self._bucket(address, limit, now_s).take(n, now_s)

    def wait_s(self, address: str, limit: RateLimit, now_s: float) -> float:
        """How long ``address`` must wait before its next token (0.0 for an unknown one).
        A known address counts as just seen: one that keeps trying stays remembered."""
        if address not in self._buckets:
            return 0.0
        return self._bucket(address, limit, now_s).wait_s(1, now_s)


class AddressLimits:
    """The per-address tables of one listener's app."""

    def __init__(self, max_entries: int = MAX_ADDRESSES) -> None:
        self.auth_failures = AddressBuckets(max_entries)
        self.feedback = AddressBuckets(max_entries)


def client_address(request: web.Request, trusted: Sequence[IPNetwork]) -> str:
    """Who sent ``request``: its peer, or behind a trusted proxy the address it forwarded;
    an IPv6 address as its /64. ``""`` when the peer has no address (a unix socket)."""
    peer = request.remote or ""
    address = _parse(peer)
    if address is not None and trusted and _trusted(address, trusted):
        forwarded = ",".join(request.headers.getall("X-Forwarded-For", ()))
        for hop in reversed(forwarded.split(",")[-_MAX_FORWARDED_HOPS:]):
            parsed = _parse(hop.strip())
            if parsed is None:
                break
            address = parsed
            if not _trusted(parsed, trusted):
                break
    if address is None:
        return peer
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)  # an IPv4 client on a dual-stack socket
    if address.version == 6:
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


def _parse(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _trusted(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address, trusted: Sequence[IPNetwork]
) -> bool:
    return any(address in network for network in trusted)
