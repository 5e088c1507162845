"""What only the Redis store has: scripts the server can lose, shared round trips, outages,
and the server settings it checks at start."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

import pytest
import pytest_asyncio
import redis.asyncio
from support import (
    DAY_MS,
    T0,
    RedisServer,
    StoreView,
    bucket_mates,
    calendar_cap,
    decide_one,
    dedup,
    fingerprint,
    idempotency,
    request,
    reservation,
)

from gateway.config.model import DedupScope
from gateway.decision.engine import DecisionEngine
from gateway.decision.model import Decision, DecisionOutcome, DecisionRequest
from gateway.errors import StoreUnavailable
from gateway.storage import keys, scripts
from gateway.storage.base import ForcedOutcome
from gateway.storage.memory import MemoryStore
from gateway.storage.redis import RedisStore
from gateway.types import AdvertiserId

ACCEPTED, DUPLICATE, CAPPED = Decision.ACCEPTED, Decision.DUPLICATE, Decision.CAPPED
OTHER = AdvertiserId("globex")
#: A refused connection must surface at once, far sooner than the store's 2 s socket timeout.
FAST_FAILURE_S = 1.0


@pytest_asyncio.fixture
async def redis_store(redis_url: str) -> AsyncIterator[RedisStore]:
    store = RedisStore(redis_url)
    try:
        yield store
    finally:
        await store.close()


async def _script_flush(url: str) -> None:
    """Make the server forget every script, as a restart or a failover does."""
    client = redis.asyncio.Redis.from_url(url)
    try:
        await client.script_flush()
    finally:
        await client.aclose()


async def _set_eviction_policy(url: str, policy: str) -> None:
    client = redis.asyncio.Redis.from_url(url)
    try:
        await client.config_set("maxmemory-policy", policy)
    finally:
        await client.aclose()


# -- scripts -----------------------------------------------------------------------------------


async def test_decisions_go_on_after_the_server_loses_its_scripts(
    redis_store: RedisStore, redis_url: str
) -> None:
    engine = DecisionEngine(redis_store)
    press = {"pressure_limit": 1, "pressure_window_ms": DAY_MS}

    def ann(now_ms: int, advertiser: AdvertiserId, cap: int = 10) -> DecisionRequest:
        return request(
            now_ms,
            dedup=[dedup("ann", advertiser=advertiser)],
            caps=[calendar_cap(cap, advertiser=advertiser)],
            person=[reservation("ann", advertiser, **press)],
            advertiser=advertiser,
        )

    first = await decide_one(engine, ann(T0, OTHER, cap=0))  # reserve, decide, release
    await _script_flush(redis_url)
    leads = [ann(T0 + 1, OTHER), ann(T0 + 2, OTHER), ann(T0 + 3, OTHER)]
    batch = await engine.run(leads)
    await _script_flush(redis_url)
    elsewhere = await decide_one(engine, ann(T0 + 4, AdvertiserId("acme")))

    assert first.decision is CAPPED
    # Each refused script ran exactly once after the reload: one acceptance, then duplicates.
    assert [o.decision if o else None for o in batch] == [ACCEPTED, DUPLICATE, DUPLICATE]
    # The person-slot scripts were reloaded too: globex's slot is held, acme is refused.
    assert (elsewhere.decision, elsewhere.reasons) == (CAPPED, ("cap.person",))
    deliveries = await StoreView(redis_store, redis_url).deliveries(OTHER)
    assert [d.lead_id for d in deliveries] == [leads[0].lead_id]


# -- dedup memory ------------------------------------------------------------------------------


async def test_dedup_marks_are_compact_hash_fields_that_expire_with_their_generation(
    redis_store: RedisStore, redis_url: str
) -> None:
    engine = DecisionEngine(redis_store)
    ann, bob = bucket_mates()
    long = dedup(ann, DedupScope.ADVERTISER, window_ms=90 * DAY_MS)
    short = dedup(bob, DedupScope.ADVERTISER, window_ms=7 * DAY_MS)
    before_ms = time.time_ns() // 1_000_000
    await decide_one(engine, request(T0, dedup=[long]))
    after_ms = time.time_ns() // 1_000_000
    await decide_one(engine, request(T0 + 1, dedup=[short]))

    (key,) = long.at(T0).keys[:1]
    client = redis.asyncio.Redis.from_url(redis_url, decode_responses=True)
    try:
        marks = await client.hgetall(key)
        encoding = await client.object("encoding", key)
        ttl_ms = await client.pttl(key)
        expire_at_ms = await client.pexpiretime(key)
    finally:
        await client.aclose()
    # One hash holds both marks, each the acceptance time within the generation.
    generation_began = keys.seen_generation(T0) * keys.SEEN_GENERATION_MS
    assert marks == {
        keys.seen_mark(fingerprint(ann)).field: str(T0 - generation_began),
        keys.seen_mark(fingerprint(bob)).field: str(T0 + 1 - generation_began),
    }
    assert encoding == "listpack"
    # It lives until its generation ends plus the longest retention written to it (90 d, not
    # the 7 d of the later write): never less than any mark needs, at most a week more.
    expires_ms = generation_began + keys.SEEN_GENERATION_MS + 90 * DAY_MS - T0
    # Set by the first write (Redis's clock then between before_ms and after_ms), a minute to
    # spare; the second one, shorter, left it.
    slack_ms = scripts.EXPIRY_SLACK_MS
    assert before_ms + expires_ms + slack_ms <= expire_at_ms <= after_ms + expires_ms + slack_ms
    assert ttl_ms <= expires_ms + slack_ms
    assert ttl_ms <= 90 * DAY_MS + keys.SEEN_GENERATION_MS + slack_ms


async def test_a_hash_whose_expiry_is_long_enough_is_not_raised_again(
    redis_store: RedisStore, redis_url: str
) -> None:
    """The second mark in a generation's hash finds its expiry long enough (the first write set
    it a minute beyond its need): it reads it and leaves it, never a ``PEXPIRE`` per lead. Here
    from a replica whose clock is a second behind: its lead needs the hash a second longer than
    the first (without the minute, every lead moved it by the milliseconds between clocks)."""
    engine = DecisionEngine(redis_store)
    ann, bob = bucket_mates()
    client = redis.asyncio.Redis.from_url(redis_url, decode_responses=True)
    try:
        await decide_one(engine, request(T0, dedup=[dedup(ann, DedupScope.ADVERTISER)]))
        await client.config_resetstat()
        await decide_one(engine, request(T0 - 1000, dedup=[dedup(bob, DedupScope.ADVERTISER)]))
        stats = await client.info("commandstats")
    finally:
        await client.aclose()
    assert stats["cmdstat_hset"]["calls"] == 1
    assert stats["cmdstat_pttl"]["calls"] == 1
    assert "cmdstat_pexpire" not in stats


@pytest.mark.parametrize("script", ["decide", "campaign_reserve"])
def test_the_scripts_expiry_slack_is_the_documented_one(script: str) -> None:
    source = scripts.load(script).source
    assert f"local EXPIRY_SLACK_MS = {scripts.EXPIRY_SLACK_MS}\n" in source


# -- a batch in few script calls ----------------------------------------------------------------


async def test_a_batch_is_decided_in_one_call_per_advertiser_and_hundred_leads_in_order(
    redis_store: RedisStore, redis_url: str
) -> None:
    cap = calendar_cap(240)
    people = [f"p{i % 230}" for i in range(250)]  # 20 come back, in the same call or a later
    batch = [request(T0 + i, dedup=[dedup(person)], caps=[cap]) for i, person in enumerate(people)]
    batch.insert(7, request(T0, dedup=[dedup("p3", advertiser=OTHER)], advertiser=OTHER))
    client = redis.asyncio.Redis.from_url(redis_url)
    try:
        await redis_store.load_scripts()
        await client.config_resetstat()
        outcomes = await DecisionEngine(redis_store).run(batch)
        calls = (await client.info("commandstats"))["cmdstat_evalsha"]["calls"]
    finally:
        await client.aclose()
    embedded = await DecisionEngine(MemoryStore()).run(batch)

    # 250 leads of one advertiser in 3 calls (100, 100, 50), one call for the other.
    assert calls == 4
    decisions = [o.decision for o in outcomes if o is not None]
    assert decisions == [o.decision for o in embedded if o is not None]
    # In order, each lead seeing those before it: the first 230 people are new (the other
    # advertiser's p3 too), the 20 who come back are duplicates, the cap stops nobody.
    assert decisions.count(DUPLICATE) == 20
    assert decisions[:8] == [ACCEPTED] * 8
    assert all(d is DUPLICATE for d in decisions[231:])


async def test_one_call_answers_each_lead_as_its_own_call_would(redis_store: RedisStore) -> None:
    # Replays, conflicts, forced outcomes, test mode, duplicates and acceptances mixed in one
    # decide.lua call: each lead gets the answer it would get alone, in order.
    first = request(T0, dedup=[dedup("ann")], idempotency=idempotency("k1", "body-1"))
    mixed: list[tuple[DecisionRequest, ForcedOutcome | None]] = [
        (request(T0 + 1, dedup=[dedup("ann")], idempotency=idempotency("k1", "body-1")), None),
        (request(T0 + 2, dedup=[dedup("bob")], idempotency=idempotency("k1", "other")), None),
        (request(T0 + 3, dedup=[dedup("cy")]), ForcedOutcome("duplicate", ("duplicate.network",))),
        (request(T0 + 4, dedup=[dedup("dee")], dry_run=True), None),
        (request(T0 + 5, dedup=[dedup("dee")]), None),
        (request(T0 + 6, dedup=[dedup("dee")]), None),
    ]
    embedded = MemoryStore()
    for store in (redis_store, embedded):
        await store.decide([(first, None)])

    together = await redis_store.decide(mixed)
    alone = [(await embedded.decide([item]))[0] for item in mixed]

    def seen(outcomes: list[DecisionOutcome | None]) -> list[object]:
        return [o and (o.decision, o.reasons, o.replayed) for o in outcomes]

    assert seen(together) == seen(alone)
    assert seen(together) == [
        (ACCEPTED, (), True),  # the stored answer of the first request with key k1
        None,  # the same key with another body
        (DUPLICATE, ("duplicate.network",), False),
        (ACCEPTED, (), False),  # test mode: decided, nothing written
        (ACCEPTED, (), False),
        (DUPLICATE, ("duplicate.campaign",), False),
    ]


# -- auto-pipelining ---------------------------------------------------------------------------


async def test_concurrent_decisions_share_round_trips(
    redis_store: RedisStore, redis_url: str
) -> None:
    engine = DecisionEngine(redis_store)
    await decide_one(engine, request(T0, dedup=[dedup("warm-up")]))  # loads the scripts
    before = redis_store.round_trips

    outcomes = await asyncio.gather(
        *(engine.run([request(T0 + i, dedup=[dedup(f"p{i}")])]) for i in range(200))
    )

    used = redis_store.round_trips - before
    assert [o.decision for (o,) in outcomes if o is not None] == [ACCEPTED] * 200
    # 4 connections: at most a couple of batches each, never one round trip per caller.
    assert used <= 8, f"200 concurrent decisions took {used} round trips"
    assert len(await StoreView(redis_store, redis_url).deliveries()) == 201


@pytest.mark.parametrize(
    ("lead", "round_trips"),
    [
        ("plain", 1),  # decide
        ("idempotent", 2),  # claim, decide
        ("person accepted", 2),  # reserve, decide
        ("person refused by the advertiser", 3),  # reserve, decide, release
        ("idempotent replay", 1),  # claim answers it
    ],
)
async def test_a_lone_decision_costs_one_round_trip_per_protocol_step(
    redis_store: RedisStore, lead: str, round_trips: int
) -> None:
    engine = DecisionEngine(redis_store)
    press = reservation("ann", "acme", pressure_limit=2, pressure_window_ms=DAY_MS)
    await decide_one(engine, request(T0, dedup=[dedup("warm-up")]))  # loads the scripts
    if lead == "idempotent replay":
        await decide_one(
            engine, request(T0, dedup=[dedup("ann")], idempotency=idempotency("K", "B"))
        )
    rq = {
        "plain": request(T0 + 1, dedup=[dedup("ann")]),
        "idempotent": request(T0 + 1, dedup=[dedup("ann")], idempotency=idempotency("K", "B")),
        "person accepted": request(T0 + 1, dedup=[dedup("ann")], person=[press]),
        "person refused by the advertiser": request(T0 + 1, caps=[calendar_cap(0)], person=[press]),
        "idempotent replay": request(
            T0 + 1, dedup=[dedup("ann")], idempotency=idempotency("K", "B")
        ),
    }[lead]
    before = redis_store.round_trips

    await decide_one(engine, rq)

    assert redis_store.round_trips - before == round_trips


# -- outages -----------------------------------------------------------------------------------


async def test_an_unreachable_redis_is_reported_at_once_and_forgotten_once_it_is_back(
    spare_redis: Callable[[], RedisServer],
) -> None:
    server = spare_redis()  # a free port, nothing listening yet
    store = RedisStore(server.url)
    engine = DecisionEngine(store)
    try:
        async with asyncio.timeout(FAST_FAILURE_S):
            with pytest.raises(StoreUnavailable):
                await engine.run([request(T0, dedup=[dedup("ann")])])
            with pytest.raises(StoreUnavailable):
                await store.ping()

        server.start()
        first = await decide_one(engine, request(T0 + 1, dedup=[dedup("ann")]))
        again = await decide_one(engine, request(T0 + 2, dedup=[dedup("ann")]))
    finally:
        await store.close()

    assert first.decision is ACCEPTED  # the refused attempt decided nothing
    assert again.decision is DUPLICATE


async def test_the_store_recovers_when_redis_is_killed_and_restarted(
    spare_redis: Callable[[], RedisServer],
) -> None:
    server = spare_redis()
    server.start()
    store = RedisStore(server.url, connections=4)
    engine = DecisionEngine(store)
    try:
        # Put every connection to use, so each holds a socket to the process about to die.
        await asyncio.gather(
            *(engine.run([request(T0, dedup=[dedup(f"p{i}")])]) for i in range(50))
        )
        server.kill()
        async with asyncio.timeout(FAST_FAILURE_S):
            with pytest.raises(StoreUnavailable):
                await engine.run([request(T0 + 1, dedup=[dedup("ann")])])
            with pytest.raises(StoreUnavailable):
                await store.ping()

        server.start()  # same port, empty memory, no scripts
        # A connection still holding a dead socket may fail once (no retry: a lost reply may
        # hide a committed decision); at most one failure per connection, then it is back.
        failures = 0
        for attempt in range(6):
            try:
                outcome = await decide_one(engine, request(T0 + 2 + attempt, dedup=[dedup("bob")]))
                break
            except StoreUnavailable:
                failures += 1
        else:
            pytest.fail("the store did not recover after redis came back")
    finally:
        await store.close()

    assert failures <= 4
    assert outcome.decision is ACCEPTED


async def test_requests_waiting_for_a_hung_redis_layout_fail_within_their_own_deadline(
    spare_redis: Callable[[], RedisServer],
) -> None:
    """A store learns the dedup layout once for all the requests that need it (at start, after
    a reconnect). A Redis hung at that moment must not queue them one behind the other, each
    waiting out the previous one's timeout: each gets its 503 by its own deadline."""
    server = spare_redis()
    server.start()
    server.freeze()
    store = RedisStore(server.url, socket_timeout_s=0.3)
    try:
        started = time.monotonic()
        results = await asyncio.gather(*(store.ping() for _ in range(10)), return_exceptions=True)
        took_s = time.monotonic() - started
    finally:
        server.thaw()
        await store.close()

    assert all(isinstance(r, StoreUnavailable) for r in results), results
    assert took_s < 5 * 0.3  # one socket timeout and event-loop time, not ten (3 s)


