"""Assemble a delivery worker (start-up only), for ``leadgate worker`` and in-process use.

In-process, beside the gateway (``leadgate serve`` on one node, the demo)::

    worker = build_worker(settings, intake.engine.store, metrics, os.environ)
    await worker.start()
    ...
    await worker.stop()          # SIGTERM: stop claiming, finish in-flight, close

On the embedded store the worker must share the gateway's ``MemoryStore`` (its streams are in
that process's memory); on Redis it opens its own connections from ``LEADGATE_REDIS_URL``.
"""

from __future__ import annotations

from collections.abc import Mapping

from gateway.app.runtime import Settings
from gateway.delivery.memqueue import MemoryQueue
from gateway.delivery.model import DeliveryEvents
from gateway.delivery.queue import RedisQueue
from gateway.delivery.queue_base import Queue
from gateway.delivery.transport import Transport
from gateway.delivery.worker import Worker
from gateway.errors import ConfigError, ConfigIssue
from gateway.storage.base import Store
from gateway.storage.memory import MemoryStore


def open_queue(settings: Settings, store: Store | None = None) -> Queue:
    """The queue over Redis when ``LEADGATE_REDIS_URL`` is set, else over ``store`` (which
    must then be the gateway's embedded store)."""
    retention_s = settings.config.delivery.dead_letter_retention_s
    url = settings.environment.redis_url
    if url:
        return RedisQueue(url, dead_letter_retention_s=retention_s)
    if isinstance(store, MemoryStore):
        return MemoryQueue(store, dead_letter_retention_s=retention_s)
    raise ConfigError(
        [
            ConfigIssue(
                "LEADGATE_REDIS_URL",
                "a separate worker process needs Redis (the embedded store lives in the "
                "gateway's memory: run the worker in-process with `leadgate serve` instead)",
            )
        ]
    )


def build_worker(
    settings: Settings,
    store: Store | None,
    events: DeliveryEvents,
    environ: Mapping[str, str],
    *,
    consumer: str | None = None,
) -> Worker:
    """A worker owning its queue and transport (both closed by ``stop``). Raises
    ``ConfigError`` when an endpoint's secret is missing, or a separate process has no Redis."""
    transport = Transport(settings.config, environ, events)
    queue = open_queue(settings, store)

    async def close() -> None:
        await transport.close()
        await queue.close()

    return Worker(settings.config, queue, transport, events, consumer=consumer, on_close=close)
