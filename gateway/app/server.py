"""``leadgate serve``: one serving process's life, from listening to a drained exit.

``serve(settings, options)`` builds the ``App``, opens its store, and runs a ``Server``:

1. **start**: the lead listener (and the admin listener when ``LEADGATE_ADMIN_PORT`` is set),
   the in-process delivery worker when there is one, the ledger's periodic flush, the config
   watcher; the heap is settled before the first request;
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
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from gateway import __version__
from gateway.app.heap import settle_heap
from gateway.app.root import App
from gateway.app.settings import Settings
from gateway.delivery.worker import Worker
from gateway.errors import ConfigError
from gateway.web.app import create_admin_app, create_app
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
        own_admin_port = admin is not None and env.admin_port is not None
        lead_app = create_app(app, None if own_admin_port else admin)
        # access_log=None: aiohttp's access log writes client IPs and full request lines
        # (query strings can hold emails); the decision log replaces it. The drain waits for
        # in-flight requests itself; aiohttp's own shutdown then only closes what is left.
        runner = web.AppRunner(
            lead_app, access_log=None, handle_signals=False, shutdown_timeout=0.5
        )
        await runner.setup()
        host = options.host or env.host
        port = options.port if options.port is not None else env.port
        reuse = options.reuse_port or None
        site = web.TCPSite(runner, host, port, backlog=4096, reuse_port=reuse)
        admin_runner = None
        if admin is not None and env.admin_port is not None:
            # Its own listener: the admin API is then unreachable through the public port.
            admin_runner = web.AppRunner(
                create_admin_app(app.observer, admin), access_log=None, handle_signals=False
            )
            await admin_runner.setup()
            await web.TCPSite(
                admin_runner, env.admin_host or host, env.admin_port, reuse_port=reuse
            ).start()
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
                    "listen": f"{host}:{port}",
                    "store": store.name,
                    "config_checksum": app.config.checksum,
                }
            },
        )
        await self._until_stopped()
        await self._drain(lead_app, site, worker)
        for task in self._tasks:
            task.cancel()
        await runner.cleanup()
        if admin_runner is not None:
            await admin_runner.cleanup()
        LOG.info("stopped")
        return 0

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
        self, lead_app: web.Application, site: web.TCPSite, worker: Worker | None
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
