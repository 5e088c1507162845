"""Per-partner token buckets (per process: with N processes a partner gets N times the rate;
the README says so)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from gateway.config.model import RateLimit


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
        elapsed = max(0.0, now_s - self.updated_s)
        self.tokens = min(float(self.burst), self.tokens + elapsed * self.rate_per_s)
        self.updated_s = now_s
        needed = min(n, self.burst)
        if self.tokens >= needed:
            self.tokens -= n
            return 0.0
        return (needed - self.tokens) / self.rate_per_s


def retry_after_s(wait_s: float) -> int:
    return max(1, math.ceil(wait_s))
