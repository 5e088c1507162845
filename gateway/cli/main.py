"""``leadgate``: the command line. Each command parses its arguments and hands over to the app
(``gateway.app``): serve, serve --workers N, worker, demo, erase, suppress, report,
deliveries, rules, check-config, hash-key."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

from gateway import __version__
from gateway.app.server import ServeOptions, serve
from gateway.app.settings import load_settings, start_logging
from gateway.cli import deliveries, privacy, rules
from gateway.cli import report as report_cli
from gateway.config.check import check_config, hash_api_key, new_api_key
from gateway.errors import ConfigError

EXAMPLE_CONFIG = Path(__file__).resolve().parents[2] / "examples" / "leadgate.yaml"


def _install_uvloop() -> None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency except on Windows
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


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

    privacy.register_suppress(sub)
    privacy.register_erase(sub)
    report_cli.register(sub)
    rules.add_parser(sub)
    deliveries.register(sub)

    args = parser.parse_args(argv)
    if args.command == "check-config":
        return check_config(args.file, sys.stdout, os.environ)
    if args.command == "rules":
        return rules.run(args, sys.stdout)
    if args.command == "hash-key":
        key = args.key or new_api_key()
        if not args.key:
            print(f"key:  {key}")
        print(f"hash: {hash_api_key(key)}")
        return 0
    _install_uvloop()
    try:
        if args.command == "suppress":
            return asyncio.run(privacy.run_suppress(args, os.environ, sys.stdout))
        if args.command == "erase":
            return asyncio.run(privacy.run_erase(args, os.environ, sys.stdout))
        if args.command == "report":
            return asyncio.run(report_cli.run(args, os.environ, sys.stdout))
        if (done := deliveries.dispatch(args)) is not None:
            return done
        if args.command == "serve":
            return _serve(args)
        from gateway.app.demo import run_demo

        return asyncio.run(run_demo(args.config, args.port, args.keep_running))
    except ConfigError as error:
        print("leadgate: configuration error:", file=sys.stderr)
        for issue in error.issues:
            print(f"  {issue}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _serve(args: argparse.Namespace) -> int:
    options = ServeOptions(
        host=args.host,
        port=args.port,
        drain_s=args.drain_s,
        reload_poll_s=args.reload_poll_s,
        reuse_port=args.reuse_port,
        with_worker=args.with_worker,
    )
    if args.workers != 1:
        from gateway.app.supervisor import supervise

        return supervise(args.config, options, args.workers, os.environ)
    settings = load_settings(os.environ, args.config)
    start_logging(settings, os.environ)
    return asyncio.run(serve(settings, options))


if __name__ == "__main__":
    sys.exit(main())
