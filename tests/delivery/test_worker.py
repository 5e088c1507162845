"""The worker against a real local CRM, the real transport and both queues: the schedule is
honoured, HELD attempts are free, 410 disables, advertisers do not slow each other, and a stop
is graceful."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from prometheus_client import CollectorRegistry
from standardwebhooks import Webhook
from support import ADVERTISER

from delivery.crm import CRM, Reply
from delivery.harness import OTHER, Harness, harnesses
from delivery.records import LOOPBACK, SECRET, SECRET_ENV, webhook_endpoint
from gateway.config.delivery import BreakerSettings, DeliverySettings
from gateway.config.model import Advertiser, Config, ServerSettings
from gateway.delivery.memqueue import MemoryQueue
from gateway.delivery.metrics import DeliveryMetrics
from gateway.delivery.queue import RedisQueue
from gateway.delivery.queue_base import Claimed, Queue, Source, new_entry
from gateway.delivery.transport import Transport
from gateway.delivery.worker import Buffer, Worker
from gateway.storage.memory import MemoryStore
from gateway.types import AdvertiserId

FAST = DeliverySettings(
    retry_schedule_s=(0.0, 0.2, 0.4),
    jitter=0.0,
    request_timeout_s=1.0,
    max_queue_wait_s=0.2,
    reclaim_idle_s=1.5,
    allow_networks=LOOPBACK,
    shutdown_grace_s=2.0,
)
ENV = {SECRET_ENV: SECRET}
NEVER_OPENS = BreakerSettings(min_requests=1_000_000)
#: The worker only sees the queue contract (tested over both stores in test_queue.py): the
#: slower scenarios run on Redis only, the production queue.
REDIS_ONLY = pytest.mark.parametrize("rig", ["redis"], indirect=True)


class Rig:
    """A harness (store + queue), a CRM, and workers built on them; all stopped at the end."""

    def __init__(self, h: Harness, crm: CRM) -> None:
        self.h = h
        self.crm = crm
        self.registry = CollectorRegistry()
        self.metrics: DeliveryMetrics | None = None
        self.workers: list[Worker] = []

    def config(self, settings: DeliverySettings, **endpoint: Any) -> Config:
        advertisers = {
            a: Advertiser(a, a, webhook_endpoint(self.crm.url(f"/{a}"), **endpoint))
            for a in (ADVERTISER, OTHER)
        }
        return Config(
            server=ServerSettings(),
            channels={},
            advertisers=advertisers,
            campaigns={},
            partners={},
            delivery=settings,
        )

    async def worker(self, settings: DeliverySettings = FAST, **endpoint: Any) -> Worker:
        config = self.config(settings, **endpoint)
        if self.metrics is None:
            self.metrics = DeliveryMetrics(config, self.registry)
        transport = Transport(config, ENV, self.metrics)
        worker = Worker(
            config,
            self.h.queue,
            transport,
            self.metrics,
            on_close=transport.close,
            read_block_ms=50,
        )
        self.workers.append(worker)
        await worker.start()
        return worker

    def count(self, name: str, **labels: str) -> float:
        return self.registry.get_sample_value(name, labels) or 0.0

    async def wait_empty(self, timeout_s: float = 5.0, *advertisers: AdvertiserId) -> None:
        """Until every lead of ``advertisers`` (default: both) is settled."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            states = [await self.h.queue.state(a) for a in advertisers or (ADVERTISER, OTHER)]
            if all(s.depth == 0 for s in states):
                return
            await asyncio.sleep(0.02)
        pytest.fail(f"queue not empty after {timeout_s}s: {states}")


@pytest_asyncio.fixture(params=["embedded", "redis"])
async def rig(request: pytest.FixtureRequest, crm: CRM) -> AsyncIterator[Rig]:
    async for made in harnesses(request.param, request):
        made_rig = Rig(await made.make(), crm)
        try:
            yield made_rig
        finally:
            for worker in made_rig.workers:
                await worker.stop(0)