async def test_connections_opened_before_serving_leave_a_burst_no_layout_to_learn(
    redis_url: str,
) -> None:
    """``connect_all`` (``App.open_store``, before the first client) opens every connection
    and learns the dedup layout once. Opened lazily, each connection a first burst needed
    made every request in flight wait for a learning of its own: under 1,000 connections on
    a slow machine, some waited past their deadline (503s with Redis answering)."""
    store = RedisStore(redis_url)
    client = redis.asyncio.Redis.from_url(redis_url, decode_responses=True)
    try:
        await store.connect_all()
        connected = await client.client_list()
        await client.config_resetstat()
        await asyncio.gather(*(store.ping() for _ in range(200)))
        stats = await client.info("commandstats")
        after = await client.client_list()
    finally:
        await client.aclose()
        await store.close()
    assert len(connected) == 1 + 4  # this client and the store's four
    assert len(after) == len(connected)  # the burst opened none
    assert "cmdstat_dbsize" not in stats  # nor learnt the layout again
    assert stats["cmdstat_ping"]["calls"] == 200


async def test_connect_all_on_a_redis_down_is_a_503_and_the_store_connects_later(
    spare_redis: Callable[[], RedisServer],
) -> None:
    server = spare_redis()  # not started yet
    store = RedisStore(server.url, socket_timeout_s=2.0)
    try:
        with pytest.raises(StoreUnavailable):
            await store.connect_all()
        server.start()
        await store.ping()  # the connections open on first use, as before
    finally:
        await store.close()


