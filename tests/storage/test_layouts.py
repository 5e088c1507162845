"""Upgrading the dedup marks and the lead index to their packed layouts loses nothing, on
both stores (the ``store`` fixture): marks of the legacy weekly layout stay duplicates until
their window passes, an index entry of the previous layout still takes feedback, and the
packed index answers exactly what the old text record held, whatever the lead's route."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio
from decision.sale_support import KEY as SALE_KEY
from decision.sale_support import Sellers, buyers_network, distributed, person
from support import (
    ADVERTISER,
    DAY_MS,
    HOUR_MS,
    T0,
    StoreView,
    decide_one,
    dedup,
    fingerprint,
    request,
)

from gateway.config.load import load_config, parse_config
from gateway.config.model import DedupScope
from gateway.decision.engine import DecisionEngine
from gateway.decision.model import Decision, DecisionRequest, LeadIndexEntry
from gateway.decision.plan import index_entry
from gateway.decision.sale_plan import sale_route
from gateway.errors import StoreUnavailable
from gateway.leads.email import normalize_email
from gateway.leads.fingerprint import Fingerprinter
from gateway.leads.ids import new_lead_id
from gateway.privacy.erasure import person_marks
from gateway.storage import keys
from gateway.storage.base import FeedbackRef, LeadProbe, SaleOpening, Store
from gateway.storage.memory import MemoryStore, _Entry
from gateway.storage.redis import RedisStore, _decide_parts
from gateway.types import AdvertiserId, CampaignId, ChannelId, FingerprintKey, LeadId, PartnerId

ACCEPTED, DUPLICATE = Decision.ACCEPTED, Decision.DUPLICATE
WEEK_MS = keys.LEGACY_SEEN_GENERATION_MS
#: The upgrade: the first process of the packed layout met this Redis then.
UPGRADED_MS = T0 - 3 * DAY_MS


async def _upgraded(store: Store, redis_url: str | None) -> None:
    """Make ``store`` know the upgrade happened at ``UPGRADED_MS``."""
    if isinstance(store, MemoryStore):
        store.legacy_seen_until_ms = UPGRADED_MS + keys.LEGACY_SEEN_GRACE_MS
        return
    assert redis_url is not None
    client = redis.asyncio.Redis.from_url(redis_url)
    try:
        await client.set(keys.SEEN_LAYOUT_SINCE, UPGRADED_MS)
    finally:
        await client.aclose()


async def _plant(store: Store, redis_url: str | None, key: str, field: str, value: Any) -> None:
    """Write what the previous version wrote (a hash field or, with ``field`` "", a string)."""
    if isinstance(store, MemoryStore):
        entry = store._data.get(key)
        if field and entry is not None and isinstance(entry.value, dict):
            entry.value[field] = value
        else:
            store._data[key] = _Entry({field: value} if field else value, T0 + 400 * DAY_MS)
        return
    assert redis_url is not None
    client = redis.asyncio.Redis.from_url(redis_url)
    try:
        if field:
            await client.hset(key, field, value)
        else:
            await client.set(key, value)
        await client.pexpire(key, 400 * DAY_MS)
    finally:
        await client.aclose()


def _url(store: Store, request: pytest.FixtureRequest) -> str | None:
    return str(request.getfixturevalue("redis_url")) if isinstance(store, RedisStore) else None


def _legacy_mark(
    person: str, at_ms: int, scope: DedupScope = DedupScope.CAMPAIGN
) -> tuple[str, str, int]:
    """Where and how the previous version remembered ``person`` accepted at ``at_ms``."""
    spec = dedup(person, scope)
    mark = keys.seen_mark(fingerprint(person))
    head = keys.legacy_seen_head(spec.space.prefix(), mark.key_id)
    week = at_ms // WEEK_MS
    return keys.legacy_seen(head, week, mark.legacy_bucket), mark.field, at_ms - week * WEEK_MS


@pytest.mark.parametrize(
    ("accepted_before_ms", "later_ms", "expected"),
    [
        (10 * DAY_MS, DAY_MS, DUPLICATE),  # a legacy mark inside the 30-day window
        (29 * DAY_MS, 0, DUPLICATE),
        (10 * DAY_MS, 20 * DAY_MS - 1, DUPLICATE),
        (10 * DAY_MS, 20 * DAY_MS, ACCEPTED),  # its window has passed
        (31 * DAY_MS, 0, ACCEPTED),
    ],
)
async def test_a_mark_of_the_legacy_layout_counts_until_its_window_passes(
    store: Store,
    request: pytest.FixtureRequest,
    accepted_before_ms: int,
    later_ms: int,
    expected: Decision,
) -> None:
    url = _url(store, request)
    await _upgraded(store, url)
    key, field, offset = _legacy_mark("ann", UPGRADED_MS - accepted_before_ms)
    await _plant(store, url, key, field, offset)
    engine = DecisionEngine(store)

    outcome = await decide_one(engine, request_at(UPGRADED_MS + later_ms, "ann"))

    assert outcome.decision is expected


def request_at(now_ms: int, person: str) -> DecisionRequest:
    return request(now_ms, dedup=[dedup(person)])


async def test_a_legacy_mark_written_during_the_rolling_upgrade_still_counts(
    store: Store, request: pytest.FixtureRequest
) -> None:
    # An old process kept writing the legacy layout for a few hours after the first new one.
    url = _url(store, request)
    await _upgraded(store, url)
    key, field, offset = _legacy_mark("bob", UPGRADED_MS + 5 * HOUR_MS)
    await _plant(store, url, key, field, offset)

    outcome = await decide_one(DecisionEngine(store), request_at(T0, "bob"))

    assert outcome.decision is DUPLICATE


async def test_new_marks_go_to_the_packed_layout_only(
    store: Store, request: pytest.FixtureRequest
) -> None:
    url = _url(store, request)
    await _upgraded(store, url)
    engine = DecisionEngine(store)
    await decide_one(engine, request_at(T0, "cy"))

    (key,) = dedup("cy").at(T0).keys[:1]
    legacy_key, _, _ = _legacy_mark("cy", T0)
    again = await decide_one(engine, request_at(T0 + 1, "cy"))

    assert again.decision is DUPLICATE
    if isinstance(store, MemoryStore):
        assert key in store._data
        assert legacy_key not in store._data
    else:
        client = redis.asyncio.Redis.from_url(str(url))
        try:
            assert (await client.exists(key), await client.exists(legacy_key)) == (1, 0)
        finally:
            await client.aclose()


def test_once_every_window_starts_after_the_upgrade_no_legacy_hash_is_read() -> None:
    until_ms = UPGRADED_MS + keys.LEGACY_SEEN_GRACE_MS
    window_ms = 30 * DAY_MS

    def legacy_keys(now_ms: int) -> list[str]:
        names, _ = _decide_parts(request_at(now_ms, "dee"), None, until_ms)
        return [str(k) for k in names if ":seen:" in str(k) and ":g" not in str(k)]

    assert len(legacy_keys(until_ms)) in (5, 6)  # every week of the window
    assert len(legacy_keys(until_ms + window_ms - 1)) == 1  # the window's last instant
    assert legacy_keys(until_ms + window_ms) == []


def test_the_packed_layout_reads_far_fewer_hashes_than_the_weekly_one() -> None:
    # The bench campaign: 30 and 90 days, two identities. Weekly: 38-42 lookups.
    generations = [
        len(keys.seen_generations(now_ms, window_ms))
        for now_ms in range(T0, T0 + 30 * DAY_MS, DAY_MS)
        for window_ms in (30 * DAY_MS, 90 * DAY_MS)
    ]
    assert max(generations) <= 5
    assert 2 * max(generations[0::2]) + 2 * max(generations[1::2]) <= 2 * (3 + 5)


async def test_an_erasure_finds_marks_of_both_layouts(
    store: Store, request: pytest.FixtureRequest
) -> None:
    url = _url(store, request)
    await _upgraded(store, url)
    config = load_config(Path(__file__).parents[2] / "bench" / "scenarios" / "gateway.yaml")
    fingerprinter = Fingerprinter([FingerprintKey("k1", b"k" * 32)])
    (fp,) = fingerprinter.lookups("email", "ann@example.fr")
    mark = keys.seen_mark(fp)
    space = keys.SeenSpace(
        AdvertiserId("bench-adv"), DedupScope.ADVERTISER, CampaignId("bench"), ChannelId("email")
    )
    new_key = keys.seen(space, mark, keys.seen_generation(T0))
    legacy_key = keys.legacy_seen(
        keys.legacy_seen_head(space.prefix(), mark.key_id),
        (T0 - 20 * DAY_MS) // WEEK_MS,
        mark.legacy_bucket,
    )
    for key in (new_key, legacy_key):
        await _plant(store, url, key, mark.field, 1)

    marks = person_marks(config, [fp], T0)
    erased = await store.erase_fields(marks)

    assert {new_key, legacy_key} <= {key for key, _ in marks}
    assert erased == 2


# -- the lead index ----------------------------------------------------------------------------

ROUTE = "p-alpha|bench|email|1209600000|7776000000"  # 14-day returns, 90-day feedback


def _entry(lead_id: str, route: str = ROUTE) -> LeadIndexEntry:
    feedback_ms = int(route.rsplit("|", 1)[1])
    return index_entry(ADVERTISER, LeadId(lead_id), route, keys.lead_route(route), feedback_ms)


def _ref(lead_id: str, status: str = "converted") -> FeedbackRef:
    return FeedbackRef(
        keys.lead_index(ADVERTISER, lead_id),
        keys.legacy_lead_index(ADVERTISER, lead_id),
        keys.lead_feedback(ADVERTISER, lead_id),
        status,
    )


def _lead_at(at_ms: int) -> LeadId:
    """A UUIDv7 whose time is ``at_ms``."""
    raw = bytearray(bytes.fromhex(new_lead_id().replace("-", "")))
    raw[:6] = at_ms.to_bytes(6, "big")
    text = raw.hex()
    return LeadId(f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}")


async def _accept(store: Store, lead_id: LeadId, now_ms: int, route: str = ROUTE) -> None:
    rq = request(now_ms, dedup=[dedup(f"person-{lead_id}")], lead_id=lead_id)
    rq = dataclasses.replace(rq, index=_entry(lead_id, route))
    assert (await decide_one(DecisionEngine(store), rq)).decision is ACCEPTED


@pytest.mark.parametrize(
    "delay_ms",
    # A batch's ids are made after its request time (negative); a retry with its
    # Idempotency-Key decides hours after its id was made.
    [0, 1, -1, -300, -512, -513, 511, 512, 3 * HOUR_MS],
)
async def test_the_packed_index_answers_the_old_text_record(store: Store, delay_ms: int) -> None:
    lead_id = _lead_at(T0)
    accepted_ms = T0 + delay_ms
    await _accept(store, lead_id, accepted_ms)

    ((result, index),) = await store.record_feedback([_ref(lead_id)], accepted_ms + DAY_MS)

    assert result == "ok"
    assert index == (
        f"p-alpha|bench|email|{accepted_ms}|{accepted_ms + 14 * DAY_MS}|{accepted_ms + 90 * DAY_MS}"
    )


async def test_two_routes_whose_codes_meet_keep_their_own_records(store: Store) -> None:
    first, second = _lead_at(T0), _lead_at(T0 + 5)
    other = "p-beta|bench|coreg|0|86400000"
    await _accept(store, first, T0)
    # The registry already holds another route under the code the second one would use.
    await _accept(store, second, T0 + 5, other)
    clash = _entry(second, other)
    await _plant_route(store, clash.routes, str(clash.code), "p-x|other|site|0|1")
    third = _lead_at(T0 + 9)
    await _accept(store, third, T0 + 9, other)

    answers = await store.record_feedback([_ref(first), _ref(third)], T0 + HOUR_MS)

    assert [index.split("|")[0] for _, index in answers] == ["p-alpha", "p-beta"]
    assert answers[1][1] == f"p-beta|bench|coreg|{T0 + 9}|{T0 + 9}|{T0 + 9 + DAY_MS}"


async def _plant_route(store: Store, key: str, code: str, route: str) -> None:
    if isinstance(store, MemoryStore):
        entry = store._data[key]
        assert isinstance(entry.value, dict)
        entry.value[code] = route
        return
    assert isinstance(store, RedisStore)
    await store._pipe.execute([("HSET", key, code, route)])


async def test_feedback_finds_a_lead_indexed_by_the_previous_layout(
    store: Store, request: pytest.FixtureRequest
) -> None:
    lead_id = _lead_at(T0)
    record = f"p-gamma|bench|comparator|{T0}|{T0 + DAY_MS}|{T0 + 30 * DAY_MS}"
    await _plant(
        store, _url(store, request), keys.legacy_lead_index(ADVERTISER, lead_id), "", record
    )

    answers = await store.record_feedback(
        [_ref(lead_id), _ref(lead_id, "returned"), _ref(lead_id)], T0 + 2 * DAY_MS
    )

    assert answers == [("ok", record), ("window", record), ("repeat", record)]


async def test_feedback_ends_with_the_feedback_window_not_the_weeks_hash(store: Store) -> None:
    lead_id = _lead_at(T0)
    await _accept(store, lead_id, T0, "p-alpha|bench|email|0|86400000")

    inside = await store.record_feedback([_ref(lead_id)], T0 + DAY_MS)
    after = await store.record_feedback([_ref(lead_id, "rejected")], T0 + DAY_MS + 1)

    assert [r for r, _ in inside + after] == ["ok", "unknown"]


@pytest.mark.parametrize("fresh", [True, False])
async def test_a_redis_learns_when_legacy_marks_can_have_been_written(
    redis_url: str, fresh: bool
) -> None:
    client = redis.asyncio.Redis.from_url(redis_url)
    try:
        if not fresh:
            await client.set("lg:{a:acme}:seen:c:spring:k1:2960:0001", "written before")
        store = RedisStore(redis_url)
        try:
            await store.ping()
            again = RedisStore(redis_url)
            await again.ping()
            await again.close()
        finally:
            await store.close()
        since = int(await client.get(keys.SEEN_LAYOUT_SINCE) or -1)
        ttl_ms = await client.pttl(keys.SEEN_LAYOUT_SINCE)
    finally:
        await client.aclose()

    # An empty Redis never held the legacy layout: nothing legacy is ever read. Otherwise the
    # first process's time is kept (the second process reads it, it does not move it).
    assert (since == 0) is fresh
    assert (
        store.legacy_seen_until_ms
        == again.legacy_seen_until_ms
        == (since + keys.LEGACY_SEEN_GRACE_MS)
    )
    assert 0 < ttl_ms <= keys.SEEN_LAYOUT_TTL_MS


@pytest.mark.parametrize(("delay_ms", "packed"), [(0, True), (-400, True), (3 * HOUR_MS, False)])
async def test_an_entry_is_a_small_integer_unless_its_acceptance_is_far_from_its_id(
    store: Store, request: pytest.FixtureRequest, delay_ms: int, packed: bool
) -> None:
    lead_id = _lead_at(T0)
    await _accept(store, lead_id, T0 + delay_ms)

    slot = keys.lead_index(ADVERTISER, lead_id)
    if isinstance(store, MemoryStore):
        value = str(store._zset(slot.key, T0 + delay_ms)[slot.field])
    else:
        client = redis.asyncio.Redis.from_url(str(_url(store, request)), decode_responses=True)
        try:
            value = str(await client.hget(slot.key, slot.field))
            encoding = await client.object("encoding", slot.key)
        finally:
            await client.aclose()
        assert encoding == "listpack"
    # A 4-byte listpack integer (below 2^31) when packed.
    assert (value.isdigit() and int(value) < 2**31) is packed


# -- distribution meets the layouts --------------------------------------------------------------


def _probe(lead_id: str) -> LeadProbe:
    return LeadProbe(
        keys.lead_index(ADVERTISER, lead_id), keys.legacy_lead_index(ADVERTISER, lead_id)
    )


async def test_a_retry_finds_a_sale_the_previous_layout_indexed_for_a_lead_id_before_it(
    store: Store, request: pytest.FixtureRequest
) -> None:
    """A keyed retry across the upgrade: its first attempt, made by a process of the previous
    version, indexed the lead under a key of its own; the retry's probe finds it there."""
    url = _url(store, request)
    await _upgraded(store, url)
    made_ms = UPGRADED_MS - HOUR_MS
    lead_id = _lead_at(made_ms)
    record = f"p-one|sold|email|{made_ms}|{made_ms}|{made_ms + 30 * DAY_MS}"
    await _plant(store, url, keys.legacy_lead_index(ADVERTISER, lead_id), "", record)

    (opened,) = await store.open_sales([SaleOpening((_probe(lead_id),), (), None)])

    assert opened.sold == (True,)