async def test_every_lead_reaches_its_crm_signed_once_and_leaves_the_queue(rig: Rig) -> None:
    acme = await rig.h.accept(20)
    nova = await rig.h.accept(5, advertiser=OTHER)
    await rig.worker()
    got = await rig.crm.wait_for(25)
    await rig.wait_empty()
    assert sorted(r.headers["webhook-id"] for r in rig.crm.on("/acme")) == sorted(acme)
    assert sorted(r.headers["webhook-id"] for r in rig.crm.on("/novabank")) == sorted(nova)
    for received in got:
        assert received.headers["idempotency-key"] == received.headers["webhook-id"]
        Webhook(SECRET).verify(received.body, received.headers)  # raises when not signed right
    assert (
        rig.count("leadgate_delivery_attempts_total", advertiser="acme", outcome="delivered") == 20
    )
    await asyncio.sleep(0.1)
    assert len(rig.crm.requests) == 25  # nothing delivered twice


async def test_the_retry_schedule_is_honoured(rig: Rig) -> None:
    rig.crm.script("/acme", [Reply.error(500), Reply.error(503)])
    (lead,) = await rig.h.accept(1)
    await rig.worker()
    tries = await rig.crm.wait_for(3, path="/acme")
    await rig.wait_empty()
    assert {r.headers["webhook-id"] for r in tries} == {lead}  # the same id on every attempt
    gaps = [b.at - a.at for a, b in itertools.pairwise(tries)]
    # Waits of 0.2 s then 0.4 s (no jitter): never shorter (the promoter may add a tick).
    assert gaps[0] >= 0.2
    assert gaps[1] >= 0.4
    assert await rig.h.queue.dead_letters(ADVERTISER) == []


@REDIS_ONLY
async def test_retry_after_lengthens_the_wait(rig: Rig) -> None:
    rig.crm.script("/acme", [Reply.throttle(1)])
    await rig.h.accept(1)
    await rig.worker()
    first, second = await rig.crm.wait_for(2, path="/acme", timeout_s=5)
    assert second.at - first.at >= 1.0  # the schedule says 0.2 s; the CRM asked for 1 s


@REDIS_ONLY
async def test_exhausted_attempts_go_to_dead_letters_with_the_last_response(rig: Rig) -> None:
    rig.crm.answer("/acme", Reply.error(503))
    (lead,) = await rig.h.accept(1)
    await rig.worker()
    await rig.crm.wait_for(3, path="/acme")
    await rig.wait_empty()
    (dead,) = await rig.h.queue.dead_letters(ADVERTISER)
    assert (dead.lead_id, dead.reason, dead.attempts) == (lead, "attempts_exhausted", 3)
    assert dead.last.status == 503
    assert dead.last.detail == "HTTP 503"
    assert dead.last.excerpt == '{"status":"error"}'
    reason = {"advertiser": "acme", "reason": "attempts_exhausted"}
    assert rig.count("leadgate_delivery_dead_letters_total", **reason) == 1


@REDIS_ONLY
async def test_a_refused_lead_is_dead_lettered_at_once(rig: Rig) -> None:
    rig.crm.answer("/acme", Reply.error(422))
    await rig.h.accept(1)
    await rig.worker()
    await rig.crm.wait_for(1, path="/acme")
    await rig.wait_empty()
    (dead,) = await rig.h.queue.dead_letters(ADVERTISER)
    assert (dead.reason, dead.last.status, dead.attempts) == ("rejected_by_advertiser", 422, 1)
    assert len(rig.crm.on("/acme")) == 1


