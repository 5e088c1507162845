"""Metrics of the listeners' connections (``web.connections``): open, refused by the bound,
cut by a deadline. Labels are the listener's fixed name and the deadline's phase, never
anything a client sent."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge

LISTENERS = ("public", "admin", "metrics")
PHASES = ("head", "idle", "body")
#: HTTP statuses aiohttp answers itself, before any handler (a malformed request).
_MALFORMED_STATUSES = ("400",)


class ConnectionMetrics:
    """``listeners``: the names this process has (each series starts at 0)."""

    def __init__(self, registry: CollectorRegistry, listeners: tuple[str, ...] = LISTENERS) -> None:
        self.open = Gauge(
            "leadgate_connections_open",
            "Client connections open now, by listener (public, admin, metrics).",
            ["listener"],
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.refused = Counter(
            "leadgate_connections_refused",
            "Connections refused (503) because the listener held max_connections already.",
            ["listener"],
            registry=registry,
        )
        self.timed_out = Counter(
            "leadgate_connections_timed_out",
            "Connections closed by a deadline: the request head (head), an idle keep-alive "
            "(idle) or the request body (body, answered 408).",
            ["listener", "phase"],
            registry=registry,
        )
        self.malformed = Counter(
            "leadgate_requests_malformed",
            "Requests refused before any handler (malformed or too long request line or "
            "headers), by listener and status.",
            ["listener", "status"],
            registry=registry,
        )
        for listener in listeners:
            self.open.labels(listener)
            self.refused.labels(listener)
            for phase in PHASES:
                self.timed_out.labels(listener, phase)
            for status in _MALFORMED_STATUSES:
                self.malformed.labels(listener, status)

    def events(self, listener: str) -> ListenerEvents:
        """What ``web.connections.ConnectionGuard`` tells, for one listener."""
        return ListenerEvents(self, listener)


class ListenerEvents:
    """``web.connections.ConnectionEvents`` for one listener (its metric children cached)."""

    __slots__ = ("_listener", "_malformed", "_metrics", "_open", "_refused", "_timed_out")

    def __init__(self, metrics: ConnectionMetrics, listener: str) -> None:
        self._metrics = metrics
        self._listener = listener
        self._open: Any = metrics.open.labels(listener)
        self._refused: Any = metrics.refused.labels(listener)
        self._timed_out: dict[str, Any] = {
            phase: metrics.timed_out.labels(listener, phase) for phase in PHASES
        }
        self._malformed: dict[int, Any] = {}

    def opened(self) -> None:
        self._open.inc()

    def closed(self) -> None:
        self._open.dec()

    def refused(self) -> None:
        self._refused.inc()

    def timed_out(self, phase: str) -> None:
        self._timed_out[phase].inc()

    def malformed(self, status: int) -> None:
        child = self._malformed.get(status)
        if child is None:
            child = self._malformed[status] = self._metrics.malformed.labels(
                self._listener, str(status)
            )
        child.inc()