async def test_a_lead_id_made_after_the_upgrade_is_probed_in_the_packed_index_alone(
    store: Store, request: pytest.FixtureRequest
) -> None:
    """No process of the previous version can have indexed a lead id made after the upgrade
    (and its day of rolling upgrade): its probe does not read the previous layout's key (one
    planted here to show it is not read), only the packed index its sales write."""
    url = _url(store, request)
    await _upgraded(store, url)
    made_ms = UPGRADED_MS + keys.LEGACY_SEEN_GRACE_MS + HOUR_MS
    sold, planted = _lead_at(made_ms), _lead_at(made_ms + 1)
    await _accept(store, sold, made_ms)
    record = f"p-one|sold|email|{made_ms}|{made_ms}|{made_ms + 30 * DAY_MS}"
    await _plant(store, url, keys.legacy_lead_index(ADVERTISER, planted), "", record)

    (opened,) = await store.open_sales([SaleOpening((_probe(sold), _probe(planted)), (), None)])

    assert opened.sold == (True, False)


def test_buyer_scopes_read_the_weekly_layout_and_a_campaigns_own_slot_does_not() -> None:
    """A buyer's marks are its advertiser's, in a slot that predates the layout; a distributed
    campaign's own slot is as new as the layout: no weekly mark can be there to read."""
    exclusive = distributed(
        "three",
        [{"advertiser": b} for b in ("b1", "b2")],
        dedup=[{"scope": "campaign", "window": "30d"}],
    )
    config = parse_config(buyers_network([exclusive]))
    campaign = config.campaigns[CampaignId("three")]
    route = sale_route(campaign, config.partners[PartnerId("p-one")], ChannelId("email"))

    now_ms = int(time.time() * 1000)
    assert [s.frame("k1", now_ms).legacy_head for s in route.campaign.scopes] == [""]
    for buyer in route.buyers.values():
        assert buyer.scopes
        assert all(s.frame("k1", now_ms).legacy_head.startswith(s.prefix) for s in buyer.scopes)