@REDIS_ONLY
async def test_held_attempts_do_not_consume_the_schedule(rig: Rig) -> None:
    # Two attempts only. The first fails and opens the breaker for 0.5 s: the retry, due
    # after 0.05 s, is held (not sent) until a half-open probe may go. If holding counted as
    # an attempt the lead would be dead-lettered; it must be delivered by the probe.
    settings = dataclasses.replace(FAST, retry_schedule_s=(0.0, 0.05))
    breaker = BreakerSettings(failure_rate=1.0, window_s=10, min_requests=1, open_s=0.5)
    rig.crm.script("/acme", [Reply.error(500)])
    (lead,) = await rig.h.accept(1)
    await rig.worker(settings, breaker=breaker)
    tries = await rig.crm.wait_for(2, path="/acme", timeout_s=5)
    await rig.wait_empty()
    assert [r.headers["webhook-id"] for r in tries] == [lead, lead]
    assert tries[1].at - tries[0].at >= 0.5
    assert await rig.h.queue.dead_letters(ADVERTISER) == []
    assert rig.count("leadgate_delivery_attempts_total", advertiser="acme", outcome="held") >= 1


async def test_410_disables_the_endpoint_until_it_is_enabled(rig: Rig) -> None:
    rig.crm.script("/acme", [Reply.gone()])
    first = await rig.h.accept(1)
    worker = await rig.worker()
    await rig.crm.wait_for(1, path="/acme")
    deadline = time.monotonic() + 5
    while not await rig.h.queue.disabled(ADVERTISER):
        assert time.monotonic() < deadline, "the 410 did not disable the endpoint"
        await asyncio.sleep(0.01)
    later = await rig.h.accept(3)
    await asyncio.sleep(0.3)
    assert len(rig.crm.on("/acme")) == 1  # nothing more is sent while disabled
    assert await rig.h.queue.disabled(ADVERTISER)
    assert (await rig.h.queue.state(ADVERTISER)).depth == 4  # all kept, none dead-lettered
    assert rig.count("leadgate_delivery_breaker_state", advertiser="acme", state="disabled") == 1
    assert await rig.h.queue.enable(ADVERTISER)
    await rig.crm.wait_for(5, path="/acme")
    await rig.wait_empty()
    ids = [r.headers["webhook-id"] for r in rig.crm.on("/acme")]
    assert sorted(ids[1:]) == sorted(first + later)
    assert await rig.h.queue.dead_letters(ADVERTISER) == []
    assert worker.lanes[ADVERTISER].disabled is False


async def test_a_hanging_crm_does_not_slow_the_other_advertiser(rig: Rig) -> None:
    rig.crm.answer("/acme", Reply.hang())
    await rig.h.accept(40)
    nova = await rig.h.accept(40, advertiser=OTHER)
    settings = dataclasses.replace(FAST, request_timeout_s=5.0, reclaim_idle_s=10.0)
    await rig.worker(settings, concurrency=4)
    got = await rig.crm.wait_for(40, path="/novabank", timeout_s=4)
    assert sorted(r.headers["webhook-id"] for r in got) == sorted(nova)
    await rig.wait_empty(5.0, OTHER)
    # Meanwhile acme holds only its own 4 slots, all still hanging.
    assert len(rig.crm.on("/acme")) == 4
    assert (await rig.h.queue.state(ADVERTISER)).depth == 40


@REDIS_ONLY
async def test_a_stop_finishes_in_flight_deliveries(rig: Rig) -> None:
    rig.crm.answer("/acme", Reply.slow(0.4))
    await rig.h.accept(5)
    worker = await rig.worker()
    await rig.crm.wait_for(5, path="/acme")
    await worker.stop(3.0)
    assert (await rig.h.queue.state(ADVERTISER)).depth == 0  # all five settled, none left
    assert len(rig.crm.on("/acme")) == 5


async def test_an_attempt_cut_by_shutdown_is_redelivered_with_the_same_id(rig: Rig) -> None:
    rig.crm.script("/acme", [Reply.hang()])
    (lead,) = await rig.h.accept(1)
    settings = dataclasses.replace(FAST, reclaim_idle_s=0.6, request_timeout_s=5.0)
    first = await rig.worker(settings)
    await rig.crm.wait_for(1, path="/acme")
    await first.stop(0.1)  # the grace runs out: the request is cut, the lead stays pending
    assert (await rig.h.queue.state(ADVERTISER)).depth == 1
    await rig.worker(settings)  # another worker takes it over after the idle time
    tries = await rig.crm.wait_for(2, path="/acme", timeout_s=5)
    await rig.wait_empty()
    assert [r.headers["webhook-id"] for r in tries] == [lead, lead]


