"""The sale capability of the store contract (``claim_sales``, ``open_sales``,
``close_sales``), on the embedded store and a real Redis (the ``store`` fixture): a
distributed campaign's own reservation in its slot, given back exactly, held by its lead id;
the key's lease; the stored answer with its buyers; every key expiring.

Requests are built by hand so every instant is the test's: time never passes for real.
"""

from __future__ import annotations

from dataclasses import replace

import redis.asyncio
from support import DAY_MS, HOUR_MS, PARTNER, T0, fingerprint, new_lead_id, request

from gateway.config.model import CalendarPeriod, CapRule, CapSubject, CapWindow, DedupScope
from gateway.decision.model import (
    CampaignReservation,
    CapCheck,
    ClaimStatus,
    Decision,
    DecisionOutcome,
    DedupCheck,
    IdempotencyRef,
)
from gateway.decision.plan import index_entry
from gateway.storage import keys
from gateway.storage.base import LeadProbe, SaleClaim, SaleClosing, SaleOpening, Store
from gateway.storage.redis import RedisStore
from gateway.types import AdvertiserId, CampaignId, ChannelId, LeadId

CAMPAIGN = CampaignId("sold")
CHANNEL = ChannelId("coreg")
WINDOW_MS = 30 * DAY_MS
ANCHOR = keys.campaign_anchor(CAMPAIGN)


def seen(person: str, now_ms: int, window_ms: int = WINDOW_MS) -> DedupCheck:
    mark = keys.seen_mark(fingerprint(person))
    generations = keys.seen_generations(now_ms, window_ms)
    prefix = keys.campaign_seen_prefix(CAMPAIGN, DedupScope.CAMPAIGN, CHANNEL)
    heads = keys.seen_heads(prefix, mark.key_id, generations)
    return DedupCheck(
        "duplicate.campaign",
        keys.seen_in(heads, mark),
        mark.field,
        generations[0],
        window_ms,
        WINDOW_MS,
    )


def day_cap(limit: int) -> CapCheck:
    rule = CapRule(CapSubject.CAMPAIGN, CapWindow(period=CalendarPeriod.DAY), limit)
    head = keys.campaign_cap_head(CAMPAIGN, rule, PARTNER, CHANNEL)
    return CapCheck(rule.reason, head + "2026-09-22", limit, rolling=False, span_ms=14 * HOUR_MS)


def hour_cap(limit: int) -> CapCheck:
    rule = CapRule(CapSubject.PARTNER, CapWindow(rolling_s=3600), limit)
    head = keys.campaign_cap_head(CAMPAIGN, rule, PARTNER, CHANNEL)
    return CapCheck("cap.partner.rolling", head + "3600", limit, rolling=True, span_ms=HOUR_MS)


def taking(
    person: str,
    now_ms: int,
    *,
    caps: tuple[CapCheck, ...] = (),
    lead_id: LeadId | None = None,
    dry_run: bool = False,
    window_ms: int = WINDOW_MS,
) -> CampaignReservation:
    lead = lead_id or new_lead_id()
    return CampaignReservation(
        key=keys.campaign_reservation(CAMPAIGN, lead),
        lead_id=lead,
        now_ms=now_ms,
        dry_run=dry_run,
        dedup=(seen(person, now_ms, window_ms),),
        caps=caps,
        ttl_ms=DAY_MS,
    )


async def reserve(store: Store, reservation: CampaignReservation) -> str:
    """Open the reservation alone; its refusal's reasons, or "" when taken."""
    (opened,) = await store.open_sales([SaleOpening((), (), reservation)])
    return ",".join(opened.refused.reasons) if opened.refused else ""


async def close(store: Store, reservation: CampaignReservation, *, sold: bool) -> None:
    await store.close_sales([SaleClosing(reservation, sold, ANCHOR)])


