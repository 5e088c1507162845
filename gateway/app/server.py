"""``leadgate serve``: one serving process's life, from listening to a drained exit.

``serve(settings, options)`` builds the ``App``, opens its store, and runs a ``Server``:

1. **start**: the soft open-file limit raised to the hard one, the public listener bounded by
   ``server.max_connections`` (derived from that limit: ``app.limits``), the metrics listener
   (``LEADGATE_METRICS_PORT``: ``/metrics``, ``/healthz``, ``/readyz``; never on the public
   port) and the admin listener when ``LEADGATE_ADMIN_PORT`` is set, every one with the
   connection deadlines of ``web.connections``; the in-process delivery worker when there is
   one, the ledger's periodic flush, the config watcher; the heap is settled before the first
   request;
2. **serve** until SIGTERM/SIGINT; SIGHUP reloads the config (so do the admin API and a
   changed file);
3. **drain**: ``/readyz`` turns 503, the listener closes (open connections stay up, so
   requests still uploading are read to the end and answered), in-flight requests get up to
   ``drain_s`` to finish, the in-process worker gets the same grace for its deliveries (one
   cut short stays pending and is sent again later, same webhook-id);
4. **stop**: the listeners close, the ledger's last counts are flushed, the store and queue
   close (``App.aclose``); exit 0.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from aiohttp import web

import gateway
from gateway import __version__
from gateway.app.heap import settle_heap
from gateway.app.limits import (
    OPS_CONNECTIONS,
    connection_bound,
    listener_limits,
    raise_open_file_limit,
)
from gateway.app.root import App
from gateway.app.settings import Settings
from gateway.config.model import ServerSettings
from gateway.delivery.worker import Worker
from gateway.errors import ConfigError
from gateway.web.admin import Admin
from gateway.web.app import create_app, create_ops_app
from gateway.web.connections import ConnectionGuard, GuardedSite, Limits
from gateway.web.state import DRAINING, INFLIGHT

LOG = logging.getLogger("leadgate")
#: How often the partner report's daily counts reach the store, off the decision path.
LEDGER_FLUSH_S = 5.0


@dataclass(frozen=True, slots=True)
class ServeOptions:
    """``leadgate serve``'s command-line options (None: the environment's value)."""

    host: str | None = None
    port: int | None = None
    #: On SIGTERM, how long in-flight requests (and deliveries) may take to finish.
    drain_s: float = 10.0
    #: How often the config file's checksum is checked; 0: only on SIGHUP and the admin API.
    reload_poll_s: float = 5.0
    #: SO_REUSEPORT (each process under ``--workers N``).
    reuse_port: bool = False
    #: Also deliver in this process (always on with the embedded store and an endpoint).
    with_worker: bool = False


async def serve(settings: Settings, options: ServeOptions) -> int:
    """Run one serving process until SIGTERM/SIGINT; its exit code. Raises ``ConfigError``
    (a refused Redis, an endpoint secret missing with ``--with-worker``)."""
    async with App(settings) as app:
        return await Server(app, options).run()


class Server:
    """The listeners and tasks of one serving process over ``app``."""

    def __init__(self, app: App, options: ServeOptions) -> None:
        self.app = app
        self.options = options
        self._tasks: set[asyncio.Task[object]] = set()

    async def run(self) -> int:
        app, options, env = self.app, self.options, self.app.settings.environment
        store = await app.open_store()
        worker = self._in_process_worker()
        admin = app.admin_api()
        soft_limit = raise_open_file_limit()
        concurrency = app.config.delivery.worker_concurrency if worker is not None else 0
        public = ConnectionGuard(
            "public",
            self._limits(soft_limit, concurrency),
            app.observer.connections.events("public"),
        )
        own_admin_port = admin is not None and env.admin_port is not None
        draining = asyncio.Event()
        lead_app = create_app(app, None if own_admin_port else admin, draining=draining)
        # The drain waits for in-flight requests itself; aiohttp's own shutdown then only
        # closes what is left.
        runner = web.AppRunner(
            lead_app, access_log=None, handle_signals=False, shutdown_timeout=0.5
        )
        await runner.setup()
        host = options.host or env.host
        port = options.port if options.port is not None else env.port
        reuse = options.reuse_port or None
        site = GuardedSite(runner, public, host, port, backlog=4096, reuse_port=reuse)
        ops_runners = await self._start_ops_listeners(
            admin if own_admin_port else None, draining, host, reuse
        )
        settle_heap(app.config)
        await site.start()
        if worker is not None:
            await worker.start()
        self._spawn(self._flush_ledger())
        LOG.info(
            "serving",
            extra={
                "fields": {
                    "version": __version__,
                    "listen": f"{host}:{site.port}",
                    "metrics": self._metrics_address(host),
                    "max_connections": public.limits().max_connections,
                    "open_file_limit": soft_limit,
                    "store": store.name,
                    "compiled_modules": gateway.COMPILED_MODULES,
                    "config_checksum": app.config.checksum,
                }
            },
        )
        await self._until_stopped()
        await self._drain(lead_app, site, worker)
        for task in self._tasks:
            task.cancel()
        await runner.cleanup()
        for ops_runner in ops_runners:
            await ops_runner.cleanup()
        LOG.info("stopped")
        return 0

    def _limits(self, soft_limit: int, worker_concurrency: int) -> Callable[[], Limits]:
        """The public listener's limits from the config served now (a reload changes them)."""
        served: list[tuple[ServerSettings, Limits]] = []

        def limits() -> Limits:
            server = self.app.config.server
            if not served or served[0][0] is not server:
                bound = connection_bound(server.max_connections, soft_limit, worker_concurrency)
                served[:] = [(server, listener_limits(server, bound))]
            return served[0][1]

        return limits

    async def _start_ops_listeners(
        self, admin: Admin | None, draining: asyncio.Event, host: str, reuse: bool | None
    ) -> list[web.AppRunner]:
        """The admin listener (``LEADGATE_ADMIN_PORT``) and the metrics listener
        (``LEADGATE_METRICS_PORT``: ``/metrics``, ``/healthz``, ``/readyz``); one listener
        when both name the same port. Each with the same deadlines as the public one and its
        own small bound, so a flood of partners' connections never locks ops out."""
        app, env = self.app, self.app.settings.environment
        wanted: dict[int, tuple[str, Admin | None, bool]] = {}
        if admin is not None and env.admin_port is not None:
            wanted[env.admin_port] = (env.admin_host or host, admin, False)
        if env.metrics_port is not None:
            at, admin_there, _ = wanted.get(
                env.metrics_port, (env.metrics_host or host, None, True)
            )
            wanted[env.metrics_port] = (at, admin_there, True)
        runners: list[web.AppRunner] = []
        for port, (at, admin_there, metrics) in wanted.items():
            name = "metrics" if metrics else "admin"
            guard = ConnectionGuard(
                name,
                lambda: listener_limits(self.app.config.server, OPS_CONNECTIONS),
                app.observer.connections.events(name),
            )
            ops = create_ops_app(
                app,
                admin=admin_there,
                metrics=metrics,
                metrics_token=env.metrics_token,
                draining=draining,
            )
            ops_runner = web.AppRunner(ops, access_log=None, handle_signals=False)
            await ops_runner.setup()
            await GuardedSite(ops_runner, guard, at, port, reuse_port=reuse).start()
            runners.append(ops_runner)
        return runners

    def _metrics_address(self, host: str) -> str | None:
        env = self.app.settings.environment
        if env.metrics_port is None:
            return None
        return f"{env.metrics_host or host}:{env.metrics_port}"

    def _spawn(self, work: Coroutine[Any, Any, object]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _flush_ledger(self) -> None:
        await self.app.ledger.run(LEDGER_FLUSH_S)

    async def _until_stopped(self) -> None:
        """Wait for SIGTERM/SIGINT; meanwhile SIGHUP and a changed file reload the config."""
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        reloader = self.app.reloader
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        loop.add_signal_handler(
            signal.SIGHUP, lambda: self._spawn(reloader.reload(trigger="signal"))
        )
        if self.options.reload_poll_s > 0:
            self._spawn(reloader.watch(self.options.reload_poll_s))
        await stop.wait()

    async def _drain(
        self, lead_app: web.Application, site: web.BaseSite, worker: Worker | None
    ) -> None:
        drain_s = self.options.drain_s
        lead_app[DRAINING].set()
        inflight = lead_app[INFLIGHT]
        LOG.info("draining", extra={"fields": {"grace_s": drain_s, "in_flight": inflight.count}})
        stopping = asyncio.ensure_future(worker.stop(drain_s)) if worker is not None else None
        await site.stop()
        try:
            async with asyncio.timeout(drain_s):
                await inflight.idle.wait()
        except TimeoutError:
            LOG.warning("drain grace over", extra={"fields": {"in_flight": inflight.count}})
        if stopping is not None:
            await stopping

    def _in_process_worker(self) -> Worker | None:
        """The delivery worker inside this process: asked for with ``--with-worker``, and
        always on the embedded store when an advertiser has an endpoint (its queue lives in
        this process's memory: no separate worker can reach it)."""
        app = self.app
        endpoints = any(a.endpoint is not None for a in app.config.advertisers.values())
        if not (self.options.with_worker or (app.embedded and endpoints)):
            return None
        try:
            return app.delivery_worker()
        except ConfigError as error:
            if self.options.with_worker:
                raise
            # Not asked for (a laptop run of the example config): serve anyway, say why
            # nothing is delivered. Accepted leads wait in memory.
            LOG.error(
                "delivery worker not started: %s",
                "; ".join(str(issue) for issue in error.issues),
            )
            return None
