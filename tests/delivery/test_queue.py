"""The delivery-queue contract, over the embedded store and a real Redis (same tests)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import orjson
import pytest
import pytest_asyncio
from support import ADVERTISER, plain_client

from delivery.harness import OTHER, Harness, Harnesses, harnesses, now_ms
from gateway.delivery.queue import RedisQueue
from gateway.delivery.queue_base import Claimed, LastResponse, Source
from gateway.storage import keys

A, B = "worker-a", "worker-b"
HTTP_503 = LastResponse(503, "HTTP 503", "upstream down")


@pytest_asyncio.fixture(params=["embedded", "redis", "cluster"])
async def make(request: pytest.FixtureRequest) -> AsyncIterator[Harnesses]:
    async for made in harnesses(request.param, request):
        yield made


@pytest_asyncio.fixture
async def h(make: Harnesses) -> Harness:
    made = await make.make()
    await made.queue.prepare([ADVERTISER, OTHER])
    return made


async def read_all(h: Harness, consumer: str = A, count: int = 100) -> list[Claimed]:
    return await h.queue.read(ADVERTISER, consumer, count, 0)


async def test_leads_accepted_before_the_first_worker_are_read(make: Harnesses) -> None:
    h = await make.make()
    ids = await h.accept(3)
    await h.queue.prepare([ADVERTISER])  # the group starts at id 0: nothing is skipped
    got = await read_all(h)
    assert [c.delivery.lead_id for c in got] == ids
    first = got[0]
    assert first.source is Source.NEW
    assert first.delivery.attempt == 1
    assert orjson.loads(first.delivery.record)["lead_id"] == ids[0]
    assert first.delivery.advertiser == ADVERTISER


async def test_delivered_means_gone(h: Harness) -> None:
    await h.accept(2)
    got = await read_all(h)
    assert [await h.queue.delivered(c) for c in got] == [True, True]
    assert await read_all(h) == []
    state = await h.queue.state(ADVERTISER)
    assert (state.depth, state.oldest_accepted_at_ms) == (0, None)
    if h.redis_url is not None:
        client = plain_client(h.redis_url)
        try:
            assert await client.xlen(keys.deliveries(ADVERTISER)) == 0
            assert await client.xpending(keys.deliveries(ADVERTISER), "leadgate") == {
                "pending": 0, "min": None, "max": None, "consumers": []
            }  # fmt: skip
        finally:
            await client.aclose()


async def test_a_read_lead_is_pending_for_its_reader_only(h: Harness) -> None:
    await h.accept(1)
    assert len(await read_all(h, A)) == 1
    assert await read_all(h, B) == []
    state = await h.queue.state(ADVERTISER)
    assert state.depth == 1
    assert state.oldest_accepted_at_ms is not None


async def test_a_retry_waits_in_the_delayed_set_until_promoted(h: Harness) -> None:
    (lead,) = await h.accept(1)
    (c,) = await read_all(h)
    now = now_ms()
    assert await h.queue.later(c, now + 60_000, 2, HTTP_503)
    assert await read_all(h) == []
    assert await h.queue.promote(ADVERTISER, now, 100) == 0  # not due yet
    state = await h.queue.state(ADVERTISER)
    assert (state.depth, state.delayed) == (1, 1)
    assert state.oldest_accepted_at_ms == c.delivery.accepted_at_ms
    assert await h.queue.promote(ADVERTISER, now + 60_000, 100) == 1
    assert await h.queue.promote(ADVERTISER, now + 60_000, 100) == 0  # moved once
    (again,) = await read_all(h)
    assert again.source is Source.DUE
    assert again.delivery.lead_id == lead
    assert again.delivery.attempt == 2
    assert again.delivery.record == c.delivery.record
    assert again.delivery.accepted_at_ms == c.delivery.accepted_at_ms
    assert again.last == HTTP_503
    assert await h.queue.delivered(again)
    assert (await h.queue.state(ADVERTISER)).depth == 0


async def test_first_attempts_progress_beside_a_retry_backlog(h: Harness) -> None:
    await h.accept(30)
    now = now_ms()
    for c in await read_all(h):
        assert await h.queue.later(c, now, 2, HTTP_503)
    assert await h.queue.promote(ADVERTISER, now, 1000) == 30
    (fresh,) = await h.accept(1)
    got = await h.queue.read(ADVERTISER, A, 1, 0)
    # One read takes from both streams: the new lead is not behind the 30 retries.
    assert {c.source for c in got} == {Source.NEW, Source.DUE}
    assert [c.delivery.lead_id for c in got if c.source is Source.NEW] == [fresh]


async def test_advertisers_have_separate_queues(h: Harness) -> None:
    await h.accept(5)
    (other,) = await h.accept(1, advertiser=OTHER)
    got = await h.queue.read(OTHER, A, 100, 0)
    assert [c.delivery.lead_id for c in got] == [other]
    assert got[0].delivery.advertiser == OTHER
    assert len(await read_all(h)) == 5


async def test_deliveries_finishing_together_each_get_their_own_answer(h: Harness) -> None:
    # Acknowledgements are batched (on Redis, those finishing while one is on its way go
    # together in the next): each caller still learns whether its own lead was settled.
    await h.accept(30)
    got = await read_all(h)
    answers = await asyncio.gather(*(h.queue.delivered(c) for c in [*got, *got[:5]]))
    assert answers == [True] * 30 + [False] * 5
    assert await read_all(h) == []
    assert (await h.queue.state(ADVERTISER)).depth == 0


async def test_acks_finishing_during_a_round_trip_share_the_next_one(h: Harness) -> None:
    if h.kind != "redis" or h.redis_url is None:
        pytest.skip("one Redis to pause; the embedded queue settles without round trips")
    assert isinstance(h.queue, RedisQueue)
    await h.accept(42)
    warm, first, *rest = await read_all(h)
    assert await h.queue.delivered(warm)  # the scripts are loaded: one round trip per call
    pipe = h.queue._pipe  # its round trips are what batching saves
    before = pipe.round_trips
    client = plain_client(h.redis_url)
    try:
        # Redis holds scripts for a while: the first acknowledgement stays on its way while
        # the others finish, one per turn of the event loop.
        await client.execute_command("CLIENT", "PAUSE", 300, "WRITE")
        settling = [asyncio.ensure_future(h.queue.delivered(first))]
        for claimed in rest:
            await asyncio.sleep(0)
            settling.append(asyncio.ensure_future(h.queue.delivered(claimed)))
        assert await asyncio.gather(*settling) == [True] * 41
    finally:
        await client.aclose()
    assert pipe.round_trips - before == 2
    assert await read_all(h) == []


async def test_close_lands_the_acknowledgements_on_their_way(make: Harnesses) -> None:
    h = await make.make()
    await h.queue.prepare([ADVERTISER])
    await h.accept(10)
    got = await read_all(h)
    settling = [asyncio.ensure_future(h.queue.delivered(c)) for c in got]
    await asyncio.sleep(0)
    await h.queue.close()
    assert [await s for s in settling] == [True] * 10
    if h.redis_url is not None:
        client = plain_client(h.redis_url)
        try:
            assert await client.xlen(keys.deliveries(ADVERTISER)) == 0
        finally:
            await client.aclose()


async def test_settling_twice_changes_nothing_the_second_time(h: Harness) -> None:
    await h.accept(1)
    (c,) = await read_all(h)
    assert await h.queue.later(c, now_ms(), 2, HTTP_503)
    assert not await h.queue.later(c, now_ms(), 2, HTTP_503)
    assert not await h.queue.delivered(c)
    assert not await h.queue.dead(c, "expired", HTTP_503, now_ms())
    assert await h.queue.promote(ADVERTISER, now_ms(), 100) == 1
    assert len(await read_all(h)) == 1
    assert await h.queue.dead_letters(ADVERTISER) == []


async def test_dead_letters_keep_the_last_response_and_can_be_replayed_once(h: Harness) -> None:
    (lead,) = await h.accept(1)
    (c,) = await read_all(h)
    before = now_ms()
    assert await h.queue.dead(c, "attempts_exhausted", HTTP_503, before)
    assert await read_all(h) == []
    (dead,) = await h.queue.dead_letters(ADVERTISER)
    assert (dead.lead_id, dead.reason, dead.attempts) == (lead, "attempts_exhausted", 1)
    assert dead.last == HTTP_503
    assert dead.record == c.delivery.record
    assert dead.dead_at_ms >= before
    assert dead.accepted_at_ms == c.delivery.accepted_at_ms
    assert dead.summary() == {
        "campaign": "acme-always-on",
        "partner": "p-mailfox",
        "channel": "email",
    }
    state = await h.queue.state(ADVERTISER)
    assert (state.depth, state.dead_letters) == (0, 1)
    assert await h.queue.dead_letters(ADVERTISER, since_ms=now_ms() + 1000) == []

    replayed_at = now_ms()
    moved = await asyncio.gather(
        h.queue.replay(ADVERTISER, [dead], replayed_at),
        h.queue.replay(ADVERTISER, [dead], replayed_at),
    )
    assert sorted(moved) == [0, 1]
    (again,) = await read_all(h)
    assert again.delivery.lead_id == lead
    assert again.delivery.attempt == 1
    assert again.delivery.accepted_at_ms == c.delivery.accepted_at_ms
    assert again.age_base_ms == replayed_at  # the maximum age counts from the replay
    assert again.last == HTTP_503
    assert await h.queue.dead_letters(ADVERTISER) == []


async def test_dead_letters_older_than_the_retention_are_trimmed(make: Harnesses) -> None:
    h = await make.make(retention_s=0.05)
    await h.queue.prepare([ADVERTISER])
    await h.accept(2)
    first, second = await read_all(h)
    assert await h.queue.dead(first, "expired", LastResponse(), now_ms())
    await asyncio.sleep(0.1)  # the first one is now past the 50 ms retention
    assert await h.queue.dead(second, "expired", LastResponse(), now_ms())
    remaining = await h.queue.dead_letters(ADVERTISER)
    assert [d.lead_id for d in remaining] == [second.delivery.lead_id]


async def test_a_dead_workers_leads_are_reclaimed_then_dead_lettered_if_they_keep_crashing(
    h: Harness,
) -> None:
    (lead,) = await h.accept(1)
    (c,) = await read_all(h, A)
    assert c.deliveries == 1
    found = await h.queue.reclaim(ADVERTISER, B, 60_000, 3)
    assert found.claimed == []
    assert found.crashing == []
    await asyncio.sleep(0.02)
    found = await h.queue.reclaim(ADVERTISER, B, 10, 3)
    assert [x.delivery.lead_id for x in found.claimed] == [lead]
    assert found.claimed[0].deliveries == 2
    assert found.claimed[0].delivery.record == c.delivery.record
    await asyncio.sleep(0.02)
    found = await h.queue.reclaim(ADVERTISER, A, 10, 3)
    assert found.claimed[0].deliveries == 3
    await asyncio.sleep(0.02)
    found = await h.queue.reclaim(ADVERTISER, B, 10, 3)
    assert found.claimed == []
    assert [x.deliveries for x in found.crashing] == [4]
    # The crashing one is settled by whoever holds it now.
    assert await h.queue.dead(found.crashing[0], "worker_crashes", LastResponse(), now_ms())
    assert [d.reason for d in await h.queue.dead_letters(ADVERTISER)] == ["worker_crashes"]


async def test_a_reclaimed_retry_keeps_its_attempt_and_last_response(h: Harness) -> None:
    await h.accept(1)
    (c,) = await read_all(h, A)
    assert await h.queue.later(c, now_ms(), 4, HTTP_503)
    await h.queue.promote(ADVERTISER, now_ms(), 10)
    (due,) = await read_all(h, A)
    await asyncio.sleep(0.02)
    found = await h.queue.reclaim(ADVERTISER, B, 10, 5)
    (back,) = found.claimed
    assert back.source is Source.DUE
    assert back.delivery.attempt == 4
    assert back.last == HTTP_503
    # Either holder may settle it, once.
    assert await h.queue.delivered(due)
    assert not await h.queue.delivered(back)


async def test_touch_keeps_a_live_workers_lead_from_being_reclaimed(h: Harness) -> None:
    await h.accept(1)
    (c,) = await read_all(h, A)
    for _ in range(3):
        await asyncio.sleep(0.06)
        await h.queue.touch(ADVERTISER, A, [c])
        found = await h.queue.reclaim(ADVERTISER, B, 100, 5)
        assert found.claimed == []
        assert found.crashing == []
    await asyncio.sleep(0.12)
    found = await h.queue.reclaim(ADVERTISER, B, 100, 5)
    assert len(found.claimed) == 1
    assert found.claimed[0].deliveries == 2


async def test_disable_and_enable(h: Harness) -> None:
    assert not await h.queue.disabled(ADVERTISER)
    await h.queue.disable(ADVERTISER, "HTTP 410: endpoint gone", now_ms())
    assert await h.queue.disabled(ADVERTISER)
    assert not await h.queue.disabled(OTHER)
    assert (await h.queue.state(ADVERTISER)).disabled
    assert await h.queue.enable(ADVERTISER)
    assert not await h.queue.enable(ADVERTISER)
    assert not await h.queue.disabled(ADVERTISER)


async def test_a_blocking_read_returns_a_lead_accepted_while_it_waits(h: Harness) -> None:
    reader = asyncio.create_task(h.queue.read(ADVERTISER, A, 10, 2000))
    await asyncio.sleep(0.05)
    (lead,) = await h.accept(1)
    got = await asyncio.wait_for(reader, 5)
    assert [c.delivery.lead_id for c in got] == [lead]


async def test_an_unreadable_entry_is_flagged_not_fatal(request: pytest.FixtureRequest) -> None:
    async for made in harnesses("redis", request):
        h = await made.make()
        await h.queue.prepare([ADVERTISER])
        assert h.redis_url is not None
        client = plain_client(h.redis_url)
        try:
            await client.xadd(keys.deliveries(ADVERTISER), {"junk": "1"})
        finally:
            await client.aclose()
        (lead,) = await h.accept(1)
        bad, good = await read_all(h)
        assert bad.invalid
        assert not good.invalid
        assert good.delivery.lead_id == lead
        assert await h.queue.dead(bad, "invalid_record", LastResponse(), now_ms())


# --- retention: nothing with a lead in it outlives its rule (docs/delivery.md, "Retention") ---


async def test_trim_removes_dead_letters_past_the_retention_with_no_newer_one(
    make: Harnesses,
) -> None:
    h = await make.make(retention_s=60.0)
    await h.queue.prepare([ADVERTISER])
    await h.accept(2)
    for claimed in await read_all(h):
        assert await h.queue.dead(claimed, "expired", LastResponse(), now_ms())
    assert await h.queue.trim(ADVERTISER, now_ms()) == 0
    assert len(await h.queue.dead_letters(ADVERTISER)) == 2
    # A minute later, with no new dead letter to trim them on its way in:
    assert await h.queue.trim(ADVERTISER, now_ms() + 61_000) == 2
    assert await h.queue.dead_letters(ADVERTISER) == []
    assert (await h.queue.state(ADVERTISER)).dead_letters == 0


async def test_the_dead_letter_stream_expires_by_itself_with_no_worker_left(
    request: pytest.FixtureRequest,
) -> None:
    """Redis removes the dead-letter stream when its newest entry passes the retention, even
    if no process is left to trim it."""
    async for made in harnesses("redis", request):
        h = await made.make(retention_s=0.5)
        await h.queue.prepare([ADVERTISER])
        await h.accept(1)
        (claimed,) = await read_all(h)
        assert await h.queue.dead(claimed, "expired", LastResponse(), now_ms())
        assert h.redis_url is not None
        client = plain_client(h.redis_url)
        try:
            ttl_ms = await client.pttl(keys.delivery_dead(ADVERTISER))
            assert 0 < ttl_ms <= 500
            deadline = asyncio.get_running_loop().time() + 5.0
            while await client.exists(keys.delivery_dead(ADVERTISER)):
                assert asyncio.get_running_loop().time() < deadline, "the stream outlived its TTL"
                await asyncio.sleep(0.05)
        finally:
            await client.aclose()


async def test_trim_keeps_the_streams_ttl_on_its_newest_dead_letter(
    request: pytest.FixtureRequest,
) -> None:
    async for made in harnesses("redis", request):
        h = await made.make(retention_s=60.0)
        await h.queue.prepare([ADVERTISER])
        await h.accept(1)
        (claimed,) = await read_all(h)
        dead_at = now_ms()
        assert await h.queue.dead(claimed, "expired", LastResponse(), dead_at)
        assert h.redis_url is not None
        client = plain_client(h.redis_url)
        try:
            await client.persist(keys.delivery_dead(ADVERTISER))  # as a restore would leave it
            assert await h.queue.trim(ADVERTISER, dead_at + 30_000) == 0
            ttl_ms = await client.pttl(keys.delivery_dead(ADVERTISER))
            assert 0 < ttl_ms <= 30_000 + 1_000  # the newest entry's remaining half, ± clocks
        finally:
            await client.aclose()


async def test_expire_dead_letters_undelivered_leads_past_the_maximum_age_wherever_they_are(
    h: Harness,
) -> None:
    """For advertisers no worker delivers to: new, pending, delayed and due leads past the
    maximum age become ``expired`` dead letters; younger ones stay."""
    due, pending, delayed, new = await h.accept(4)
    claims = {c.delivery.lead_id: c for c in await read_all(h, count=3)}
    assert set(claims) == {due, pending, delayed}
    assert await h.queue.later(claims[delayed], now_ms() + 3_600_000, 2, HTTP_503)
    assert await h.queue.later(claims[due], now_ms(), 2, HTTP_503)  # due at once
    assert await h.queue.promote(ADVERTISER, now_ms(), 10) == 1
    # Now: `pending` is held by worker A, `delayed` waits an hour, `due` is in the due
    # stream, and `new` (never read) is in the new-leads stream.
    now = now_ms()
    assert await h.queue.expire(ADVERTISER, 60_000, now) == 0  # all younger than a minute
    assert (await h.queue.state(ADVERTISER)).depth == 4
    moved = await h.queue.expire(ADVERTISER, 60_000, now + 61_000)
    assert moved == 4
    dead = await h.queue.dead_letters(ADVERTISER)
    assert sorted(d.lead_id for d in dead) == sorted([due, pending, delayed, new])
    assert {d.reason for d in dead} == {"expired"}
    assert {d.lead_id: d.last for d in dead}[delayed] == HTTP_503
    state = await h.queue.state(ADVERTISER)
    assert (state.depth, state.delayed, state.oldest_accepted_at_ms) == (0, 0, None)
    # The worker that held `pending` can no longer settle it: it is a dead letter once.
    assert not await h.queue.delivered(claims[pending])
    assert await read_all(h, B) == []
    assert await h.queue.expire(ADVERTISER, 60_000, now + 61_000) == 0
