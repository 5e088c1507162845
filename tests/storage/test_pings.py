"""Ping/post (issue 20), on the embedded store, a real Redis and (the races) the real Redis
Cluster: an accepted ping holds cap room until it expires; the post naming it is counted in
that room, exactly once however many posts name it at once.

Requests are built by hand (``support``) with their holds, as ``plan.build_request`` builds
them for a campaign with ``ping_ttl_s``; time never passes for real: each request carries its
``now_ms``.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections import Counter
from collections.abc import AsyncIterator, Sequence

import pytest
import pytest_asyncio
from support import (
    ADVERTISER,
    CAMPAIGN,
    DAY_MS,
    PARTNER,
    T0,
    DedupSpec,
    calendar_cap,
    decide_one,
    dedup,
    idempotency,
    request,
    reservation,
    rolling_cap,
)

from gateway.config.model import CapSubject
from gateway.decision.engine import DecisionEngine
from gateway.decision.model import (
    CapCheck,
    Decision,
    DecisionOutcome,
    DecisionRequest,
    IdempotencyRef,
    PersonReservation,
    PingStatus,
)
from gateway.decision.ping import USED, PingRecord, commit_hold, ping_state, take_hold
from gateway.decision.plan import index_entry
from gateway.storage import keys
from gateway.storage.base import FeedbackRef, Store
from gateway.storage.memory import MemoryStore
from gateway.storage.redis import RedisStore
from gateway.types import AdvertiserId, CampaignId

ACCEPTED, DUPLICATE, CAPPED = Decision.ACCEPTED, Decision.DUPLICATE, Decision.CAPPED
TTL_MS = 60_000
RACERS = 50
OTHER_CAMPAIGN = CampaignId("acme-peak")


def with_holds(cap: CapCheck) -> CapCheck:
    """``cap`` as the plan makes it for a campaign whose pings may hold room on it."""
    return dataclasses.replace(cap, holds=keys.cap_holds(cap.key))


def ping(
    now_ms: int,
    ping_id: str,
    caps: Sequence[CapCheck],
    *,
    person: str = "",
    slots: Sequence[PersonReservation] = (),
    dry_run: bool = False,
) -> DecisionRequest:
    """A ping (TAKE) holding ``caps`` for ``TTL_MS``."""
    specs = [dedup(person)] if person else []
    rq = request(now_ms, dedup=specs, caps=caps, person=slots, dry_run=dry_run)
    record = PingRecord(PARTNER, CAMPAIGN, now_ms + TTL_MS, "k1.match-digest")
    hold = take_hold(ADVERTISER, ping_id, record, now_ms=now_ms)
    return dataclasses.replace(rq, payload=b"", hold=hold)


def post(
    now_ms: int,
    ping_id: str,
    caps: Sequence[CapCheck],
    *,
    person: str = "",
    dedup_specs: Sequence[DedupSpec] = (),
    dry_run: bool = False,
    idem: IdempotencyRef | None = None,
) -> DecisionRequest:
    """A post naming ``ping_id`` (COMMIT)."""
    specs = list(dedup_specs) or ([dedup(person)] if person else [])
    rq = request(now_ms, dedup=specs, caps=caps, dry_run=dry_run, idempotency=idem)
    return dataclasses.replace(rq, hold=commit_hold(ADVERTISER, ping_id))


async def counted(store: Store, cap: CapCheck, now_ms: int) -> tuple[int, int]:
    """The cap's counter and its live holds."""
    count, live = await store.read_for_metrics(
        [("GET", cap.key), ("ZCOUNT", cap.holds, f"({now_ms}", "+inf")]
    )
    return int(count or 0), int(live)


async def record_of(store: Store, ping_id: str, now_ms: int) -> str | None:
    (text,) = await store.read_pings([keys.ping_record(ADVERTISER, ping_id)], now_ms)
    return text


def _decided(outcomes: Sequence[DecisionOutcome | None]) -> list[DecisionOutcome]:
    assert all(o is not None for o in outcomes), "no request here reuses an Idempotency-Key"
    return [o for o in outcomes if o is not None]


