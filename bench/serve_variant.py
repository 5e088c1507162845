"""``python -m bench.serve_variant PORT with|without``: the gateway as ``leadgate serve`` runs
it (same config, store, app), with its metrics, or with every metric recording removed (the
request middleware replaced by the problem+json one it calls, an observer whose recording
methods do nothing). Only for ``python -m bench.metrics_cost``: both variants go through this
same runner, so the only difference measured is the metrics.

The lead app's request middleware (its one: ``gateway.web.app._metrics``) also counts the requests
in flight, in the same layer; replacing it, the "without" variant skips that count too (a
drain would wait for nothing). Irrelevant to the bench, which never drains; the count is a few
operations a request, which the measured cost of the metrics then includes.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Sequence

from aiohttp import web

from gateway.app.heap import settle_heap
from gateway.app.root import App
from gateway.app.settings import load_settings
from gateway.cli.main import _install_uvloop
from gateway.config.model import Partner
from gateway.decision.answer import Answer
from gateway.errors import RequestError
from gateway.observe.logs import configure_logging
from gateway.observe.metrics import Observer
from gateway.web import handlers
from gateway.web.app import create_app
from gateway.web.problems import problems_middleware
from gateway.web.state import METRICS_TOKEN


class SilentObserver(Observer):
    """Records nothing: the cost of the metrics taken out of the hot path."""

    def decided(
        self,
        partner: Partner,
        answers: Sequence[Answer | RequestError],
        elapsed_s: float,
        now_s: float = 0.0,
    ) -> None:
        return None

    def request(self, route: str, method: str, status: int, elapsed_s: float) -> None:
        return None

    def redis_round_trip(self, elapsed_s: float, error: str | None) -> None:
        return None


async def run(port: int, with_metrics: bool) -> None:
    settings = load_settings(os.environ, None)
    configure_logging(settings.environment.log_level)
    observer = (
        Observer(settings.config, multiprocess_dir=settings.metrics_dir)
        if with_metrics
        else SilentObserver(settings.config)
    )
    gateway = App(settings, observer=observer)
    await gateway.open_store()
    app = create_app(gateway)
    # /metrics on the same port, for the bench's own scrapes (`leadgate serve` serves it on
    # its metrics listener only): a bench server is never partner-facing.
    app[METRICS_TOKEN] = None
    app.router.add_get("/metrics", handlers.metrics, allow_head=False)
    if not with_metrics:
        # The lead app's one middleware also answers errors as problem+json: that part stays.
        if len(app.middlewares) != 1:
            raise RuntimeError("the lead app has one middleware, the recording one")
        app.middlewares[0] = problems_middleware
    runner = web.AppRunner(app, access_log=None, handle_signals=True)
    await runner.setup()
    settle_heap(gateway.config)  # as `leadgate serve` does before it listens
    await web.TCPSite(runner, "127.0.0.1", port, backlog=4096).start()
    await asyncio.Event().wait()


def main() -> int:
    port, variant = int(sys.argv[1]), sys.argv[2]
    if variant not in ("with", "without"):
        print("usage: python -m bench.serve_variant PORT with|without", file=sys.stderr)
        return 2
    _install_uvloop()
    try:
        asyncio.run(run(port, variant == "with"))
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
