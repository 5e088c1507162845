"""``leadgate``: serve, demo, check-config, hash-key."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from pathlib import Path

from aiohttp import web

from gateway import __version__
from gateway.app.runtime import (
    ConfigReloader,
    Settings,
    build_intake,
    load_settings,
    settle_heap,
    start_logging,
)
from gateway.app.service import build_worker, open_queue
from gateway.cli import deliveries as delivery_cli
from gateway.cli import rules as rules_cli
from gateway.config.check import check_config, hash_api_key, new_api_key
from gateway.config.model import Config
from gateway.decision.intake import Intake
from gateway.delivery.worker import Worker
from gateway.errors import ConfigError
from gateway.privacy import erasure, suppression
from gateway.quality import report
from gateway.types import PartnerId
from gateway.web.admin import Admin, add_admin_routes
from gateway.web.app import create_admin_app, create_app
from gateway.web.state import BUCKETS, DRAINING, INFLIGHT

LOG = logging.getLogger("leadgate")
EXAMPLE_CONFIG = Path(__file__).resolve().parents[2] / "examples" / "leadgate.yaml"


def _install_uvloop() -> None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency except on Windows
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


async def serve(
    config_path: str | None,
    host: str | None,
    port: int | None,
    drain_s: float,
    *,
    reload_poll_s: float = 5.0,
    reuse_port: bool = False,
    with_worker: bool = False,
) -> int:
    settings = load_settings(os.environ, config_path)
    env = settings.environment
    start_logging(settings, os.environ)
    intake = await build_intake(settings)
    app = create_app(intake)
    worker = _in_process_worker(settings, intake, with_worker)
    reloader = ConfigReloader(intake, settings.config_path)
    admin = None
    if env.admin_token:
        queue = worker.queue if worker is not None else open_queue(settings, intake.engine.store)
        admin = Admin(intake, queue, env.admin_token, reloader)
        if worker is None:
            app.on_cleanup.append(lambda _: queue.close())
    admin_app = None
    if admin is not None and env.admin_port is not None:
        # Its own listener: the admin API is then unreachable through the public port.
        admin_app = create_admin_app(intake, admin)
    else:
        add_admin_routes(app, admin)
    # access_log=None: aiohttp's access log writes client IPs and full request lines (query
    # strings can hold emails); the decision log replaces it.
    # The drain below waits for in-flight requests itself; aiohttp's own shutdown then only
    # closes what is left, briefly.
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=0.5)
    await runner.setup()
    listen_host = host or env.host
    listen_port = port if port is not None else env.port
    site = web.TCPSite(
        runner, listen_host, listen_port, backlog=4096, reuse_port=reuse_port or None
    )
    admin_runner = None
    if admin_app is not None:
        admin_runner = web.AppRunner(admin_app, access_log=None, handle_signals=False)
        await admin_runner.setup()
        await web.TCPSite(
            admin_runner,
            env.admin_host or listen_host,
            env.admin_port,
            reuse_port=reuse_port or None,
        ).start()
    settle_heap(intake.config)
    await site.start()
    if worker is not None:
        await worker.start()
    # The partner report's daily counts reach the store every few seconds, off the
    # decision path; what is left is flushed at shutdown.
    ledger_task = asyncio.get_running_loop().create_task(intake.ledger.run())
    LOG.info(
        "serving",
        extra={
            "fields": {
                "version": __version__,
                "listen": f"{listen_host}:{listen_port}",
                "store": intake.engine.store.name,
                "config_checksum": intake.config.checksum,
            }
        },
    )

    def adopt(config: Config) -> None:
        settle_heap(config)
        # A partner whose rate limit changed (or who left) starts again from a full bucket.
        buckets = app[BUCKETS]
        for partner_id in list(buckets):
            partner = config.partners.get(PartnerId(partner_id))
            bucket = buckets[partner_id]
            limit = partner.rate_limit if partner is not None else None
            if limit is None or (limit.per_s, limit.burst) != (bucket.rate_per_s, bucket.burst):
                del buckets[partner_id]

    async def reload_on_signal() -> None:
        config = await reloader.reload(trigger="signal")
        if config is not None:
            adopt(config)

    if admin is not None:
        admin.on_reload = adopt
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    tasks: set[asyncio.Task[None]] = set()

    def on_hangup() -> None:
        task = loop.create_task(reload_on_signal())
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, on_hangup)
    watcher = loop.create_task(reloader.watch(reload_poll_s, adopt)) if reload_poll_s > 0 else None
    await stop.wait()
    # Draining: /readyz turns 503, the listener closes (open connections stay up, so requests
    # still uploading are read to the end and answered), in-flight requests get up to drain_s
    # to finish, then the remaining connections are closed and the process exits 0.
    if watcher is not None:
        watcher.cancel()
    app[DRAINING].set()
    LOG.info("draining", extra={"fields": {"grace_s": drain_s, "in_flight": app[INFLIGHT].count}})
    # The in-process worker stops claiming now and gets the same grace for its in-flight
    # deliveries; one cut short stays pending and is sent again later, same webhook-id.
    stopping = loop.create_task(worker.stop(drain_s)) if worker is not None else None
    await site.stop()
    try:
        async with asyncio.timeout(drain_s):
            await app[INFLIGHT].idle.wait()
    except TimeoutError:
        LOG.warning("drain grace over", extra={"fields": {"in_flight": app[INFLIGHT].count}})
    if stopping is not None:
        await stopping
    ledger_task.cancel()
    await intake.ledger.close()
    await runner.cleanup()
    if admin_runner is not None:
        await admin_runner.cleanup()
    LOG.info("stopped")
    return 0


def _in_process_worker(settings: Settings, intake: Intake, wanted: bool) -> Worker | None:
    """The delivery worker inside this process: asked for with ``--with-worker``, and always
    on the embedded store when an advertiser has an endpoint (its queue lives in this
    process's memory: no separate worker can reach it)."""
    endpoints = any(a.endpoint is not None for a in settings.config.advertisers.values())
    embedded = not settings.environment.redis_url
    if not (wanted or (embedded and endpoints)):
        return None
    try:
        return build_worker(settings, intake.engine.store, intake.observer.delivery, os.environ)
    except ConfigError as error:
        if wanted:
            raise
        # Not asked for (a laptop run of the example config): serve anyway, say why nothing
        # is delivered. Accepted leads wait in memory.
        LOG.error(
            "delivery worker not started: %s",
            "; ".join(str(issue) for issue in error.issues),
        )
        return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="leadgate", description=__doc__)
    parser.add_argument("--version", action="version", version=f"leadgate {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p_serve = sub.add_parser("serve", help="run the gateway")
    p_serve.add_argument("--config", help="config file (default: $LEADGATE_CONFIG)")
    p_serve.add_argument("--host", help="listen address (default: $LEADGATE_HOST or 127.0.0.1)")
    p_serve.add_argument("--port", type=int, help="listen port (default: $LEADGATE_PORT or 8080)")
    p_serve.add_argument(
        "--drain-s", type=float, default=10.0,
        help="on SIGTERM, how long in-flight requests may take to finish (default 10)",
    )  # fmt: skip
    p_serve.add_argument(
        "--workers", type=int, default=1,
        help="serving processes sharing the port (SO_REUSEPORT) under a supervisor (default 1)",
    )  # fmt: skip
    p_serve.add_argument(
        "--reload-poll-s", type=float, default=5.0,
        help="reload the config when its checksum changes, checked this often; 0: only on "
        "SIGHUP (default 5)",
    )  # fmt: skip
    p_serve.add_argument(
        "--with-worker", action="store_true",
        help="also run the delivery worker in this process (always on with the embedded "
        "store when an advertiser has an endpoint)",
    )  # fmt: skip
    p_serve.add_argument(
        "--reuse-port", action="store_true",
        help="bind with SO_REUSEPORT (set for each process under --workers)",
    )  # fmt: skip

    p_demo = sub.add_parser("demo", help="run the gateway on its embedded store and post leads")
    p_demo.add_argument("--config", default=str(EXAMPLE_CONFIG))
    p_demo.add_argument("--port", type=int, default=0, help="port (default: a free one)")
    p_demo.add_argument(
        "--keep-running", action="store_true", help="keep serving after the demo (Ctrl-C stops)"
    )

    p_check = sub.add_parser("check-config", help="validate a config file, report every error")
    p_check.add_argument("file")

    p_hash = sub.add_parser("hash-key", help="hash an API key for the config (or make a new one)")
    p_hash.add_argument("key", nargs="?", help="the key; omitted: generate a new one")

    suppression.register(sub)
    erasure.register(sub)
    report.register(sub)
    rules_cli.add_parser(sub)
    delivery_cli.register(sub)

    args = parser.parse_args(argv)
    if args.command == "check-config":
        return check_config(args.file, sys.stdout)
    if args.command == "rules":
        return rules_cli.run(args, sys.stdout)
    if args.command == "hash-key":
        key = args.key or new_api_key()
        if not args.key:
            print(f"key:  {key}")
        print(f"hash: {hash_api_key(key)}")
        return 0
    _install_uvloop()
    try:
        if args.command == "suppress":
            return asyncio.run(suppression.run(args, os.environ, sys.stdout))
        if args.command == "erase":
            return asyncio.run(erasure.run(args, os.environ, sys.stdout))
        if args.command == "report":
            return asyncio.run(report.run(args, os.environ, sys.stdout))
        if (done := delivery_cli.dispatch(args)) is not None:
            return done
        if args.command == "serve" and args.workers != 1:
            from gateway.app.supervisor import supervise

            return supervise(args, os.environ)
        if args.command == "serve":
            return asyncio.run(
                serve(
                    args.config,
                    args.host,
                    args.port,
                    args.drain_s,
                    reload_poll_s=args.reload_poll_s,
                    reuse_port=args.reuse_port,
                    with_worker=args.with_worker,
                )
            )
        from gateway.app.demo import run_demo

        return asyncio.run(run_demo(args.config, args.port, args.keep_running))
    except ConfigError as error:
        print("leadgate: configuration error:", file=sys.stderr)
        for issue in error.issues:
            print(f"  {issue}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