async def test_a_reservation_is_taken_then_refuses_the_same_person_and_a_full_cap(
    store: Store,
) -> None:
    cap = day_cap(2)
    assert await reserve(store, taking("ann", T0, caps=(cap,))) == ""
    assert await reserve(store, taking("ann", T0 + 1, caps=(cap,))) == "duplicate.campaign"
    assert await reserve(store, taking("bob", T0 + 2, caps=(cap,))) == ""
    assert await reserve(store, taking("cid", T0 + 3, caps=(cap,))) == "cap.campaign.day"


async def test_a_lead_not_sold_gives_back_its_marks_and_counts(store: Store) -> None:
    caps = (day_cap(1), hour_cap(1))
    ann = taking("ann", T0, caps=caps)
    assert await reserve(store, ann) == ""
    await close(store, ann, sold=False)

    # Ann is no duplicate, and both caps (calendar and rolling) have their room back.
    again = taking("ann", T0 + 1, caps=caps)
    assert await reserve(store, again) == ""
    await close(store, again, sold=True)
    assert await reserve(store, taking("bob", T0 + 2, caps=caps)) == (
        "cap.campaign.day,cap.partner.rolling"
    )
    assert await reserve(store, taking("ann", T0 + 3)) == "duplicate.campaign"


async def test_a_given_back_mark_restores_the_older_one_it_replaced(store: Store) -> None:
    # Ann was taken 10 days ago by a lead that was sold: her mark stays.
    old = taking("ann", T0 - 10 * DAY_MS)
    assert await reserve(store, old) == ""
    await close(store, old, sold=True)
    # A 7-day window (a channel override) does not see it: a new lead takes her again...
    short = taking("ann", T0, window_ms=7 * DAY_MS)
    assert await reserve(store, short) == ""
    # ... and is not sold: the 10-day-old mark is back, for the 30-day window.
    await close(store, short, sold=False)
    assert await reserve(store, taking("ann", T0 + 1)) == "duplicate.campaign"
    assert await reserve(store, taking("ann", T0 + 2, window_ms=7 * DAY_MS)) == ""


async def test_the_same_lead_id_holds_its_reservation_without_taking_twice(store: Store) -> None:
    cap = day_cap(1)
    lead = new_lead_id()
    assert await reserve(store, taking("ann", T0, caps=(cap,), lead_id=lead)) == ""
    # A keyed retry after a crash, under the same lead id: its own, not a duplicate, not a
    # second count of the cap.
    assert await reserve(store, taking("ann", T0 + 5, caps=(cap,), lead_id=lead)) == ""
    assert await reserve(store, taking("bob", T0 + 6, caps=(cap,))) == "cap.campaign.day"


async def test_a_test_lead_checks_and_takes_nothing(store: Store) -> None:
    cap = day_cap(1)
    assert await reserve(store, taking("ann", T0, caps=(cap,), dry_run=True)) == ""
    assert await reserve(store, taking("ann", T0 + 1, caps=(cap,))) == ""
    assert await reserve(store, taking("ann", T0 + 2, caps=(cap,), dry_run=True)) == (
        "duplicate.campaign"
    )


def ref(key: str, body: str, lead_id: str) -> IdempotencyRef:
    return IdempotencyRef(
        claim_key=keys.idempotency_claim(PARTNER, key),
        answer_key=keys.campaign_answer(CAMPAIGN, PARTNER, key),
        body_digest=body,
        ttl_ms=DAY_MS,
        lead_id=LeadId(lead_id),
    )


