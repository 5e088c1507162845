"""``leadgate worker``: a delivery worker process on Redis, and its ``/metrics``/``/healthz``.

Its ops listener has the serving process's connection deadlines (``server.head_timeout_s``,
``keepalive_timeout_s``) and the ops listeners' bound (``OPS_CONNECTIONS``), so a client that
trickles or idles cannot hold its scrape port (``web.connections``).

Run as many as the load needs: they share the streams through one consumer group. SIGTERM
stops claiming, lets in-flight deliveries finish within ``delivery.shutdown_grace``, then the
process exits 0.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import signal

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from gateway import __version__
from gateway.app.heap import settle_heap
from gateway.app.limits import OPS_CONNECTIONS, listener_limits
from gateway.app.root import App, refuse_settings, refuse_version
from gateway.app.settings import Settings
from gateway.delivery.metrics import DeliveryMetrics
from gateway.delivery.queue import RedisQueue
from gateway.delivery.queue_base import Queue
from gateway.errors import StoreError
from gateway.observe.connections import ConnectionMetrics
from gateway.web.connections import ConnectionGuard, GuardedSite, phases_middleware

DEFAULT_METRICS_PORT = 9102
LOG = logging.getLogger("leadgate.worker")

#: ``/readyz``'s wait for the queue's Redis, as the gateway's (``web.handlers.readyz``).
READY_TIMEOUT_S = 1.0
#: How long a stopping worker waits for scrapes and probes in flight (as ``serve``'s public
#: listener: aiohttp's default would be 60 s, past any orchestrator's stop grace).
LISTENER_SHUTDOWN_S = 0.5


def metrics_app(
    registry: CollectorRegistry, queue: Queue, token: str | None = None
) -> web.Application:
    """The worker's own small listener: its delivery metrics (behind ``token``, the
    ``LEADGATE_METRICS_TOKEN``, when one is set), liveness and readiness."""

    async def metrics(request: web.Request) -> web.Response:
        if token is not None:
            auth = request.headers.get("Authorization", "")
            given = auth[7:].strip() if auth[:7].lower() == "bearer " else ""
            if not hmac.compare_digest(given.encode(), token.encode()):
                return web.json_response(
                    {"type": "urn:leadgate:problem:unauthorized", "title": "Unauthorized",
                     "status": 401, "detail": "send the metrics token as a bearer token"},
                    status=401,
                    content_type="application/problem+json",
                    headers={"WWW-Authenticate": 'Bearer realm="leadgate-metrics"'},
                )  # fmt: skip
        # Rendered in a thread, as the gateway's page (``web.handlers.metrics``): deliveries
        # go on meanwhile, however many advertisers the page lists.
        response = web.Response(body=await asyncio.to_thread(generate_latest, registry))
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "version": __version__})

    async def readyz(_: web.Request) -> web.Response:
        # Bounded as the gateway's: a probe answers, and a stopping worker never waits on it.
        try:
            async with asyncio.timeout(READY_TIMEOUT_S):
                await queue.ping()
        except (StoreError, TimeoutError):
            return web.json_response({"status": "unavailable"}, status=503)
        return web.json_response({"status": "ready"})

    app = web.Application(middlewares=[phases_middleware])
    app.router.add_get("/metrics", metrics, allow_head=False)
    app.router.add_get("/healthz", healthz, allow_head=False)
    app.router.add_get("/readyz", readyz, allow_head=False)
    return app


async def _check_server(settings: Settings, queue: Queue) -> None:
    """The gateway's start-up refusals, for the Redis the worker delivers from: one older
    than the scripts need (no override), an evicting one (it may drop queued leads) unless
    ``LEADGATE_REDIS_ALLOW_EVICTION``. A Redis not answering yet stops nothing: the worker
    waits for it, as before."""
    if not isinstance(queue, RedisQueue):
        return
    try:
        too_old, problems = await queue.server_checks()
    except StoreError as unreachable:
        LOG.error("redis unreachable at start; delivering once it answers: %s", unreachable)
        return
    refuse_version(too_old)
    refuse_settings(problems, allow_eviction=settings.allow_eviction)


async def run_worker(settings: Settings, metrics_host: str | None, metrics_port: int) -> int:
    """Deliver until SIGTERM/SIGINT; the exit code. Raises ``ConfigError`` without Redis (the
    embedded store lives in the serving process) or when an endpoint's secret is missing."""
    registry = CollectorRegistry()
    async with App(settings) as app:
        worker = app.delivery_worker(DeliveryMetrics(settings.config, registry))
        await _check_server(settings, worker.queue)
        runner: web.AppRunner | None = None
        if metrics_port:
            token = settings.environment.metrics_token
            runner = web.AppRunner(
                metrics_app(registry, worker.queue, token),
                access_log=None,
                shutdown_timeout=LISTENER_SHUTDOWN_S,
            )
            await runner.setup()
            host = metrics_host or settings.environment.host
            guard = ConnectionGuard(
                "metrics",
                lambda: listener_limits(settings.config.server, OPS_CONNECTIONS),
                ConnectionMetrics(registry, ("metrics",)).events("metrics"),
            )
            await GuardedSite(runner, guard, host, metrics_port).start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        settle_heap()
        await worker.start()
        await stop.wait()
        await worker.stop(settings.config.delivery.shutdown_grace_s)
        if runner is not None:
            await runner.cleanup()
    return 0
