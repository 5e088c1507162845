"""``create_app``: the one factory used by the CLI, the demo and the tests."""

from __future__ import annotations

import asyncio
import time

from aiohttp import web
from aiohttp.typedefs import Middleware

from gateway.observe.metrics import Observer
from gateway.web import handlers
from gateway.web.admin import Admin, add_admin_routes
from gateway.web.feedback import add_feedback_routes
from gateway.web.problems import Handler, problems_middleware
from gateway.web.state import (
    BUCKETS,
    DRAINING,
    FEEDBACK_DESK,
    INFLIGHT,
    INTAKE,
    OBSERVER,
    STORE,
    InFlight,
    Services,
)

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
    request.app[OBSERVER].request(route, method, status, time.perf_counter() - started)


def create_app(services: Services, admin: Admin | None = None) -> web.Application:
    """The partner-facing listener's app: leads, feedback, health, metrics, the OpenAPI
    document; and the admin API when ``admin`` is given (without a listener of its own)."""
    intake = services.intake
    # Bodies are read (and bounded) by the handlers themselves; aiohttp's own limit only has
    # to be above the largest of ours.
    max_size = max(intake.config.server.batch_max_body_bytes, intake.config.server.max_body_bytes)
    app = web.Application(
        middlewares=[counted_metrics_middleware],
        client_max_size=max_size,
    )
    app[INTAKE] = intake
    app[OBSERVER] = services.observer
    app[STORE] = services.store
    app[FEEDBACK_DESK] = services.feedback_desk
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
    add_admin_routes(app, admin)
    _known_routes(app, services.observer)
    return app


def create_admin_app(observer: Observer, admin: Admin | None) -> web.Application:
    """The admin API alone, for its own listener (``LEADGATE_ADMIN_PORT``); without ``admin``
    (no token) every path answers 404."""
    app = web.Application(middlewares=[metrics_middleware])
    app[OBSERVER] = observer
    add_admin_routes(app, admin)
    _known_routes(app, observer)
    return app


def _known_routes(app: web.Application, observer: Observer) -> None:
    for route in app.router.routes():
        if route.resource is not None:
            observer.route_known(route.resource.canonical, [route.method])