async def test_the_lease_goes_to_the_first_claim_and_the_answer_replays_with_its_buyers(
    store: Store,
) -> None:
    lease = keys.sale_lease(PARTNER, "k")
    first, second = await store.claim_sales(
        [SaleClaim(ref("k", "B", "lead-a"), lease, 10_000)] * 2, T0
    )
    assert (first.claim.status, first.leased) == (ClaimStatus.NEW, True)
    assert (second.claim.status, second.leased) == (ClaimStatus.NEW, False)
    assert second.claim.lead_id == "lead-a"
    assert 0 < second.lease_left_ms <= 10_000

    outcome = DecisionOutcome(
        Decision.ACCEPTED, (), LeadId("lead-a"), buyers=(AdvertiserId("b1"), AdvertiserId("b2"))
    )
    answer = ref("k", "B", "lead-a")
    await store.close_sales(
        [SaleClosing(None, True, ANCHOR, answer.answer_key, outcome.encode("B"), DAY_MS)]
    )
    (replay,) = await store.claim_sales([SaleClaim(ref("k", "B", "lead-b"), lease, 10_000)], T0 + 1)
    assert replay.claim.status is ClaimStatus.REPLAY
    assert replay.claim.answer is not None
    assert (replay.claim.answer.lead_id, replay.claim.answer.buyers) == ("lead-a", ("b1", "b2"))
    (conflict,) = await store.claim_sales(
        [SaleClaim(ref("k", "other", "lead-c"), lease, 10_000)], T0 + 2
    )
    assert conflict.claim.status is ClaimStatus.CONFLICT


def probe(buyer: str, lead_id: str) -> LeadProbe:
    advertiser = AdvertiserId(buyer)
    return LeadProbe(
        keys.lead_index(advertiser, lead_id), keys.legacy_lead_index(advertiser, lead_id)
    )


async def test_a_retry_finds_the_sales_of_its_lead_id(store: Store) -> None:
    """The probe is the (packed) lead index each buyer's sale writes (``decide.lua``)."""
    route = "p|sold|coreg|0|86400000"
    index = index_entry(AdvertiserId("b1"), LeadId("lead-x"), route, keys.lead_route(route), DAY_MS)
    bought = request(T0, advertiser=AdvertiserId("b1"), lead_id=LeadId("lead-x"))
    await store.decide([(replace(bought, index=index), None)])
    (opened,) = await store.open_sales(
        [SaleOpening((probe("b1", "lead-x"), probe("b2", "lead-x")), (), None)]
    )
    assert opened.sold == (True, False)


async def test_every_key_of_a_sale_expires_and_lives_in_its_owners_slot(redis_url: str) -> None:
    store = RedisStore(redis_url)
    try:
        lease = keys.sale_lease(PARTNER, "k")
        await store.claim_sales([SaleClaim(ref("k", "B", "lead-a"), lease, 10_000)], T0)
        kept = taking("ann", T0, caps=(day_cap(5), hour_cap(5)))
        given_back = taking("bob", T0, caps=(day_cap(5), hour_cap(5)))
        for reservation in (kept, given_back):
            assert await reserve(store, reservation) == ""
        await close(store, given_back, sold=False)
        answer = ref("k", "B", "lead-a")
        outcome = DecisionOutcome(Decision.ACCEPTED, (), LeadId("lead-a"))
        await store.close_sales(
            [SaleClosing(None, True, ANCHOR, answer.answer_key, outcome.encode("B"), DAY_MS)]
        )
    finally:
        await store.close()

    client = redis.asyncio.Redis.from_url(redis_url, decode_responses=True)
    try:
        # Besides the sale's keys, only the store's own note of when this Redis first served
        # the dedup layout (written at first contact, not by any lead).
        ttls = {
            key: await client.pttl(key)
            async for key in client.scan_iter(count=1000)
            if key != keys.SEEN_LAYOUT_SINCE
        }
    finally:
        await client.aclose()
    assert {k: t for k, t in ttls.items() if t <= 0} == {}
    kinds = {k.split("}:", 1)[1].split(":", 1)[0] for k in ttls}
    # The kept reservation's record (res) waits for its TTL; the given-back one is gone.
    assert kinds == {"seen", "cap", "res", "idem", "lease"}
    assert keys.campaign_reservation(CAMPAIGN, given_back.lead_id) not in ttls
    assert {keys.hash_slot_tag(k) for k in ttls} == {f"c:{CAMPAIGN}", f"i:{PARTNER}"}
