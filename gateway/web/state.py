"""Typed application state (``web.AppKey``): what handlers may reach."""

from __future__ import annotations

import asyncio

from aiohttp import web

from gateway.intake import Intake
from gateway.web.ratelimit import TokenBucket

INTAKE: web.AppKey[Intake] = web.AppKey("intake", Intake)
BUCKETS: web.AppKey[dict[str, TokenBucket]] = web.AppKey("buckets", dict)
DRAINING: web.AppKey[asyncio.Event] = web.AppKey("draining", asyncio.Event)