@REDIS_ONLY
async def test_queue_state_is_reported(rig: Rig) -> None:
    rig.crm.answer("/acme", Reply.error(500))
    await rig.h.accept(3)
    worker = await rig.worker(dataclasses.replace(FAST, retry_schedule_s=(0.0, 60.0)))
    await rig.crm.wait_for(3, path="/acme")
    await asyncio.sleep(0.1)
    await worker.report()
    assert rig.count("leadgate_delivery_queue_depth", advertiser="acme") == 3
    assert rig.count("leadgate_delivery_oldest_undelivered_age_seconds", advertiser="acme") > 0
    assert rig.count("leadgate_delivery_queue_depth", advertiser="novabank") == 0


@REDIS_ONLY
async def test_first_attempts_are_not_behind_this_advertisers_retries(rig: Rig) -> None:
    # 24 leads fail at once and all come due for a retry 0.5 s later, when the CRM has become
    # slow (0.2 s per answer, 4 at a time): a backlog of 23 due retries. A lead accepted then
    # is read beside them, not after them (a single FIFO would make it request #49).
    rig.crm.answer("/acme", Reply.error(500))
    await rig.h.accept(24)
    settings = dataclasses.replace(FAST, retry_schedule_s=(0.0, 0.5, 60.0))
    await rig.worker(settings, concurrency=4, breaker=NEVER_OPENS)
    await rig.crm.wait_for(24, path="/acme", timeout_s=5)
    rig.crm.answer("/acme", Reply(status=500, body=b"{}", delay_s=0.2))
    await rig.crm.wait_for(25, path="/acme", timeout_s=5)
    (fresh,) = await rig.h.accept(1)
    await rig.crm.wait_for(49, path="/acme", timeout_s=8)
    order = [r.headers["webhook-id"] for r in rig.crm.on("/acme")]
    assert order.index(fresh) < 36


@REDIS_ONLY
async def test_worker_concurrency_bounds_the_requests_of_all_advertisers_together(
    rig: Rig,
) -> None:
    rig.crm.answer("/acme", Reply.hang())
    rig.crm.answer("/novabank", Reply.hang())
    await rig.h.accept(10)
    await rig.h.accept(10, advertiser=OTHER)
    settings = dataclasses.replace(
        FAST, worker_concurrency=3, request_timeout_s=5.0, reclaim_idle_s=10.0
    )
    worker = await rig.worker(settings, concurrency=4)
    await rig.crm.wait_for(3, timeout_s=3)
    await asyncio.sleep(0.3)
    assert len(rig.crm.requests) == 3  # not 3 per advertiser: the worker-wide limit holds
    await worker.stop(0.1)
    for advertiser in (ADVERTISER, OTHER):  # cut, not lost: every lead is still queued
        assert (await rig.h.queue.state(advertiser)).depth == 10


def test_the_buffer_takes_new_leads_and_due_retries_in_turn() -> None:
    def lead(n: int, source: Source) -> Claimed:
        one = new_entry(ADVERTISER, f"{n}-0", f"lead-{n}", 0, b"{}")
        return dataclasses.replace(one, source=source)

    buffer = Buffer()
    for n in range(5):
        buffer.put(lead(n, Source.DUE))
    buffer.put(lead(10, Source.NEW))
    buffer.put(lead(11, Source.NEW))
    buffer.put(lead(9, Source.DUE), first=True)  # a reclaimed lead goes to the head
    taken = [buffer.take().delivery.lead_id for _ in range(len(buffer))]
    # A new lead behind five retries is second, not sixth; a line left alone is drained.
    assert taken == [
        "lead-10",
        "lead-9",
        "lead-11",
        "lead-0",
        "lead-1",
        "lead-2",
        "lead-3",
        "lead-4",
    ]
    with pytest.raises(IndexError):
        buffer.take()