@dataclasses.dataclass(frozen=True)
class Gateways:
    """Gateways (engines over their own store) sharing one memory."""

    stores: Sequence[Store]

    @property
    def store(self) -> Store:
        return self.stores[0]

    async def race(self, requests: Sequence[DecisionRequest]) -> list[DecisionOutcome]:
        """Every request in its own ``engine.run`` call, all at once, spread over the
        gateways."""
        engines = [DecisionEngine(store) for store in self.stores]
        runs = await asyncio.gather(
            *(engines[i % len(engines)].run([rq]) for i, rq in enumerate(requests))
        )
        return _decided([outcome for (outcome,) in runs])


@pytest_asyncio.fixture(params=["embedded", "redis", "redis x3", "cluster"])
async def gateways(request: pytest.FixtureRequest) -> AsyncIterator[Gateways]:
    """The gateways of a race: one on the embedded store, one on a Redis, three on one
    Redis, or one on a real 3-primary Redis Cluster."""
    stores: list[Store]
    if request.param == "embedded":
        stores = [MemoryStore()]
    else:
        url = request.getfixturevalue("cluster_url" if request.param == "cluster" else "redis_url")
        stores = [RedisStore(url) for _ in range(3 if request.param.endswith("x3") else 1)]
    try:
        yield Gateways(stores)
    finally:
        for store in stores:
            await store.close()


# -- races ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("rolling", [False, True])
async def test_50_pings_at_once_against_a_cap_of_10_hold_exactly_10_until_they_expire(
    gateways: Gateways, rolling: bool
) -> None:
    cap = with_holds(rolling_cap(10, 3_600_000) if rolling else calendar_cap(10))
    store = gateways.store

    first = await gateways.race([ping(T0, f"p{i}", [cap]) for i in range(RACERS)])

    assert Counter((o.decision, o.ping_status) for o in first) == {
        (ACCEPTED, PingStatus.HELD): 10,
        (CAPPED, ""): RACERS - 10,
    }
    assert {o.reasons for o in first if o.decision is CAPPED} == {(cap.reason,)}
    # A ping counts nothing: the room is held, not taken.
    assert await counted(store, cap, T0) == (0, 10)
    (late,) = await gateways.race([ping(T0 + TTL_MS - 1, "late", [cap])])
    assert (late.decision, late.ping_status) == (CAPPED, "")

    # The holds end at T0 + TTL_MS: their room returns, to exactly 10 new pings.
    again = await gateways.race([ping(T0 + TTL_MS, f"q{i}", [cap]) for i in range(RACERS)])

    assert Counter(o.decision for o in again) == {ACCEPTED: 10, CAPPED: RACERS - 10}
    assert await counted(store, cap, T0 + TTL_MS) == (0, 10)
    # The ended holds were removed as the new ones were taken: the set holds live pings only.
    (held,) = await store.read_for_metrics([("ZCOUNT", cap.holds, "0", "+inf")])
    assert int(held) == 10


async def test_two_posts_naming_one_ping_at_once_commit_it_once(
    gateways: Gateways,
) -> None:
    cap = with_holds(calendar_cap(20))
    pings = [ping(T0, f"p{i}", [cap]) for i in range(20)]
    assert {o.ping_status for o in await gateways.race(pings)} == {PingStatus.HELD}

    posts = [post(T0 + 1, f"p{i // 2}", [cap], person=f"person-{i}") for i in range(40)]
    outcomes = await gateways.race(posts)

    assert Counter((o.decision, o.ping_status) for o in outcomes) == {
        (ACCEPTED, PingStatus.COMMITTED): 20,
        # Decided afresh, the room gone: the other 19 are held, 20 counted.
        (CAPPED, PingStatus.USED): 20,
    }
    for i in range(20):
        pair = {outcomes[2 * i].ping_status, outcomes[2 * i + 1].ping_status}
        assert pair == {PingStatus.COMMITTED, PingStatus.USED}
    assert await counted(gateways.store, cap, T0 + 1) == (20, 0)


# -- the post ------------------------------------------------------------------------------------


