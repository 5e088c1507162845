"""Per-endpoint protection: the token bucket and the breaker as state machines, then through
the transport against a real CRM (throttled and breaker-held deliveries are HELD: no request,
no attempt consumed)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest
import pytest_asyncio

from delivery.crm import CRM, Reply
from delivery.records import ADVERTISER, LOOPBACK, SECRET, SECRET_ENV, config_with, delivery
from delivery.records import webhook_endpoint as endpoint
from gateway.config.delivery import BreakerSettings, DeliverySettings, Endpoint, EndpointRateLimit
from gateway.delivery.model import Outcome
from gateway.delivery.protect import Breaker, BreakerState, TokenBucket
from gateway.delivery.transport import EndpointClient, Transport
from gateway.types import AdvertiserId

# --- token bucket ------------------------------------------------------------------------


def test_the_bucket_lets_a_burst_through_then_the_rate() -> None:
    bucket = TokenBucket(EndpointRateLimit(per_s=2, burst=3), now=0.0)
    assert [bucket.reserve(0.0, max_wait_s=0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.reserve(0.0, max_wait_s=0) is None  # nothing taken
    assert bucket.wait_s(0.0) == pytest.approx(0.5)
    assert bucket.reserve(0.5, max_wait_s=0) == 0.0
    assert bucket.reserve(0.5, max_wait_s=0) is None


def test_reservations_queue_up_in_order_and_never_exceed_the_rate() -> None:
    bucket = TokenBucket(EndpointRateLimit(per_s=10, burst=1), now=0.0)
    waits = [bucket.reserve(0.0, max_wait_s=1.0) for _ in range(5)]
    assert waits == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4])
    assert bucket.reserve(0.0, max_wait_s=0.45) is None  # would wait 0.5 s


def test_an_idle_bucket_saves_up_only_its_burst() -> None:
    bucket = TokenBucket(EndpointRateLimit(per_s=1, burst=2), now=0.0)
    assert bucket.reserve(3600.0, 0) == 0.0
    assert bucket.reserve(3600.0, 0) == 0.0
    assert bucket.reserve(3600.0, 0) is None


# --- breaker -----------------------------------------------------------------------------

SETTINGS = BreakerSettings(
    failure_rate=0.5, window_s=10.0, min_requests=4, open_s=30.0, half_open_probes=2
)


def state(breaker: Breaker) -> BreakerState:
    return breaker.state  # a call: mypy would keep the state narrowed between asserts


def feed(breaker: Breaker, failures: list[bool], at: float = 0.0) -> None:
    for failed in failures:
        assert breaker.allow(at)
        breaker.record(failed, at)


def test_the_breaker_needs_enough_requests_before_judging() -> None:
    breaker = Breaker(SETTINGS)
    feed(breaker, [True, True, True])
    assert breaker.state is BreakerState.CLOSED


def test_the_breaker_opens_at_the_failure_rate_and_holds() -> None:
    breaker = Breaker(SETTINGS)
    feed(breaker, [False, True, False, True])
    assert breaker.state is BreakerState.OPEN
    assert not breaker.allow(29.0)
    assert breaker.retry_in_s(20.0) == pytest.approx(10.0)


def test_old_outcomes_leave_the_window() -> None:
    breaker = Breaker(SETTINGS)
    feed(breaker, [True, True, True], at=0.0)
    feed(breaker, [False, False, False, True], at=11.0)  # the first three are 11 s old
    assert breaker.state is BreakerState.CLOSED


def test_half_open_probes_close_the_breaker_when_they_all_succeed() -> None:
    breaker = Breaker(SETTINGS)
    feed(breaker, [True] * 4)
    assert breaker.allow(30.0)
    assert breaker.allow(30.0)
    assert state(breaker) is BreakerState.HALF_OPEN
    assert not breaker.allow(30.0)  # only two probes at a time
    breaker.record(False, 30.1)
    assert state(breaker) is BreakerState.HALF_OPEN  # one probe of two back
    breaker.record(False, 30.2)
    assert state(breaker) is BreakerState.CLOSED
    feed(breaker, [True] * 3, at=31.0)  # a fresh window: three failures are not enough
    assert breaker.state is BreakerState.CLOSED


def test_a_failed_probe_reopens_the_breaker() -> None:
    breaker = Breaker(SETTINGS)
    feed(breaker, [True] * 4)
    assert breaker.allow(30.0)
    breaker.record(True, 30.5)
    assert breaker.state is BreakerState.OPEN
    assert not breaker.allow(60.0)
    assert breaker.allow(60.5)


def test_a_probe_not_sent_is_given_back() -> None:
    breaker = Breaker(SETTINGS)
    feed(breaker, [True] * 4)
    assert breaker.allow(30.0)
    assert breaker.allow(30.0)
    breaker.release()
    assert breaker.allow(30.0)


# --- through the transport ---------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


Make = Callable[[Endpoint, DeliverySettings], EndpointClient]


@pytest_asyncio.fixture
async def clock_and_make() -> AsyncIterator[tuple[Clock, Make]]:
    clock = Clock()
    made: list[Transport] = []

    def make(ep: Endpoint, settings: DeliverySettings) -> EndpointClient:
        transport = Transport(config_with(ep, settings), {SECRET_ENV: SECRET}, clock=clock)
        made.append(transport)
        client = transport.client(ADVERTISER)
        assert client is not None
        return client

    yield clock, make
    for transport in made:
        await transport.close()


NO_WAIT = DeliverySettings(allow_networks=LOOPBACK, max_queue_wait_s=0.0)


async def test_a_throttled_delivery_is_held_without_a_request(
    crm: CRM, clock_and_make: tuple[Clock, Make]
) -> None:
    clock, make = clock_and_make
    client = make(endpoint(crm.url(), rate_limit=EndpointRateLimit(per_s=0.5, burst=1)), NO_WAIT)
    assert (await client.send(delivery())).outcome is Outcome.DELIVERED
    held = await client.send(delivery())
    assert (held.outcome, held.status, held.detail) == (Outcome.HELD, None, "rate limited")
    assert held.retry_after_s == pytest.approx(2.0)
    assert len(crm.requests) == 1
    clock.now += 2.0
    assert (await client.send(delivery())).outcome is Outcome.DELIVERED


async def test_a_short_wait_for_a_token_is_waited_out(
    crm: CRM, clock_and_make: tuple[Clock, Make]
) -> None:
    _, make = clock_and_make
    settings = DeliverySettings(allow_networks=LOOPBACK, max_queue_wait_s=1.0)
    client = make(endpoint(crm.url(), rate_limit=EndpointRateLimit(per_s=20, burst=1)), settings)
    results = [await client.send(delivery()) for _ in range(3)]
    assert [r.outcome for r in results] == [Outcome.DELIVERED] * 3


async def test_the_concurrency_limit_holds_what_does_not_fit(
    crm: CRM, clock_and_make: tuple[Clock, Make]
) -> None:
    _, make = clock_and_make
    crm.answer("/hook", Reply.hang())
    settings = DeliverySettings(allow_networks=LOOPBACK, max_queue_wait_s=0.05)
    client = make(endpoint(crm.url(), concurrency=2, timeout_s=5.0), settings)
    in_flight = [asyncio.create_task(client.send(delivery())) for _ in range(2)]
    await crm.wait_for(2)
    held = await client.send(delivery())
    assert (held.outcome, held.detail) == (Outcome.HELD, "concurrency limit reached")
    assert len(crm.requests) == 2
    crm.answer("/hook", Reply.ok())
    await crm.stop()  # releases the hanging handlers: they answer, the slots come back
    results = await asyncio.wait_for(asyncio.gather(*in_flight), 5)
    assert [r.outcome for r in results] == [Outcome.DELIVERED, Outcome.DELIVERED]
    await crm.start()
    assert (await client.send(delivery())).outcome is Outcome.DELIVERED


async def test_the_breaker_opens_holds_probes_and_closes(
    crm: CRM, clock_and_make: tuple[Clock, Make]
) -> None:
    clock, make = clock_and_make
    breaker = BreakerSettings(
        failure_rate=0.5, window_s=60, min_requests=3, open_s=30, half_open_probes=1
    )
    client = make(endpoint(crm.url(), breaker=breaker), NO_WAIT)
    crm.answer("/hook", Reply.error(503))
    assert [(await client.send(delivery())).outcome for _ in range(3)] == [Outcome.RETRY] * 3
    held = await client.send(delivery())
    assert (held.outcome, held.detail, held.retry_after_s) == (
        Outcome.HELD,
        "circuit breaker open",
        30.0,
    )
    assert len(crm.requests) == 3  # held: nothing sent
    clock.now += 30
    crm.answer("/hook", Reply.ok())
    probe = await client.send(delivery())
    assert probe.outcome is Outcome.DELIVERED
    assert client.breaker.state is BreakerState.CLOSED
    assert (await client.send(delivery())).outcome is Outcome.DELIVERED


async def test_breaker_states_are_reported(crm: CRM) -> None:
    states: list[tuple[AdvertiserId, str]] = []

    class Events:
        def attempted(self, advertiser: AdvertiserId, outcome: Outcome, duration_s: float) -> None:
            pass

        def dead_lettered(self, advertiser: AdvertiserId, reason: str) -> None:
            pass

        def queue_state(
            self, advertiser: AdvertiserId, depth: int, oldest_age_s: float, dead_letters: int
        ) -> None:
            pass

        def breaker_state(self, advertiser: AdvertiserId, state: str) -> None:
            states.append((advertiser, state))

    clock = Clock()
    breaker = BreakerSettings(min_requests=1, failure_rate=1.0, open_s=10)
    transport = Transport(
        config_with(endpoint(crm.url(), breaker=breaker), NO_WAIT),
        {SECRET_ENV: SECRET},
        Events(),
        clock=clock,
    )
    try:
        client = transport.client(ADVERTISER)
        assert client is not None
        crm.script("/hook", [Reply.error(500), Reply.error(500)])
        await client.send(delivery())  # opens
        clock.now += 10
        await client.send(delivery())  # half-open probe fails: open again
        clock.now += 10
        await client.send(delivery())  # probe succeeds: closed
    finally:
        await transport.close()
    assert [s for _, s in states] == ["open", "half_open", "open", "half_open", "closed"]
