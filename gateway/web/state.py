"""Typed application state (``web.AppKey``): what handlers may reach."""

from __future__ import annotations

import asyncio

from aiohttp import web

from gateway.decision.intake import Intake
from gateway.web.ratelimit import TokenBucket

INTAKE: web.AppKey[Intake] = web.AppKey("intake", Intake)
BUCKETS: web.AppKey[dict[str, TokenBucket]] = web.AppKey("buckets", dict)
DRAINING: web.AppKey[asyncio.Event] = web.AppKey("draining", asyncio.Event)


class InFlight:
    """Requests being handled now, so a drain can wait for the last one to finish."""

    __slots__ = ("count", "idle")

    def __init__(self) -> None:
        self.count = 0
        self.idle = asyncio.Event()
        self.idle.set()

    def enter(self) -> None:
        self.count += 1
        self.idle.clear()

    def leave(self) -> None:
        self.count -= 1
        if self.count == 0:
            self.idle.set()


INFLIGHT: web.AppKey[InFlight] = web.AppKey("inflight", InFlight)