async def test_connect_all_keeps_no_connection_a_refused_redis_opened(redis_url: str) -> None:
    """A connection refused by the settings check (an evicting Redis) is not kept open: its
    next use opens it again and checks again, so the refusal holds until Redis is fixed."""
    await _set_eviction_policy(redis_url, "allkeys-lru")
    store = RedisStore(redis_url)
    try:
        with pytest.raises(StoreUnavailable):
            await store.connect_all()
        with pytest.raises(StoreUnavailable):
            await store.ping()  # checked again, refused again
        await _set_eviction_policy(redis_url, "noeviction")
        await store.ping()
    finally:
        await store.close()


# -- server settings ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "problem"),
    [
        ("noeviction", None),
        ("allkeys-lru", "maxmemory-policy is allkeys-lru"),
        ("volatile-ttl", "maxmemory-policy is volatile-ttl"),
    ],
)
async def test_server_checks_report_an_eviction_policy_that_can_drop_decisions(
    redis_store: RedisStore, redis_url: str, policy: str, problem: str | None
) -> None:
    await _set_eviction_policy(redis_url, policy)

    problems = await redis_store.server_checks()

    if problem is None:
        assert problems == []
    else:
        assert len(problems) == 1
        assert problems[0].startswith(problem)
        assert "noeviction" in problems[0]  # it says what to set instead
