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


#: The span over which pings are weighed against posts (``PingPostLimits``).
PING_WINDOW_S = 3600.0
#: A partner over its pings per post waits this long (its posts can bring it back sooner).
PING_RETRY_AFTER_S = 60


@dataclass(slots=True)
class _PingTally:
    window: int  # the number of the window the counts are for (now // PING_WINDOW_S)
    pings: float
    posts: float
    previous_pings: float
    previous_posts: float

    def roll(self, window: int) -> None:
        if window != self.window:
            recent = window == self.window + 1
            self.previous_pings = self.pings if recent else 0.0
            self.previous_posts = self.posts if recent else 0.0
            self.window, self.pings, self.posts = window, 0.0, 0.0

    def weighed(self, now_s: float) -> tuple[float, float]:
        """Pings and posts over the last window (the previous window's share, pro rata)."""
        left = 1.0 - (now_s % PING_WINDOW_S) / PING_WINDOW_S
        return (
            self.pings + self.previous_pings * left,
            self.posts + self.previous_posts * left,
        )


class PingPostLimits:
    """Pings per post, per partner, over the last hour (per process), as lead platforms bound
    them: a partner may send ``max_per_post`` pings for each post that names a ping, plus
    ``max_per_post`` ahead of its first post; beyond, its pings wait until posts catch up.
    Holds only partner ids and counts."""

    def __init__(self) -> None:
        self._tallies: dict[str, _PingTally] = {}

    def _tally(self, partner: str, now_s: float) -> _PingTally:
        window = int(now_s // PING_WINDOW_S)
        tally = self._tallies.get(partner)
        if tally is None:
            tally = self._tallies[partner] = _PingTally(window, 0.0, 0.0, 0.0, 0.0)
        tally.roll(window)
        return tally

    def ping(self, partner: str, max_per_post: int, now_s: float) -> int:
        """Count one ping of ``partner``: 0 when allowed, else the seconds to wait."""
        tally = self._tally(partner, now_s)
        pings, posts = tally.weighed(now_s)
        if pings >= max_per_post * (posts + 1):
            return PING_RETRY_AFTER_S
        tally.pings += 1
        return 0

    def posted(self, partner: str, now_s: float) -> None:
        """``partner`` posted a lead naming a ping."""
        self._tally(partner, now_s).posts += 1


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