async def test_a_post_naming_its_ping_takes_the_room_the_ping_held(
    engine: DecisionEngine, store: Store
) -> None:
    cap = with_holds(calendar_cap(10))
    for i in range(10):
        await decide_one(engine, ping(T0, f"p{i}", [cap]))

    plain = await decide_one(engine, request(T0 + 1, dedup=[dedup("ann")], caps=[cap]))
    committed = await decide_one(engine, post(T0 + 2, "p3", [cap], person="bob"))
    after = await decide_one(engine, request(T0 + 3, dedup=[dedup("cid")], caps=[cap]))

    assert (plain.decision, plain.reasons, plain.ping_status) == (CAPPED, (cap.reason,), "")
    assert (committed.decision, committed.ping_status) == (ACCEPTED, PingStatus.COMMITTED)
    # Counted once, its hold gone: 1 + 9 holds, the cap still full.
    assert await counted(store, cap, T0 + 3) == (1, 9)
    assert after.decision is CAPPED
    assert await record_of(store, "p3", T0 + 3) == USED
    status, record = ping_state(await record_of(store, "p4", T0 + 3), T0 + 3)
    assert (status, record) == (
        PingStatus.HELD,
        PingRecord(PARTNER, CAMPAIGN, T0 + TTL_MS, "k1.match-digest"),
    )


async def test_a_post_after_its_ping_expired_or_naming_an_unknown_one_is_decided_afresh(
    engine: DecisionEngine, store: Store
) -> None:
    cap = with_holds(calendar_cap(1))
    await decide_one(engine, ping(T0, "gone", [cap]))
    # The first hold ends at T0 + TTL_MS; another ping takes the room then.
    taken = await decide_one(engine, ping(T0 + TTL_MS, "next", [cap]))

    expired = await decide_one(engine, post(T0 + TTL_MS + 1, "gone", [cap], person="ann"))
    unknown = await decide_one(engine, post(T0 + TTL_MS + 2, "never", [cap], person="bob"))
    committed = await decide_one(engine, post(T0 + TTL_MS + 3, "next", [cap], person="cid"))
    used = await decide_one(engine, post(T0 + TTL_MS + 4, "next", [cap], person="dan"))

    assert taken.ping_status == PingStatus.HELD
    assert (expired.decision, expired.ping_status) == (CAPPED, PingStatus.EXPIRED)
    assert (unknown.decision, unknown.ping_status) == (CAPPED, PingStatus.UNKNOWN)
    assert (committed.decision, committed.ping_status) == (ACCEPTED, PingStatus.COMMITTED)
    assert (used.decision, used.ping_status) == (CAPPED, PingStatus.USED)
    status, record = ping_state(await record_of(store, "gone", T0 + TTL_MS), T0 + TTL_MS)
    assert status is PingStatus.EXPIRED
    assert record is not None


async def test_an_expired_ping_with_room_left_is_accepted_afresh(
    engine: DecisionEngine, store: Store
) -> None:
    cap = with_holds(calendar_cap(1))
    await decide_one(engine, ping(T0, "slow", [cap]))

    late = await decide_one(engine, post(T0 + TTL_MS, "slow", [cap], person="ann"))

    assert (late.decision, late.ping_status) == (ACCEPTED, PingStatus.EXPIRED)
    assert await counted(store, cap, T0 + TTL_MS) == (1, 0)


async def test_a_refused_post_gives_its_pings_room_back(
    engine: DecisionEngine, store: Store
) -> None:
    cap = with_holds(calendar_cap(2))
    # Two pings of one person: both hold (a ping remembers nobody).
    first = await decide_one(engine, ping(T0, "p1", [cap], person="ann"))
    second = await decide_one(engine, ping(T0 + 1, "p2", [cap], person="ann"))
    assert {first.ping_status, second.ping_status} == {PingStatus.HELD}

    accepted = await decide_one(engine, post(T0 + 2, "p1", [cap], person="ann"))
    refused = await decide_one(engine, post(T0 + 3, "p2", [cap], person="ann"))

    assert (accepted.decision, accepted.ping_status) == (ACCEPTED, PingStatus.COMMITTED)
    assert (refused.decision, refused.reasons) == (DUPLICATE, ("duplicate.campaign",))
    assert refused.ping_status == PingStatus.RELEASED
    assert await counted(store, cap, T0 + 3) == (1, 0)
    assert await record_of(store, "p2", T0 + 3) == USED
    # The room p2 held is free again.
    bob = await decide_one(engine, request(T0 + 4, dedup=[dedup("bob")], caps=[cap]))
    assert bob.decision is ACCEPTED


