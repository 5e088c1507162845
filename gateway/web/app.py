"""``create_app``: the one factory used by the CLI, the demo and the tests."""

from __future__ import annotations

import asyncio
import logging
import time

from aiohttp import web
from aiohttp.typedefs import Middleware

from gateway.observe.metrics import Observer
from gateway.storage.deadline import close_budget, open_budget
from gateway.web import handlers
from gateway.web.admin import Admin, add_admin_routes
from gateway.web.connections import GuardedHandler
from gateway.web.feedback import add_feedback_routes
from gateway.web.problems import Handler, client_gone, problems_middleware, route_path
from gateway.web.ratelimit import AddressLimits, PingPostLimits
from gateway.web.state import (
    ADDRESS_LIMITS,
    BUCKETS,
    DRAINING,
    FEEDBACK_DESK,
    INFLIGHT,
    INTAKE,
    METRICS_TOKEN,
    OBSERVER,
    PING_LIMITS,
    STORE,
    InFlight,
    Services,
)

LOG = logging.getLogger("leadgate.web")
_ROUTED_METHODS = frozenset({"GET", "POST", "DELETE"})


def _metrics(
    observer: Observer, routes: dict[Handler, str], inflight: InFlight | None = None
) -> Middleware:
    """A listener's one middleware (each aiohttp middleware layer costs every request), made
    for its app with what it records to (looked up once, not on every request):

    - the connection's phase (``web.connections``: its head deadline off while the request is
      handled, its idle deadline on once answered);
    - the request's store deadline (``storage.deadline``);
    - errors answered as problem+json (``problems_middleware``);
    - the request's latency and count by route, method and status, to ``observer``; a client
      that closed the connection before its answer counts as ``499``, logged at info: its
      leaving is not a server error;
    - ``inflight`` (the lead listener's): the request in flight (what a drain waits for).

    The route is the matched route's canonical path (``/v1/leads``), or ``unmatched`` (404,
    405): never the raw path, which is request input. ``routes``: the canonical path of each
    handler that serves one route (``_known_routes``, filled once the app's routes are
    added), read instead of the request's match (four property calls in aiohttp)."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        protocol = request.protocol
        guarded = protocol if isinstance(protocol, GuardedHandler) else None
        if guarded is not None:
            guarded.request_started()
        if inflight is not None:
            inflight.enter()
        budget = open_budget()
        started = time.perf_counter()
        status = 500
        closing = False
        try:
            try:
                response = await problems_middleware(request, handler)
            except ConnectionResetError:
                response = web.Response(status=400)  # never sent: nobody is there
            status = response.status
            closing = response.keep_alive is False
            if status == 408 and guarded is not None:
                guarded.body_timed_out()
            if client_gone(request):
                status = 499
                LOG.info(
                    "client closed the connection before its answer",
                    extra={"fields": {"route": route_path(request) or "unmatched"}},
                )
            return response
        except web.HTTPException as http:
            status = http.status
            raise
        finally:
            close_budget(budget)
            if inflight is not None:
                inflight.leave()
            if guarded is not None:
                guarded.request_finished(closing=closing)
            route = routes.get(handler)
            if route is None:  # not matched (404, 405), or a route added after the app's own
                resource = request.match_info.route.resource
                route = resource.canonical if resource is not None else "unmatched"
            method = request.method
            observer.request(
                route,
                method if method in _ROUTED_METHODS else "other",
                status,
                time.perf_counter() - started,
            )

    return middleware


def create_app(
    services: Services, admin: Admin | None = None, *, draining: asyncio.Event | None = None
) -> web.Application:
    """The partner-facing listener's app: leads, feedback, health, the OpenAPI document; and
    the admin API when ``admin`` is given (without a listener of its own). Never ``/metrics``:
    it tells every partner's volumes (``create_ops_app`` serves it). ``draining``: shared
    with the ops listener's ``/readyz``."""
    intake = services.intake
    # Bodies are read (and bounded) by the handlers themselves; aiohttp's own limit only has
    # to be above the largest of ours.
    max_size = max(intake.config.server.batch_max_body_bytes, intake.config.server.max_body_bytes)
    routes: dict[Handler, str] = {}
    inflight = InFlight()
    app = web.Application(
        middlewares=[_metrics(services.observer, routes, inflight)],
        client_max_size=max_size,
    )
    app[INTAKE] = intake
    app[OBSERVER] = services.observer
    app[STORE] = services.store
    app[FEEDBACK_DESK] = services.feedback_desk
    app[INFLIGHT] = inflight
    app[BUCKETS] = {}
    app[ADDRESS_LIMITS] = AddressLimits()
    app[PING_LIMITS] = PingPostLimits()
    app[DRAINING] = draining if draining is not None else asyncio.Event()
    app.router.add_post("/v1/leads", handlers.post_lead)
    app.router.add_get("/v1/leads", handlers.get_lead, allow_head=False)
    app.router.add_post("/v1/leads/batch", handlers.post_batch)
    app.router.add_post("/v1/leads/check", handlers.post_check)
    app.router.add_post("/v1/ping", handlers.post_ping)
    app.router.add_get("/healthz", handlers.healthz, allow_head=False)
    app.router.add_get("/readyz", handlers.readyz, allow_head=False)
    app.router.add_get("/openapi.json", handlers.openapi, allow_head=False)
    add_feedback_routes(app)
    add_admin_routes(app, admin)
    routes.update(_known_routes(app, services.observer))
    return app


def create_ops_app(
    services: Services,
    *,
    admin: Admin | None = None,
    metrics: bool = True,
    metrics_token: str | None = None,
    draining: asyncio.Event | None = None,
) -> web.Application:
    """An ops listener's app (``LEADGATE_METRICS_PORT``, ``LEADGATE_ADMIN_PORT``, or both on
    one port): with ``metrics``, ``/metrics`` (behind ``metrics_token`` when given) and the
    probes ``/healthz`` and ``/readyz``; with ``admin``, the admin API. Without either (an
    admin port and no token), every path answers 404."""
    routes: dict[Handler, str] = {}
    app = web.Application(middlewares=[_metrics(services.observer, routes)])
    app[OBSERVER] = services.observer
    if metrics:
        app[INTAKE] = services.intake
        app[STORE] = services.store
        app[DRAINING] = draining if draining is not None else asyncio.Event()
        app[METRICS_TOKEN] = metrics_token
        app.router.add_get("/metrics", handlers.metrics, allow_head=False)
        app.router.add_get("/healthz", handlers.healthz, allow_head=False)
        app.router.add_get("/readyz", handlers.readyz, allow_head=False)
    add_admin_routes(app, admin)
    routes.update(_known_routes(app, services.observer))
    return app


def _known_routes(app: web.Application, observer: Observer) -> dict[Handler, str]:
    """Tell ``observer`` the app's routes (their series exist before their first request);
    the canonical path of each handler that serves one path (the middleware's ``routes``)."""
    paths: dict[Handler, set[str]] = {}
    for route in app.router.routes():
        if route.resource is not None:
            path = route.resource.canonical
            observer.route_known(path, [route.method])
            paths.setdefault(route.handler, set()).add(path)
    return {handler: path for handler, (path, *more) in paths.items() if not more}