async def test_a_buyers_weekly_mark_from_before_the_upgrade_still_refuses_the_sale(
    store: Store, request: pytest.FixtureRequest
) -> None:
    """A person the buyer's advertiser accepted 13 days ago, under the weekly layout, is
    within its 30-day advertiser-wide window: the buyer passes, the next one buys."""
    url = _url(store, request)
    await _upgraded(store, url)
    exclusive = distributed("three", [{"advertiser": b} for b in ("b1", "b2")])
    config = parse_config(buyers_network([exclusive]))
    ann = person("ann")
    (fp, *_) = Fingerprinter([SALE_KEY]).lookups(
        "email", normalize_email(str(ann["email"])).identity
    )
    mark = keys.seen_mark(fp)
    space = keys.SeenSpace(
        AdvertiserId("b1"), DedupScope.ADVERTISER, CampaignId("three"), ChannelId("email")
    )
    accepted_ms = UPGRADED_MS - 10 * DAY_MS
    week = accepted_ms // WEEK_MS
    legacy = keys.legacy_seen(
        keys.legacy_seen_head(space.prefix(), mark.key_id), week, mark.legacy_bucket
    )
    await _plant(store, url, legacy, mark.field, accepted_ms - week * WEEK_MS)
    shop = Sellers(config, [store], StoreView(store, url), clock=lambda: T0 / 1000)

    answer = await shop.post("three", ann)

    assert answer.decision is ACCEPTED
    assert answer.sales is not None
    assert [s.buyer for s in answer.sales] == ["b2"]


