"""Erasing one person from a delivery queue, over the embedded store and a real Redis.

Two people's leads are planted in every place a queue keeps one (new, in flight from the new
and the due stream, due, delayed, dead); one person is erased; the other's leads must all still
be there and deliverable, and nothing of the erased person may remain anywhere.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
import pytest
import pytest_asyncio
import redis
import redis.asyncio
from support import ADVERTISER, decide_one, request

from delivery.harness import OTHER, Harness, harnesses, now_ms
from delivery.records import record
from gateway.decision.engine import DecisionEngine
from gateway.delivery.queue import PROMOTE, SETTLE
from gateway.delivery.queue_base import GROUP, Claimed, Erased, LastResponse, pack
from gateway.storage import keys
from gateway.types import AdvertiserId, LeadId

WORKER = "worker-a"
HTTP_503 = LastResponse(503, "HTTP 503", "upstream down")
HOUR_MS = 3_600_000


@dataclasses.dataclass(frozen=True)
class Person:
    email: str
    phone: str

    def matches(self, rec: bytes) -> bool:
        """What erasure asks of a record: is it this person's lead (by email or phone)?"""
        try:
            lead = orjson.loads(rec)["lead"]
        except (ValueError, KeyError, TypeError):
            return False
        return bool(lead.get("email") == self.email or lead.get("phone") == self.phone)


JEANNE = Person("jeanne.martin@example.org", "+33612345678")
PAUL = Person("paul.durand@example.net", "+33698765432")


@dataclasses.dataclass
class Planted:
    """One person's leads, one in each place of the queue."""

    new: LeadId
    in_flight_new: Claimed
    in_flight_due: Claimed
    due: LeadId
    delayed: LeadId
    dead: LeadId

    def undelivered(self) -> set[LeadId]:
        flight = {self.in_flight_new.delivery.lead_id, self.in_flight_due.delivery.lead_id}
        return {self.new, self.due, self.delayed} | flight