async def test_a_post_refused_in_the_persons_slot_gives_its_pings_room_back(
    engine: DecisionEngine, store: Store
) -> None:
    def ann(advertiser: AdvertiserId) -> PersonReservation:
        return reservation("ann", advertiser, network_window_ms=TTL_MS * 100)

    cap = with_holds(calendar_cap(1))
    await decide_one(engine, ping(T0, "p1", [cap], slots=[ann(ADVERTISER)]))
    globex = AdvertiserId("globex")
    await decide_one(engine, request(T0 + 1, person=[ann(globex)], advertiser=globex))
    refused = dataclasses.replace(
        request(T0 + 2, person=[ann(ADVERTISER)], caps=[cap]), hold=commit_hold(ADVERTISER, "p1")
    )

    outcome = await decide_one(engine, refused)

    assert (outcome.decision, outcome.reasons) == (DUPLICATE, ("duplicate.network",))
    assert outcome.ping_status == PingStatus.RELEASED
    assert await counted(store, cap, T0 + 2) == (0, 0)
    assert await record_of(store, "p1", T0 + 2) == USED


async def test_a_plain_post_is_capped_while_pings_hold_its_caps_or_its_advertisers(
    engine: DecisionEngine, store: Store
) -> None:
    campaign_cap = with_holds(calendar_cap(2))
    advertiser_cap = with_holds(calendar_cap(3, subject=CapSubject.ADVERTISER))
    for i in range(2):
        await decide_one(engine, ping(T0, f"p{i}", [campaign_cap, advertiser_cap]))

    def elsewhere(now_ms: int, person: str) -> DecisionRequest:
        # Another campaign of the advertiser: its own cap has no holds, the advertiser's has.
        own = calendar_cap(100, campaign=OTHER_CAMPAIGN)
        return request(now_ms, dedup=[dedup(person)], caps=[own, advertiser_cap])

    here = await decide_one(engine, request(T0 + 1, dedup=[dedup("ann")], caps=[campaign_cap]))
    there = await decide_one(engine, elsewhere(T0 + 2, "bob"))
    full = await decide_one(engine, elsewhere(T0 + 3, "cid"))
    freed = await decide_one(engine, elsewhere(T0 + TTL_MS, "dan"))

    assert (here.decision, here.reasons) == (CAPPED, ("cap.campaign.day",))
    assert there.decision is ACCEPTED  # 1 counted + 2 held = 3
    assert (full.decision, full.reasons) == (CAPPED, ("cap.advertiser.day",))
    assert freed.decision is ACCEPTED  # the holds ended


async def test_a_refused_ping_holds_nothing_and_a_ping_writes_nothing_else(
    engine: DecisionEngine, store: Store
) -> None:
    cap = with_holds(calendar_cap(5))
    await decide_one(engine, request(T0, dedup=[dedup("ann")], caps=[cap]))

    duplicate = await decide_one(engine, ping(T0 + 1, "dup", [cap], person="ann"))
    held = await decide_one(engine, ping(T0 + 2, "ok", [cap], person="bob"))
    # The ping remembered nobody: bob's post without the ping is accepted too.
    bob = await decide_one(engine, request(T0 + 3, dedup=[dedup("bob")], caps=[cap]))

    assert (duplicate.decision, duplicate.ping_status) == (DUPLICATE, "")
    assert await record_of(store, "dup", T0 + 1) is None
    assert (held.decision, held.ping_status) == (ACCEPTED, PingStatus.HELD)
    assert bob.decision is ACCEPTED
    assert await counted(store, cap, T0 + 3) == (2, 1)


async def test_test_mode_pings_and_posts_write_nothing(
    engine: DecisionEngine, store: Store
) -> None:
    cap = with_holds(calendar_cap(1))
    await decide_one(engine, ping(T0, "real", [cap]))

    dry_ping = await decide_one(engine, ping(T0 + 1, "dry", [cap], dry_run=True))
    dry_post = await decide_one(engine, post(T0 + 2, "real", [cap], person="ann", dry_run=True))

    assert (dry_post.decision, dry_post.ping_status) == (ACCEPTED, PingStatus.COMMITTED)
    # The ping's hold is still live and whole: nothing counted, nothing used.
    assert await counted(store, cap, T0 + 2) == (0, 1)
    status, _ = ping_state(await record_of(store, "real", T0 + 2), T0 + 2)
    assert status is PingStatus.HELD
    # A test ping is answered as it would be (the cap is held by "real") and holds nothing.
    assert (dry_ping.decision, dry_ping.ping_status) == (CAPPED, "")
    assert await record_of(store, "dry", T0 + 2) is None
    real = await decide_one(engine, post(T0 + 3, "real", [cap], person="ann"))
    assert (real.decision, real.ping_status) == (ACCEPTED, PingStatus.COMMITTED)


