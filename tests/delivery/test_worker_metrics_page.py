"""The delivery worker's ``/metrics`` (``app.worker.metrics_app``) renders its page in a thread,
as the gateway's does: the page lists every advertiser's series, and the worker's event loop
goes on delivering meanwhile."""

from __future__ import annotations

import asyncio
import threading

import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry, Counter, generate_latest

from gateway.app import worker
from gateway.delivery.memqueue import MemoryQueue
from gateway.storage.memory import MemoryStore


async def test_the_page_is_rendered_while_the_event_loop_runs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The rendering waits for a callback it hands the event loop: on the loop itself, the
    callback could not run, and the scrape would fail."""
    registry = CollectorRegistry()
    Counter("deliveries", "deliveries made", registry=registry).inc()
    loop = asyncio.get_running_loop()
    turned = threading.Event()

    def render_after_a_turn(rendered: CollectorRegistry) -> bytes:
        loop.call_soon_threadsafe(turned.set)
        assert turned.wait(5), "the event loop did not run while the page was rendered"
        return generate_latest(rendered)

    monkeypatch.setattr("gateway.app.worker.generate_latest", render_after_a_turn)
    app = worker.metrics_app(registry, MemoryQueue(MemoryStore()))
    async with TestClient(TestServer(app)) as client, asyncio.timeout(30):
        response = await client.get("/metrics")
        assert response.status == 200
        assert "deliveries_total 1.0" in await response.text()
