"""Typed application state (``web.AppKey``): what handlers may reach, and what the web layer is
built from (``Services``: the composition root, ``app.root.App``, is one)."""

from __future__ import annotations

import asyncio
from typing import Protocol

from aiohttp import web

from gateway.decision.intake import Intake
from gateway.observe.metrics import Observer
from gateway.quality.feedback import FeedbackDesk
from gateway.storage.base import Store
from gateway.web.ratelimit import AddressLimits, PingPostLimits, TokenBucket


class Services(Protocol):
    """The parts the HTTP listeners serve from."""

    @property
    def intake(self) -> Intake: ...

    @property
    def observer(self) -> Observer: ...

    @property
    def store(self) -> Store: ...

    @property
    def feedback_desk(self) -> FeedbackDesk: ...


INTAKE: web.AppKey[Intake] = web.AppKey("intake", Intake)
OBSERVER: web.AppKey[Observer] = web.AppKey("observer", Observer)
STORE: web.AppKey[Store] = web.AppKey("store", Store)
FEEDBACK_DESK: web.AppKey[FeedbackDesk] = web.AppKey("feedback_desk", FeedbackDesk)
BUCKETS: web.AppKey[dict[str, TokenBucket]] = web.AppKey("buckets", dict)
DRAINING: web.AppKey[asyncio.Event] = web.AppKey("draining", asyncio.Event)
#: Per client address: failed authentications, feedback (``web.ratelimit``).
ADDRESS_LIMITS: web.AppKey[AddressLimits] = web.AppKey("address_limits", AddressLimits)
#: Pings per post, per partner (``web.ratelimit.PingPostLimits``).
PING_LIMITS: web.AppKey[PingPostLimits] = web.AppKey("ping_limits", PingPostLimits)
#: The bearer token ``/metrics`` requires (None: none).
METRICS_TOKEN: web.AppKey[str | None] = web.AppKey("metrics_token")


class InFlight:
    """Requests being handled now, so a drain can wait for the last one to finish."""

    __slots__ = ("count", "idle")

    def __init__(self) -> None:
        self.count = 0
        self.idle = asyncio.Event()
        self.idle.set()

    def enter(self) -> None:
        self.count += 1
        if self.count == 1:  # the first of a busy spell: asyncio's clear() is a Python call
            self.idle.clear()

    def leave(self) -> None:
        self.count -= 1
        if self.count == 0:
            self.idle.set()


INFLIGHT: web.AppKey[InFlight] = web.AppKey("inflight", InFlight)