async def test_a_test_ping_with_room_says_it_would_hold_and_holds_nothing(
    engine: DecisionEngine, store: Store
) -> None:
    cap = with_holds(calendar_cap(1))

    dry = await decide_one(engine, ping(T0, "dry", [cap], dry_run=True))

    assert (dry.decision, dry.ping_status) == (ACCEPTED, PingStatus.HELD)
    assert await counted(store, cap, T0) == (0, 0)
    assert await record_of(store, "dry", T0) is None


async def test_a_replayed_post_reports_its_pings_status(
    engine: DecisionEngine, store: Store
) -> None:
    cap = with_holds(calendar_cap(1))
    await decide_one(engine, ping(T0, "p1", [cap]))
    key = idempotency("K1", "B1")

    first = await decide_one(engine, post(T0 + 1, "p1", [cap], person="ann", idem=key))
    replay = await decide_one(engine, post(T0 + 2, "p1", [cap], person="ann", idem=key))

    assert (first.decision, first.ping_status, first.replayed) == (
        ACCEPTED, PingStatus.COMMITTED, False,
    )  # fmt: skip
    assert (replay.decision, replay.ping_status, replay.replayed) == (
        ACCEPTED, PingStatus.COMMITTED, True,
    )  # fmt: skip
    assert replay.lead_id == first.lead_id
    assert await counted(store, cap, T0 + 2) == (1, 0)


async def test_a_ping_only_checks_the_persons_slot(engine: DecisionEngine, store: Store) -> None:
    def ann(unit: str) -> PersonReservation:
        return reservation(
            "ann", unit, network_window_ms=TTL_MS * 100, pressure_limit=1,
            pressure_window_ms=TTL_MS * 100,
        )  # fmt: skip

    cap = with_holds(calendar_cap(5))
    held = await decide_one(engine, ping(T0, "p1", [cap], slots=[ann(ADVERTISER)]))
    globex = AdvertiserId("globex")
    elsewhere = await decide_one(engine, request(T0 + 1, person=[ann(globex)], advertiser=globex))
    refused = await decide_one(engine, ping(T0 + 2, "p2", [cap], slots=[ann(ADVERTISER)]))

    assert held.ping_status == PingStatus.HELD
    # Had the ping marked ann network-wide, or taken her one pressure slot, globex could not
    # have her; now that globex does, a ping for her is refused as a post would be.
    assert elsewhere.decision is ACCEPTED
    assert (refused.decision, refused.reasons, refused.ping_status) == (
        DUPLICATE, ("duplicate.network",), "",
    )  # fmt: skip


# -- the stored answer and the record, pure ------------------------------------------------------


@pytest.mark.parametrize(
    ("stored", "buyers", "ping_status"),
    [
        ("d|lead-1|accepted|", (), ""),  # before distribution and pings
        ("d|lead-1|accepted||acme,globex", ("acme", "globex"), ""),  # before pings
        ("d|lead-1|accepted|||committed", (), "committed"),
        ("d|lead-1|capped|cap.campaign.day||released", (), "released"),
    ],
)
def test_stored_answers_of_every_version_decode(
    stored: str, buyers: tuple[str, ...], ping_status: str
) -> None:
    digest, outcome = DecisionOutcome.decode(stored)

    assert digest == "d"
    assert (outcome.buyers, outcome.ping_status, outcome.replayed) == (buyers, ping_status, True)
    fresh = dataclasses.replace(outcome, replayed=False)
    assert DecisionOutcome.decode(fresh.encode("d"))[1] == outcome