async def test_the_layout_is_learnt_again_after_a_reconnect(redis_url: str) -> None:
    """A Redis put behind a running gateway (a failover, a restore) may have met the packed
    layout at another time than the one before it: after a new connection, the gateway reads
    the weekly layout as that Redis's own note says."""
    client = redis.asyncio.Redis.from_url(redis_url)
    store = RedisStore(redis_url, connections=1)
    try:
        await client.set(keys.SEEN_LAYOUT_SINCE, UPGRADED_MS)
        await store.ping()
        first = store.legacy_seen_until_ms
        await client.set(keys.SEEN_LAYOUT_SINCE, UPGRADED_MS - DAY_MS)
        await client.client_kill_filter(_type="normal", skipme=True)  # the store's connection
        for _ in range(3):  # the dead socket may fail once (nothing is retried)
            try:
                await store.ping()
            except StoreUnavailable:
                continue
        await store.ping()
        second = store.legacy_seen_until_ms
    finally:
        await store.close()
        await client.aclose()

    assert first == UPGRADED_MS + keys.LEGACY_SEEN_GRACE_MS
    assert second == UPGRADED_MS - DAY_MS + keys.LEGACY_SEEN_GRACE_MS


async def test_nothing_is_learnt_from_an_evicting_redis(redis_url: str) -> None:
    """The maxmemory check of every new connection comes first: an evicting Redis is refused
    before the layout is read from it (or noted in it)."""
    client = redis.asyncio.Redis.from_url(redis_url)
    store = RedisStore(redis_url)
    try:
        await client.config_set("maxmemory-policy", "allkeys-lru")
        with pytest.raises(StoreUnavailable):
            await decide_one(DecisionEngine(store), request_at(T0, "eve"))
        refused_note = await client.exists(keys.SEEN_LAYOUT_SINCE)
        await client.config_set("maxmemory-policy", "noeviction")
        outcome = await decide_one(DecisionEngine(store), request_at(T0, "eve"))
        noted = await client.exists(keys.SEEN_LAYOUT_SINCE)
    finally:
        await store.close()
        await client.aclose()

    assert refused_note == 0
    assert outcome.decision is ACCEPTED
    assert noted == 1


async def test_decisions_made_while_the_layout_is_learnt_wait_for_it(redis_url: str) -> None:
    """At start, a burst of decisions on a Redis upgraded three days ago: every one reads the
    weekly layout, none decides with what the store knew before it learnt it (nothing)."""
    people = [f"early-{n}" for n in range(20)]
    client = redis.asyncio.Redis.from_url(redis_url)
    try:
        await client.set(keys.SEEN_LAYOUT_SINCE, UPGRADED_MS)
        for name in people:
            key, field, offset = _legacy_mark(name, UPGRADED_MS - DAY_MS)
            await client.hset(key, field, offset)
    finally:
        await client.aclose()
    store = RedisStore(redis_url)
    engine = DecisionEngine(store)
    try:
        outcomes = await asyncio.gather(
            *(decide_one(engine, request_at(T0, name)) for name in people)
        )
    finally:
        await store.close()

    assert {o.decision for o in outcomes} == {DUPLICATE}
