"""Per-endpoint protection, as plain state machines over a clock reading (``now`` in monotonic
seconds): a token bucket for the request rate and a circuit breaker with half-open probes.
The concurrency limit is an ``asyncio.Semaphore`` in the transport.

Nothing here sleeps or does I/O; the transport asks, then waits or answers HELD. HELD
deliveries do not consume attempts, so a breaker that is open or a bucket that is empty
only delays leads.
"""

from __future__ import annotations

import enum
from collections import deque

from gateway.config.delivery import BreakerSettings, EndpointRateLimit


class TokenBucket:
    """``per_s`` tokens a second, at most ``burst`` saved up. A reservation may drive the level
    below zero: the caller then waits until its token is due, so waiters are served in order
    and the long-run rate never exceeds ``per_s``."""

    def __init__(self, limit: EndpointRateLimit, now: float) -> None:
        self.per_s = limit.per_s
        self.burst = float(limit.burst)
        self._level = self.burst
        self._at = now

    def _refill(self, now: float) -> None:
        if now > self._at:
            self._level = min(self.burst, self._level + (now - self._at) * self.per_s)
            self._at = now

    def wait_s(self, now: float) -> float:
        """How long a reservation made now would wait for its token (0: one is ready)."""
        self._refill(now)
        return max(0.0, (1.0 - self._level) / self.per_s)

    def reserve(self, now: float, max_wait_s: float) -> float | None:
        """Take a token; the wait before it may be used, or None (nothing taken) when that
        wait would be longer than ``max_wait_s``."""
        wait = self.wait_s(now)
        if wait > max_wait_s:
            return None
        self._level -= 1.0
        return wait


class BreakerState(enum.StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class Breaker:
    """Closed: every request goes; outcomes of the last ``window_s`` are kept. When at least
    ``min_requests`` are in the window and the failure share reaches ``failure_rate``, it
    opens. Open: nothing goes for ``open_s``. Half-open: ``half_open_probes`` requests go;
    if they all succeed it closes (with an empty window), the first failure reopens it.
    """

    def __init__(self, settings: BreakerSettings) -> None:
        self.settings = settings
        self.state = BreakerState.CLOSED
        self._outcomes: deque[tuple[float, bool]] = deque()  # (at, failed)
        self._failures = 0
        self._opened_at = 0.0
        self._probes_out = 0
        self._probes_ok = 0

    def retry_in_s(self, now: float) -> float:
        """When an open breaker will let a probe through (0 when not open)."""
        if self.state is not BreakerState.OPEN:
            return 0.0
        return max(0.0, self._opened_at + self.settings.open_s - now)

    def allow(self, now: float) -> bool:
        """Whether a request may go now; a ``True`` in half-open takes a probe slot that the
        caller must settle with ``record`` (or ``release`` if it sent nothing)."""
        if self.state is BreakerState.OPEN:
            if now < self._opened_at + self.settings.open_s:
                return False
            self.state = BreakerState.HALF_OPEN
            self._probes_out = self._probes_ok = 0
        if self.state is BreakerState.HALF_OPEN:
            if self._probes_out >= self.settings.half_open_probes:
                return False
            self._probes_out += 1
        return True

    def release(self) -> None:
        """A request ``allow`` let through was not sent after all (throttled)."""
        if self.state is BreakerState.HALF_OPEN and self._probes_out > 0:
            self._probes_out -= 1

    def record(self, failed: bool, now: float) -> None:
        if self.state is BreakerState.OPEN:
            return  # a request sent before the breaker opened: the window was reset anyway
        if self.state is BreakerState.HALF_OPEN:
            if failed:
                self._open(now)
                return
            self._probes_ok += 1
            if self._probes_ok >= self.settings.half_open_probes:
                self.state = BreakerState.CLOSED
                self._outcomes.clear()
                self._failures = 0
            return
        self._outcomes.append((now, failed))
        self._failures += failed
        horizon = now - self.settings.window_s
        while self._outcomes and self._outcomes[0][0] < horizon:
            self._failures -= self._outcomes.popleft()[1]
        total = len(self._outcomes)
        if (
            total >= self.settings.min_requests
            and self._failures / total >= self.settings.failure_rate
        ):
            self._open(now)

    def _open(self, now: float) -> None:
        self.state = BreakerState.OPEN
        self._opened_at = now
        self._outcomes.clear()
        self._failures = 0