async def test_retention_holds_for_an_advertiser_no_lane_delivers_to(rig: Rig) -> None:
    """Leads of an advertiser without an endpoint expire into dead letters after
    ``max_lead_age``, and the dead letters leave after ``dead_letter_retention``: the worker's
    timer does both, with no other traffic to trigger it."""
    settings = dataclasses.replace(FAST, max_lead_age_s=0.3, dead_letter_retention_s=0.6)
    config = rig.config(settings)
    config = dataclasses.replace(
        config,
        advertisers={**config.advertisers, OTHER: Advertiser(OTHER, OTHER, None)},
    )
    metrics = DeliveryMetrics(config, rig.registry)
    transport = Transport(config, ENV, metrics)
    # The queue as the process builds it: with the configured retention.
    queue: Queue
    if rig.h.redis_url is None:
        assert isinstance(rig.h.store, MemoryStore)
        queue = MemoryQueue(rig.h.store, dead_letter_retention_s=0.6)
    else:
        queue = RedisQueue(rig.h.redis_url, dead_letter_retention_s=0.6)
    ids = await rig.h.accept(2, advertiser=OTHER)
    worker = Worker(config, queue, transport, metrics, on_close=transport.close)
    rig.workers.append(worker)
    try:
        await worker.start()
        assert worker.retention_every_s == pytest.approx(0.15)

        deadline = time.monotonic() + 10
        while sorted(d.lead_id for d in await queue.dead_letters(OTHER)) != sorted(ids):
            assert time.monotonic() < deadline, "undelivered leads outlived max_lead_age"
            await asyncio.sleep(0.02)
        assert {d.reason for d in await queue.dead_letters(OTHER)} == {"expired"}
        assert (await queue.state(OTHER)).depth == 0
        # Counted once the worker has the script's answer: the dead letters (written by the
        # script) can be seen a moment before.
        expired = {"advertiser": "novabank", "reason": "expired"}
        while rig.count("leadgate_delivery_dead_letters_total", **expired) < 2:
            assert time.monotonic() < deadline, "the expired leads were not counted"
            await asyncio.sleep(0.02)
        assert rig.count("leadgate_delivery_dead_letters_total", **expired) == 2

        while await queue.dead_letters(OTHER):
            assert time.monotonic() < deadline, "dead letters outlived their retention"
            await asyncio.sleep(0.02)
    finally:
        await worker.stop(0)
        rig.workers.remove(worker)
        await queue.close()


class _HangingReads:
    """A queue whose reads never come back (a store that stopped answering mid-command)."""

    def __init__(self, queue: Queue) -> None:
        self._queue = queue
        self.reads = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._queue, name)

    async def read(self, *args: Any, **kwargs: Any) -> list[Claimed]:
        self.reads += 1
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


@REDIS_ONLY
async def test_a_stop_ends_even_when_a_read_never_returns(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    config = rig.config(FAST)
    metrics = DeliveryMetrics(config, CollectorRegistry())
    transport = Transport(config, ENV, metrics)
    hanging = _HangingReads(rig.h.queue)
    worker = Worker(
        config,
        hanging,
        transport,
        metrics,
        on_close=transport.close,
        read_block_ms=50,
        loops_stop_s=0.5,
    )
    await worker.start()
    for _ in range(200):  # both lanes' readers are inside a read
        if hanging.reads >= 2:
            break
        await asyncio.sleep(0.01)
    assert hanging.reads >= 2

    with caplog.at_level("WARNING", logger="leadgate.delivery"):
        await asyncio.wait_for(worker.stop(0), timeout=30)

    assert any("readers are cancelled" in r.getMessage() for r in caplog.records)
