"""Single leads of one advertiser share ``decide.lua`` calls (``RedisStore._decide_shared``).

Under load, the single leads that come while a round trip is under way ride one call, decided
in the order they joined it; each still gets its own answer, keeps its own deadline, and a lead
whose caller gave up before the call was written is never sent. A Redis server of its own per
test where the test keeps Redis busy or frozen.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable

import pytest
import redis.asyncio
from support import BUSY_SCRIPT, DAY_MS, T0, RedisServer, dedup, request

from gateway.decision.model import Decision, DecisionOutcome, DecisionRequest
from gateway.errors import StoreUnavailable
from gateway.storage.deadline import close_budget, open_budget
from gateway.storage.redis import RedisStore

ACCEPTED, DUPLICATE = Decision.ACCEPTED, Decision.DUPLICATE


def _lead(person: str, now_ms: int = T0) -> DecisionRequest:
    return request(now_ms, dedup=[dedup(person, window_ms=30 * DAY_MS)])


def _decided(outcomes: list[DecisionOutcome | StoreUnavailable]) -> list[DecisionOutcome]:
    assert all(isinstance(o, DecisionOutcome) for o in outcomes), outcomes
    return [o for o in outcomes if isinstance(o, DecisionOutcome)]


def _failed(outcomes: list[DecisionOutcome | StoreUnavailable]) -> list[StoreUnavailable]:
    assert all(isinstance(o, StoreUnavailable) for o in outcomes), outcomes
    return [o for o in outcomes if isinstance(o, StoreUnavailable)]


async def _evalsha_calls(url: str) -> int:
    client = redis.asyncio.Redis.from_url(url)
    try:
        stats = await client.info("commandstats")
        return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))
    finally:
        await client.aclose()


async def _decide(
    store: RedisStore, rq: DecisionRequest, deadline: float | None = None
) -> DecisionOutcome | StoreUnavailable:
    """One single-lead decision (as a single post's), under a request deadline if given: its
    outcome, or the ``StoreUnavailable`` it met."""
    token = open_budget(deadline) if deadline is not None else None
    try:
        (outcome,) = await store.decide([(rq, None)])
        assert outcome is not None
        return outcome
    except StoreUnavailable as failed:
        return failed
    finally:
        if token is not None:
            close_budget(token)


async def test_single_leads_of_one_advertiser_share_calls_each_with_its_own_answer(
    redis_url: str,
) -> None:
    store = RedisStore(redis_url, connections=1)
    try:
        # Connected, layout learnt and script loaded, as a gateway is before it serves: the
        # first leads do not wait for any of it, one by one.
        await store.connect_all()
        await store.load_scripts()
        before = await _evalsha_calls(redis_url)
        # 60 people, two of them posted twice at the same instant: in arrival order, the
        # first of each pair is accepted and the second is its duplicate.
        people = [f"shared-{i}" for i in range(60)] + ["shared-7", "shared-41"]
        leads = [_lead(p) for p in people]
        outcomes = _decided(await asyncio.gather(*(_decide(store, rq) for rq in leads)))
        calls = await _evalsha_calls(redis_url) - before
    finally:
        await store.close()
    decisions = [o.decision for o in outcomes]
    assert decisions[:60] == [ACCEPTED] * 60
    assert decisions[60:] == [DUPLICATE, DUPLICATE]
    # Each answer is its own lead's.
    assert [o.lead_id for o in outcomes] == [rq.lead_id for rq in leads]
    # One connection: the first lead's call goes out alone, the others ride the next ones.
    assert calls < len(people) / 4, calls


async def test_a_shared_call_keeps_no_lead_once_written(redis_url: str) -> None:
    """Its leads' arguments hold their records (personal data): gone once packed."""
    store = RedisStore(redis_url, connections=1)
    try:
        await asyncio.gather(*(_decide(store, _lead(f"kept-{i}")) for i in range(20)))
        calls = [call for call, _ in store._calls.values()]
    finally:
        await store.close()
    assert calls
    assert all(not call.leads and not call.open for call in calls)


async def test_a_call_takes_at_most_100_leads(redis_url: str) -> None:
    """250 single leads waiting together on one connection: calls of at most 100 leads (as a
    call of a batch's), every lead decided."""
    store = RedisStore(redis_url, connections=1)
    try:
        await store.connect_all()
        await store.load_scripts()
        before = await _evalsha_calls(redis_url)
        outcomes = _decided(
            await asyncio.gather(*(_decide(store, _lead(f"many-{i}")) for i in range(250)))
        )
        calls = await _evalsha_calls(redis_url) - before
    finally:
        await store.close()
    assert [o.decision for o in outcomes] == [ACCEPTED] * 250
    # All joined before the first write (the drain runs on the loop's next turn): without
    # the limit one call, with it three at least.
    assert 3 <= calls < 250 / 4, calls


@pytest.fixture
def own_server(spare_redis: Callable[[], RedisServer]) -> RedisServer:
    server = spare_redis()
    server.start()
    return server


async def test_a_lead_whose_caller_gave_up_before_the_write_is_never_sent(
    own_server: RedisServer,
) -> None:
    """The only connection is held by a slow script; two leads queue in one shared call, one of
    them with a deadline that passes first: it is answered ``StoreUnavailable``, not sent, and
    left out of the call; the other is decided."""
    store = RedisStore(own_server.url, connections=1, socket_timeout_s=3.0)
    loop = asyncio.get_running_loop()
    try:
        await store.connect_all()
        await store.load_scripts()
        busy = asyncio.create_task(store._pipe.execute([("EVAL", BUSY_SCRIPT, 0, 1000)]))
        await asyncio.sleep(0.05)  # the script is running: what comes now waits in the queue
        patient = asyncio.create_task(_decide(store, _lead("patient")))
        await asyncio.sleep(0)
        hasty = asyncio.create_task(_decide(store, _lead("hasty"), deadline=loop.time() + 0.15))
        gave_up = await hasty
        assert isinstance(gave_up, StoreUnavailable)
        assert not gave_up.outcome_unknown
        # The call is still queued behind the script.
        assert not busy.done()
        assert not patient.done()
        (decided,) = _decided([await patient])
        await busy
        assert decided.decision is ACCEPTED
        # "hasty" was never decided: the same person now is new, "patient" a duplicate.
        again = _decided([await _decide(store, _lead(p, T0 + 1000)) for p in ("hasty", "patient")])
    finally:
        await store.close()
    assert [o.decision for o in again] == [ACCEPTED, DUPLICATE]


async def test_riders_of_a_call_to_a_frozen_redis_fail_at_their_own_deadlines(
    own_server: RedisServer,
) -> None:
    """A frozen Redis (SIGSTOP): leads queued in shared calls, some written before it froze
    their reply, each answered ``StoreUnavailable`` by the deadline the test gave its own
    request, not its call's."""
    store = RedisStore(own_server.url, connections=2, socket_timeout_s=0.5)
    loop = asyncio.get_running_loop()
    try:
        await store.connect_all()
        await store.load_scripts()
        (first,) = _decided([await _decide(store, _lead("before"))])
        assert first.decision is ACCEPTED
        own_server.freeze()
        given: list[float] = []
        tasks = []
        for wave in range(3):
            for i in range(40):
                deadline = loop.time() + 0.2 + 0.01 * (i % 7)
                given.append(deadline)
                tasks.append(
                    asyncio.create_task(_decide(store, _lead(f"frozen-{wave}-{i}"), deadline))
                )
            await asyncio.sleep(0.1)
        async with asyncio.timeout(20):
            failed = _failed(await asyncio.gather(*tasks))
        # Calls that failed, or were dropped unsent, keep no lead either.
        assert all(not call.leads for call, _ in store._calls.values())
    finally:
        own_server.thaw()
        await store.close()
    assert [f.deadline_s for f in failed] == given
    # Written ones may have run; queued ones were never sent.
    kinds = Counter(f.outcome_unknown for f in failed)
    assert kinds[True], kinds
    assert kinds[False], kinds


async def test_a_redis_that_lost_the_script_decides_each_lead_again(
    own_server: RedisServer,
) -> None:
    """NOSCRIPT (a restart, a failover): no lead of the shared call ran; each is sent again on
    its own, the script loaded first. (A Redis of its own: the session's keeps its scripts.)"""
    store = RedisStore(own_server.url, connections=1)
    client = redis.asyncio.Redis.from_url(own_server.url)
    try:
        await store.connect_all()
        await store.load_scripts()
        await client.script_flush()
        people = [f"lost-{i}" for i in range(30)] + ["lost-3"]
        outcomes = _decided(await asyncio.gather(*(_decide(store, _lead(p)) for p in people)))
    finally:
        await client.aclose()
        await store.close()
    decisions = [o.decision for o in outcomes]
    # Sent again each on its own, the pair's order is no longer the call's: one of them is
    # accepted, the other its duplicate.
    assert decisions[:3] + decisions[4:30] == [ACCEPTED] * 29
    assert sorted((decisions[3], decisions[30])) == [ACCEPTED, DUPLICATE]


async def test_a_lead_whose_request_was_cancelled_before_the_write_is_never_sent(
    own_server: RedisServer,
) -> None:
    store = RedisStore(own_server.url, connections=1, socket_timeout_s=3.0)
    try:
        await store.connect_all()
        await store.load_scripts()
        busy = asyncio.create_task(store._pipe.execute([("EVAL", BUSY_SCRIPT, 0, 500)]))
        await asyncio.sleep(0.05)
        tasks = [asyncio.create_task(_decide(store, _lead(p))) for p in ("one", "two", "three")]
        await asyncio.sleep(0.05)  # all three in one call, queued behind the script
        tasks[1].cancel()
        first, third = _decided([await tasks[0], await tasks[2]])
        with pytest.raises(asyncio.CancelledError):
            await tasks[1]
        await busy
        again = _decided(
            [await _decide(store, _lead(p, T0 + 1000)) for p in ("one", "two", "three")]
        )
    finally:
        await store.close()
    assert (first.decision, third.decision) == (ACCEPTED, ACCEPTED)
    # "two" was never decided: new now; the others are duplicates.
    assert [o.decision for o in again] == [DUPLICATE, ACCEPTED, DUPLICATE]