def test_a_ping_record_reads_back_whatever_its_match_holds() -> None:
    record = PingRecord(PARTNER, CAMPAIGN, T0 + TTL_MS, "k1.a|b|c")

    assert PingRecord.decode(record.encode()) == record
    assert record.encode().startswith(f"{T0 + TTL_MS}|")  # where decide.lua reads the end
    assert PingRecord.decode(USED) is None
    assert ping_state(None, T0) == (PingStatus.UNKNOWN, None)
    assert ping_state(USED, T0) == (PingStatus.USED, None)
    assert ping_state(record.encode(), T0 + TTL_MS - 1) == (PingStatus.HELD, record)
    assert ping_state(record.encode(), T0 + TTL_MS) == (PingStatus.EXPIRED, record)


def test_a_pings_keys_are_ids_in_the_advertisers_slot() -> None:
    cap = calendar_cap(1)
    hold = take_hold(
        ADVERTISER, "0192f1c2-7d5e-7a1b-9c3d-4e5f60718293",
        PingRecord(PARTNER, CAMPAIGN, T0 + TTL_MS, "m"), now_ms=T0,
    )  # fmt: skip

    assert keys.hash_slot_tag(keys.cap_holds(cap.key)) == keys.hash_slot_tag(cap.key)
    assert keys.hash_slot_tag(hold.record_key) == f"a:{ADVERTISER}"
    assert hold.record_key == f"lg:{{a:{ADVERTISER}}}:ping:0192f1c2-7d5e-7a1b-9c3d-4e5f60718293"
    assert hold.record_ttl_ms == TTL_MS + 15 * 60_000


async def test_a_batch_of_pings_and_posts_is_decided_in_order_each_as_if_alone(
    engine: DecisionEngine, store: Store
) -> None:
    # One decide.lua call on Redis: each lead's holds are read from the end of its own KEYS
    # and ARGV, beside leads with an Idempotency-Key, an index, or no holds at all.
    cap = with_holds(calendar_cap(2))
    other = calendar_cap(100, campaign=OTHER_CAMPAIGN)  # no holds
    route = f"{PARTNER}|{CAMPAIGN}|coreg|{DAY_MS}|{DAY_MS}"

    def indexed(rq: DecisionRequest) -> DecisionRequest:
        """Indexed for feedback, as the plan makes every post: the index's keys come before
        a post's holds."""
        entry = index_entry(ADVERTISER, rq.lead_id, route, keys.lead_route(route), DAY_MS)
        return dataclasses.replace(rq, index=entry)

    batch = [
        ping(T0, "p1", [cap], person="ann"),
        indexed(request(T0, dedup=[dedup("zed")], caps=[other])),
        ping(T0, "p2", [cap], person="bob"),
        indexed(request(T0, dedup=[dedup("cid")], caps=[cap])),  # both places held
        indexed(post(T0, "p1", [cap], person="ann", idem=idempotency("K1", "B1"))),
        indexed(post(T0, "p1", [cap], person="dan")),
        ping(T0, "p3", [cap], person="eve"),
        indexed(post(T0, "p2", [cap], person="ann")),  # ann is p1's now: released
        ping(T0, "p4", [cap], person="fay"),
        post(T0, "p4", [cap], person="fay"),  # not indexed: its holds follow its caps
    ]

    outcomes = _decided(await engine.run(batch))

    assert [(o.decision, o.ping_status) for o in outcomes] == [
        (ACCEPTED, PingStatus.HELD),
        (ACCEPTED, ""),
        (ACCEPTED, PingStatus.HELD),
        (CAPPED, ""),
        (ACCEPTED, PingStatus.COMMITTED),
        (CAPPED, PingStatus.USED),
        (CAPPED, ""),
        (DUPLICATE, PingStatus.RELEASED),
        (ACCEPTED, PingStatus.HELD),
        (ACCEPTED, PingStatus.COMMITTED),
    ]
    assert await counted(store, cap, T0) == (2, 0)
    refs = [
        FeedbackRef(
            keys.lead_index(ADVERTISER, rq.lead_id),
            keys.legacy_lead_index(ADVERTISER, rq.lead_id),
            keys.lead_feedback(ADVERTISER, rq.lead_id),
            "converted",
        )
        for rq in batch
    ]
    found = [result for result, _ in await store.record_feedback(refs, T0 + 1)]
    assert found == [
        "ok" if o.decision is ACCEPTED and rq.index is not None else "unknown"
        for rq, o in zip(batch, outcomes, strict=True)
    ]
