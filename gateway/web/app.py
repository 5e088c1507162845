"""``create_app``: the one factory used by the CLI, the demo and the tests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

from aiohttp import web
from aiohttp.typedefs import Middleware

from gateway.decision.intake import Intake
from gateway.web import handlers
from gateway.web.admin import Admin, add_admin_routes
from gateway.web.feedback import add_feedback_routes
from gateway.web.problems import Handler, problems_middleware
from gateway.web.state import BUCKETS, DRAINING, INFLIGHT, INTAKE, InFlight

_ROUTED_METHODS = frozenset({"GET", "POST", "DELETE"})


def _metrics(counted: bool) -> Middleware:
    """A listener's one middleware: errors answered as problem+json (``problems_middleware``,
    called in the same layer: each aiohttp middleware layer costs every request), then the
    request's latency and count by route and method; ``counted``: also the request counted in
    flight (what a drain waits for). The route is the matched route's canonical path
    (``/v1/leads``), or ``unmatched`` (404, 405): never the raw path, which is request input."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        inflight = request.app[INFLIGHT] if counted else None
        if inflight is not None:
            inflight.enter()
        started = time.perf_counter()
        status = 500
        try:
            response = await problems_middleware(request, handler)
            status = response.status
            return response
        except web.HTTPException as http:
            status = http.status
            raise
        finally:
            if inflight is not None:
                inflight.leave()
            _observe(request, status, started)

    return middleware


#: The admin listener's middleware.
metrics_middleware = _metrics(counted=False)
#: The lead listener's: its requests are what a drain waits for.
counted_metrics_middleware = _metrics(counted=True)


def _observe(request: web.Request, status: int, started: float) -> None:
    resource = request.match_info.route.resource
    route = resource.canonical if resource is not None else "unmatched"
    method = request.method if request.method in _ROUTED_METHODS else "other"
    request.app[INTAKE].observer.request(route, method, status, time.perf_counter() - started)


def create_app(intake: Intake) -> web.Application:
    # Bodies are read (and bounded) by the handlers themselves; aiohttp's own limit only has
    # to be above the largest of ours.
    max_size = max(intake.config.server.batch_max_body_bytes, intake.config.server.max_body_bytes)
    app = web.Application(
        middlewares=[counted_metrics_middleware],
        client_max_size=max_size,
    )
    app[INTAKE] = intake
    app[INFLIGHT] = InFlight()
    app[BUCKETS] = {}
    app[DRAINING] = asyncio.Event()
    app.router.add_post("/v1/leads", handlers.post_lead)
    app.router.add_get("/v1/leads", handlers.get_lead, allow_head=False)
    app.router.add_post("/v1/leads/batch", handlers.post_batch)
    app.router.add_get("/healthz", handlers.healthz, allow_head=False)
    app.router.add_get("/readyz", handlers.readyz, allow_head=False)
    app.router.add_get("/metrics", handlers.metrics, allow_head=False)
    app.router.add_get("/openapi.json", handlers.openapi, allow_head=False)
    add_feedback_routes(app)
    for route in app.router.routes():
        if route.resource is not None:
            intake.observer.route_known(route.resource.canonical, [route.method])
    app.cleanup_ctx.append(_store_lifecycle)
    return app


def create_admin_app(intake: Intake, admin: Admin) -> web.Application:
    """The admin API alone, for its own listener (``LEADGATE_ADMIN_PORT``)."""
    app = web.Application(middlewares=[metrics_middleware])
    app[INTAKE] = intake
    add_admin_routes(app, admin)
    for route in app.router.routes():
        if route.resource is not None:
            intake.observer.route_known(route.resource.canonical, [route.method])
    return app


async def _store_lifecycle(app: web.Application) -> AsyncIterator[None]:
    yield
    await app[INTAKE].engine.store.close()
