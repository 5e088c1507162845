"""``leadgate worker``: a delivery worker process on Redis, and its ``/metrics``/``/healthz``.

Run as many as the load needs: they share the streams through one consumer group. SIGTERM
stops claiming, lets in-flight deliveries finish within ``delivery.shutdown_grace``, then the
process exits 0.
"""

from __future__ import annotations

import asyncio
import signal

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from gateway import __version__
from gateway.app.heap import settle_heap
from gateway.app.root import App
from gateway.app.settings import Settings
from gateway.delivery.metrics import DeliveryMetrics
from gateway.delivery.queue_base import Queue
from gateway.errors import StoreError

DEFAULT_METRICS_PORT = 9102


def metrics_app(registry: CollectorRegistry, queue: Queue) -> web.Application:
    """The worker's own small listener: its delivery metrics, liveness and readiness."""

    async def metrics(_: web.Request) -> web.Response:
        response = web.Response(body=generate_latest(registry))
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "version": __version__})

    async def readyz(_: web.Request) -> web.Response:
        try:
            await queue.ping()
        except StoreError:
            return web.json_response({"status": "unavailable"}, status=503)
        return web.json_response({"status": "ready"})

    app = web.Application()
    app.router.add_get("/metrics", metrics, allow_head=False)
    app.router.add_get("/healthz", healthz, allow_head=False)
    app.router.add_get("/readyz", readyz, allow_head=False)
    return app


async def run_worker(settings: Settings, metrics_host: str | None, metrics_port: int) -> int:
    """Deliver until SIGTERM/SIGINT; the exit code. Raises ``ConfigError`` without Redis (the
    embedded store lives in the serving process) or when an endpoint's secret is missing."""
    registry = CollectorRegistry()
    async with App(settings) as app:
        worker = app.delivery_worker(DeliveryMetrics(settings.config, registry))
        runner: web.AppRunner | None = None
        if metrics_port:
            runner = web.AppRunner(metrics_app(registry, worker.queue), access_log=None)
            await runner.setup()
            host = metrics_host or settings.environment.host
            await web.TCPSite(runner, host, metrics_port).start()
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