@pytest_asyncio.fixture(params=["embedded", "redis"])
async def h(request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    async for made in harnesses(request.param, request):
        harness = await made.make()
        await harness.queue.prepare([ADVERTISER, OTHER])
        yield harness


async def accept(h: Harness, person: Person, advertiser: AdvertiserId = ADVERTISER) -> LeadId:
    """One accepted lead of ``person`` through the real decision path."""
    rq = request(now_ms(), advertiser=advertiser)
    rq = dataclasses.replace(rq, payload=record(rq.lead_id, email=person.email, phone=person.phone))
    outcome = await decide_one(DecisionEngine(h.store), rq)
    assert outcome.decision == "accepted"
    return outcome.lead_id


async def plant(h: Harness) -> dict[Person, Planted]:
    """Jeanne's and Paul's leads in every place: new, in flight (new and due), due, delayed,
    dead."""
    people = (JEANNE, PAUL)
    roles = ("dead", "in_flight_due", "due", "delayed", "in_flight_new")
    ids = {p: {role: await accept(h, p) for role in roles} for p in people}
    claims = {c.delivery.lead_id: c for c in await h.queue.read(ADVERTISER, WORKER, 100, 0)}
    assert len(claims) == 10
    now = now_ms()
    for n, p in enumerate(people):
        assert await h.queue.dead(claims[ids[p]["dead"]], "rejected", HTTP_503, now)
        # Due times in this order, so the two in-flight-due leads are promoted (and read) first.
        assert await h.queue.later(claims[ids[p]["in_flight_due"]], now - 2 + n, 2, HTTP_503)
        assert await h.queue.later(claims[ids[p]["due"]], now, 2, HTTP_503)
        assert await h.queue.later(claims[ids[p]["delayed"]], now + HOUR_MS, 2, HTTP_503)
    assert await h.queue.promote(ADVERTISER, now, 100) == 4
    flying = {c.delivery.lead_id: c for c in await h.queue.read(ADVERTISER, WORKER, 2, 0)}
    assert set(flying) == {ids[p]["in_flight_due"] for p in people}
    return {
        p: Planted(
            new=await accept(h, p),
            in_flight_new=claims[ids[p]["in_flight_new"]],
            in_flight_due=flying[ids[p]["in_flight_due"]],
            due=ids[p]["due"],
            delayed=ids[p]["delayed"],
            dead=ids[p]["dead"],
        )
        for p in people
    }


async def redis_contents(url: str, but: AdvertiserId | None = None) -> bytes:
    """Every key name and every value in the Redis (stream entries, hash fields, members),
    but the keys of advertiser ``but``."""
    client = redis.asyncio.Redis.from_url(url)
    parts: list[bytes] = []
    skip = None if but is None else keys.advertiser_tag(but).encode()
    try:
        async for key in client.scan_iter(count=1000):
            if skip is not None and skip in key:
                continue
            parts.append(key)
            kind: Any = await client.type(key)
            value: Any
            if kind == b"string":
                value = [await client.get(key)]
            elif kind == b"hash":
                fields: Any = await client.hgetall(key)
                value = [b for kv in fields.items() for b in kv]
            elif kind == b"zset":
                members: Any = await client.zrange(key, 0, -1)
                value = members
            elif kind == b"set":
                value = list(await client.smembers(key))
            elif kind == b"list":
                value = await client.lrange(key, 0, -1)
            elif kind == b"stream":
                entries: Any = await client.xrange(key)
                value = [b for _, f in entries for kv in f.items() for b in kv]
            else:
                raise AssertionError(f"unexpected key type {kind!r}")
            parts += [v for v in value if v is not None]
    finally:
        await client.aclose()
    return b"\n".join(parts)


async def test_erasing_one_person_leaves_only_the_other(h: Harness) -> None:
    planted = await plant(h)
    jeanne, paul = planted[JEANNE], planted[PAUL]
    elsewhere = await accept(h, JEANNE, OTHER)  # another advertiser's queue: not this call's

    assert await h.queue.erase(ADVERTISER, JEANNE.matches) == Erased(undelivered=5, dead_letters=1)
    assert await h.queue.erase(ADVERTISER, JEANNE.matches) == Erased()

    state = await h.queue.state(ADVERTISER)
    assert (state.depth, state.delayed, state.dead_letters) == (5, 1, 1)
    if h.redis_url is not None:
        everything = await redis_contents(h.redis_url, but=OTHER)
        assert PAUL.email.encode() in everything  # the scan does see lead data
        for trace in (JEANNE.email, JEANNE.phone, *jeanne.undelivered(), jeanne.dead):
            assert trace.encode() not in everything
        client = redis.asyncio.Redis.from_url(h.redis_url)
        try:
            pending = [
                await client.xpending(keys.deliveries(ADVERTISER), GROUP),
                await client.xpending(keys.delivery_retries(ADVERTISER), GROUP),
            ]
        finally:
            await client.aclose()
        assert [p["pending"] for p in pending] == [1, 1]  # Paul's two in-flight leads only

    # Jeanne's in-flight leads cannot be parked, dead-lettered or acknowledged back.
    assert not await h.queue.later(jeanne.in_flight_new, now_ms(), 2, HTTP_503)
    assert not await h.queue.dead(jeanne.in_flight_due, "rejected", HTTP_503, now_ms())
    assert not await h.queue.delivered(jeanne.in_flight_new)
    assert not await h.queue.delivered(jeanne.in_flight_due)

    # Paul's leads are all there and deliverable; nothing of Jeanne's comes back.
    assert await h.queue.delivered(paul.in_flight_new)
    assert await h.queue.delivered(paul.in_flight_due)
    assert await h.queue.promote(ADVERTISER, now_ms() + 2 * HOUR_MS, 100) == 1
    read = await h.queue.read(ADVERTISER, WORKER, 100, 0)
    assert {c.delivery.lead_id for c in read} == {paul.new, paul.due, paul.delayed}
    assert all(PAUL.matches(c.delivery.record) for c in read)
    assert all([await h.queue.delivered(c) for c in read])
    (dead,) = await h.queue.dead_letters(ADVERTISER)
    assert dead.lead_id == paul.dead
    assert await h.queue.replay(ADVERTISER, [dead], now_ms()) == 1
    (again,) = await h.queue.read(ADVERTISER, WORKER, 100, 0)
    assert again.delivery.lead_id == paul.dead
    assert await h.queue.delivered(again)
    state = await h.queue.state(ADVERTISER)
    assert (state.depth, state.dead_letters, state.oldest_accepted_at_ms) == (0, 0, None)

    (other,) = await h.queue.read(OTHER, WORKER, 100, 0)
    assert other.delivery.lead_id == elsewhere


async def test_an_empty_or_unprepared_queue_erases_nothing(h: Harness) -> None:
    assert await h.queue.erase(AdvertiserId("nobody"), JEANNE.matches) == Erased()
    await accept(h, PAUL)
    assert await h.queue.erase(ADVERTISER, JEANNE.matches) == Erased()
    assert (await h.queue.state(ADVERTISER)).depth == 1


async def test_erasure_before_any_worker_prepared_the_queue(request: pytest.FixtureRequest) -> None:
    """``decide`` creates the stream before any consumer group exists."""
    for kind in ("embedded", "redis"):
        async for made in harnesses(kind, request):
            h = await made.make()
            await accept(h, JEANNE)
            kept = await accept(h, PAUL)
            assert await h.queue.erase(ADVERTISER, JEANNE.matches) == Erased(undelivered=1)
            await h.queue.prepare([ADVERTISER])
            read = await h.queue.read(ADVERTISER, WORKER, 100, 0)
            assert [c.delivery.lead_id for c in read] == [kept]


def test_erased_counts_add_up_over_advertisers() -> None:
    found = [Erased(2, 1), Erased(), Erased(undelivered=3)]
    assert sum(found, Erased()) == Erased(undelivered=5, dead_letters=1)
    assert Erased(1, 2) + Erased(3, 4) == Erased(4, 6)


# -- Redis only: leads that move during the scan, unreadable entries -----------------------


def _settle_args(claimed: Claimed, *tail: Any) -> list[Any]:
    return [GROUP, claimed.entry_id, claimed.delivery.lead_id, *tail]


def _queue_keys(advertiser: AdvertiserId) -> list[str]:
    return [
        keys.deliveries(advertiser),
        keys.delivery_delayed(advertiser),
        keys.delivery_waiting(advertiser),
        keys.delivery_retrying(advertiser),
        keys.delivery_dead(advertiser),
    ]


def _worker_parks(client: redis.Redis, claimed: Claimed) -> None:
    """What a worker's ``later`` runs, now, from another connection."""
    packed = pack(claimed.delivery, 2, HTTP_503)
    args = _settle_args(claimed, "later", now_ms(), claimed.delivery.accepted_at_ms, packed)
    assert client.eval(SETTLE.source, 5, *_queue_keys(ADVERTISER), *args) == 1


def _worker_dead_letters(client: redis.Redis, claimed: Claimed) -> None:
    fields = ["lead_id", claimed.delivery.lead_id, "record", claimed.delivery.record]
    args = _settle_args(claimed, "dead", "0-0", 86_400_000, *fields)  # retention: a day
    assert client.eval(SETTLE.source, 5, *_queue_keys(ADVERTISER), *args) == 1


def _promoter_moves(client: redis.Redis, claimed: Claimed) -> None:
    promote_keys = [
        keys.delivery_delayed(ADVERTISER),
        keys.delivery_waiting(ADVERTISER),
        keys.delivery_retries(ADVERTISER),
    ]
    assert client.eval(PROMOTE.source, 3, *promote_keys, now_ms() + HOUR_MS, 100) == 1


@pytest_asyncio.fixture
async def rh(request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    async for made in harnesses("redis", request):
        harness = await made.make()
        await harness.queue.prepare([ADVERTISER])
        yield harness


@pytest.mark.parametrize(
    ("parked_first", "move"),
    [
        (False, _worker_parks),  # new (in flight) -> waiting
        (False, _worker_dead_letters),  # new (in flight) -> dead
        (True, _promoter_moves),  # waiting -> due
    ],
)
async def test_a_lead_that_moves_during_the_scan_is_still_erased(
    rh: Harness, parked_first: bool, move: Callable[[redis.Redis, Claimed], None]
) -> None:
    assert rh.redis_url is not None
    lead = await accept(rh, JEANNE)
    (claimed,) = await rh.queue.read(ADVERTISER, WORKER, 10, 0)
    if parked_first:
        assert await rh.queue.later(claimed, now_ms() + HOUR_MS, 2, HTTP_503)
    sync = redis.Redis.from_url(rh.redis_url)
    moved: list[bool] = []

    def matches_and_moves(rec: bytes) -> bool:
        # The lead moves between the scan that saw it and the script that removes it.
        if not moved and JEANNE.matches(rec):
            move(sync, claimed)
            moved.append(True)
        return JEANNE.matches(rec)

    try:
        erased = await rh.queue.erase(ADVERTISER, matches_and_moves)
    finally:
        sync.close()
    assert moved
    assert erased.undelivered + erased.dead_letters == 1
    everything = await redis_contents(rh.redis_url)
    assert JEANNE.email.encode() not in everything
    assert lead.encode() not in everything
    assert await rh.queue.erase(ADVERTISER, JEANNE.matches) == Erased()


async def test_unreadable_entries_are_shown_as_they_are(rh: Harness) -> None:
    assert rh.redis_url is not None
    client = redis.asyncio.Redis.from_url(rh.redis_url)
    try:
        await client.xadd(keys.deliveries(ADVERTISER), {"junk": "1"})
        await client.xadd(keys.deliveries(ADVERTISER), {"record": f"<{JEANNE.email}"})
        await client.xadd(keys.delivery_retries(ADVERTISER), {"p": f"{{{JEANNE.phone}"})
        await client.xadd(keys.delivery_dead(ADVERTISER), {"reason": "x"})
    finally:
        await client.aclose()
    seen: list[bytes] = []

    def by_substring(rec: bytes) -> bool:
        seen.append(rec)
        return JEANNE.email.encode() in rec or JEANNE.phone.encode() in rec

    assert await rh.queue.erase(ADVERTISER, by_substring) == Erased(undelivered=2)
    assert seen.count(b"") == 2  # the junk entry and the dead letter without a record
    everything = await redis_contents(rh.redis_url)
    assert JEANNE.email.encode() not in everything
    assert JEANNE.phone.encode() not in everything
    assert b"junk" in everything
