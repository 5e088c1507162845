"""The decision contract, on the embedded store and on a real Redis (the ``store`` fixture).

Requests are built by hand (``support``) so every window, limit and ``now_ms`` is under the
test's control; time never passes for real: each test moves ``now_ms``.
"""

from __future__ import annotations

import dataclasses

import pytest
import redis.asyncio
from support import (
    ADVERTISER,
    CAMPAIGN,
    DAY_MS,
    HOUR_MS,
    PARTNER,
    T0,
    StoreView,
    bucket_mates,
    calendar_cap,
    decide_one,
    decision_keys,
    dedup,
    fingerprint,
    idempotency,
    request,
    reservation,
    rolling_cap,
)

from gateway.config.model import DedupScope
from gateway.decision.engine import DecisionEngine
from gateway.decision.model import CapCheck, Decision, DecisionRequest
from gateway.decision.ping import PingRecord, commit_hold, take_hold
from gateway.storage import keys
from gateway.storage.redis import RedisStore
from gateway.types import AdvertiserId

ACCEPTED, DUPLICATE, CAPPED = Decision.ACCEPTED, Decision.DUPLICATE, Decision.CAPPED
WINDOW_MS = 30 * DAY_MS
OTHER = AdvertiserId("globex")
THIRD = AdvertiserId("initech")


# -- dedup -------------------------------------------------------------------------------------


@pytest.mark.parametrize("scope", [DedupScope.CAMPAIGN, DedupScope.ADVERTISER, DedupScope.CHANNEL])
async def test_first_sighting_is_accepted_and_the_same_person_again_is_a_duplicate(
    engine: DecisionEngine, scope: DedupScope
) -> None:
    first = await decide_one(engine, request(T0, dedup=[dedup("ann", scope)]))
    again = await decide_one(engine, request(T0 + 1, dedup=[dedup("ann", scope)]))
    other = await decide_one(engine, request(T0 + 2, dedup=[dedup("bob", scope)]))

    assert (first.decision, first.reasons) == (ACCEPTED, ())
    assert (again.decision, again.reasons) == (DUPLICATE, (f"duplicate.{scope.value}",))
    assert other.decision is ACCEPTED


async def test_a_match_on_any_identity_is_a_duplicate_reported_once_per_scope(
    engine: DecisionEngine,
) -> None:
    await decide_one(engine, request(T0, dedup=[dedup("ann-email"), dedup("ann-phone")]))

    same_phone = [dedup("new-email"), dedup("ann-phone"), dedup("ann-phone", DedupScope.ADVERTISER)]
    both = [dedup("ann-email"), dedup("ann-phone")]
    by_phone = await decide_one(engine, request(T0 + 1, dedup=same_phone))
    by_both = await decide_one(engine, request(T0 + 2, dedup=both))

    assert (by_phone.decision, by_phone.reasons) == (DUPLICATE, ("duplicate.campaign",))
    assert (by_both.decision, by_both.reasons) == (DUPLICATE, ("duplicate.campaign",))


@pytest.mark.parametrize(
    ("after_ms", "expected"),
    [
        (1, DUPLICATE),
        (WINDOW_MS - 1, DUPLICATE),
        (WINDOW_MS, ACCEPTED),  # the window is half-open: [t0, t0 + window)
        (WINDOW_MS + DAY_MS, ACCEPTED),
    ],
)
async def test_a_fingerprint_counts_for_its_window_only(
    engine: DecisionEngine, after_ms: int, expected: Decision
) -> None:
    await decide_one(engine, request(T0, dedup=[dedup("ann", window_ms=WINDOW_MS)]))

    later = await decide_one(
        engine, request(T0 + after_ms, dedup=[dedup("ann", window_ms=WINDOW_MS)])
    )

    assert later.decision is expected


async def test_a_channel_with_a_shorter_window_sees_the_same_memory_for_less_time(
    engine: DecisionEngine,
) -> None:
    # One advertiser-scope memory, compared over 30 d for email and 7 d for cashback leads.
    email = dedup("ann", DedupScope.ADVERTISER, window_ms=WINDOW_MS, retention_ms=WINDOW_MS)
    cashback = dedup("ann", DedupScope.ADVERTISER, window_ms=7 * DAY_MS, retention_ms=WINDOW_MS)
    await decide_one(engine, request(T0, dedup=[email]))

    via_cashback = await decide_one(engine, request(T0 + 8 * DAY_MS, dedup=[cashback]))
    assert via_cashback.decision is ACCEPTED  # and it is remembered again from t0 + 8 d
    via_email = await decide_one(engine, request(T0 + 9 * DAY_MS, dedup=[email]))
    assert via_email.decision is DUPLICATE


async def test_a_shorter_memory_sharing_a_hash_never_cuts_a_longer_one_short(
    engine: DecisionEngine,
) -> None:
    # Two campaigns of one advertiser share its advertiser-wide scope: one remembers for
    # 90 days, the other for 7. Their marks can share a hash.
    ann, bob = bucket_mates()
    long = dedup(ann, DedupScope.ADVERTISER, window_ms=90 * DAY_MS)
    short = dedup(bob, DedupScope.ADVERTISER, window_ms=7 * DAY_MS)
    await decide_one(engine, request(T0, dedup=[long]))
    await decide_one(engine, request(T0 + 1, dedup=[short]))

    ann_later = await decide_one(engine, request(T0 + 60 * DAY_MS, dedup=[long]))
    bob_later = await decide_one(engine, request(T0 + 60 * DAY_MS + 1, dedup=[short]))

    assert ann_later.decision is DUPLICATE
    assert bob_later.decision is ACCEPTED


async def test_marks_are_found_across_every_generation_of_the_window(
    engine: DecisionEngine,
) -> None:
    # One person a day for 40 days; each is a duplicate for exactly 30 days after, whatever
    # generation (week) their mark went to.
    for day in range(40):
        first = await decide_one(engine, request(T0 + day * DAY_MS, dedup=[dedup(f"d{day}")]))
        assert first.decision is ACCEPTED
    now = T0 + 40 * DAY_MS
    for day in range(40):
        again = await decide_one(engine, request(now + day, dedup=[dedup(f"d{day}")]))
        expected = DUPLICATE if (now + day) - (T0 + day * DAY_MS) < WINDOW_MS else ACCEPTED
        assert again.decision is expected, day


async def test_a_check_that_must_not_remember_is_checked_but_never_written(
    engine: DecisionEngine,
) -> None:
    # Key rotation: "k0" is the previous fingerprint key, checked (remember=False), not written.
    bob_k0 = dedup("bob", key_id="k0")
    await decide_one(engine, request(T0, dedup=[bob_k0]))  # bob, remembered under k0 long ago

    rotated = [dedup("bob", key_id="k1"), dedup("bob", key_id="k0", remember=False)]
    bob_after_rotation = await decide_one(engine, request(T0 + 1, dedup=rotated))
    assert bob_after_rotation.decision is DUPLICATE  # still found under the previous key

    ann_rotated = [dedup("ann", key_id="k1"), dedup("ann", key_id="k0", remember=False)]
    ann = await decide_one(engine, request(T0 + 2, dedup=ann_rotated))
    ann_by_k0_only = await decide_one(engine, request(T0 + 3, dedup=[dedup("ann", key_id="k0")]))
    ann_by_k1_only = await decide_one(engine, request(T0 + 4, dedup=[dedup("ann", key_id="k1")]))

    assert ann.decision is ACCEPTED
    assert ann_by_k0_only.decision is ACCEPTED  # the k0 fingerprint was never written
    assert ann_by_k1_only.decision is DUPLICATE


async def test_a_duplicate_does_not_extend_the_first_sighting_window(
    engine: DecisionEngine,
) -> None:
    def ann(now_ms: int) -> DecisionRequest:
        return request(now_ms, dedup=[dedup("ann", window_ms=WINDOW_MS)])

    first = await decide_one(engine, ann(T0))
    duplicate = await decide_one(engine, ann(T0 + WINDOW_MS - 1))
    window_over = await decide_one(engine, ann(T0 + WINDOW_MS))
    remembered_again = await decide_one(engine, ann(T0 + WINDOW_MS + 1))

    assert [o.decision for o in (first, duplicate, window_over, remembered_again)] == [
        ACCEPTED,
        DUPLICATE,
        ACCEPTED,  # had the duplicate refreshed the memory, this would be a duplicate
        DUPLICATE,  # the new acceptance starts a new window
    ]


# -- caps --------------------------------------------------------------------------------------


async def test_a_calendar_cap_refuses_once_the_period_count_is_reached(
    engine: DecisionEngine,
) -> None:
    today = calendar_cap(2, bucket="2026-09-22")
    decisions = [
        await decide_one(engine, request(T0 + i, dedup=[dedup(f"p{i}")], caps=[today]))
        for i in range(4)
    ]
    tomorrow = calendar_cap(2, bucket="2026-09-23")
    next_day = await decide_one(engine, request(T0 + DAY_MS, dedup=[dedup("p9")], caps=[tomorrow]))

    assert [(o.decision, o.reasons) for o in decisions] == [
        (ACCEPTED, ()),
        (ACCEPTED, ()),
        (CAPPED, ("cap.campaign.day",)),
        (CAPPED, ("cap.campaign.day",)),
    ]
    assert next_day.decision is ACCEPTED


@pytest.mark.parametrize(
    ("third_at_ms", "expected"),
    [
        (HOUR_MS // 2 + 1, CAPPED),
        (HOUR_MS - 1, CAPPED),  # the first entry is still inside (t - 1 h, t]
        (HOUR_MS, ACCEPTED),  # ... and here it is not: it stopped counting
        (HOUR_MS + HOUR_MS // 2 - 1, CAPPED),  # the 2 later entries fill the last hour
    ],
)
async def test_a_rolling_cap_counts_only_entries_inside_the_sliding_window(
    engine: DecisionEngine, third_at_ms: int, expected: Decision
) -> None:
    hourly = rolling_cap(2, HOUR_MS)
    await decide_one(engine, request(T0, dedup=[dedup("p1")], caps=[hourly]))
    await decide_one(engine, request(T0 + HOUR_MS // 2, dedup=[dedup("p2")], caps=[hourly]))
    if third_at_ms > HOUR_MS:  # one more acceptance at t0 + 1 h, inside its own window
        assert (await decide_one(engine, request(T0 + HOUR_MS, caps=[hourly]))).decision is ACCEPTED

    third = await decide_one(engine, request(T0 + third_at_ms, dedup=[dedup("p3")], caps=[hourly]))

    assert third.decision is expected
    if expected is CAPPED:
        assert third.reasons == ("cap.partner.rolling",)


async def test_every_cap_reached_is_reported(engine: DecisionEngine) -> None:
    caps = [calendar_cap(1), rolling_cap(1, HOUR_MS), calendar_cap(5, bucket="2026-W39")]
    await decide_one(engine, request(T0, dedup=[dedup("p1")], caps=caps))

    refused = await decide_one(engine, request(T0 + 1, dedup=[dedup("p2")], caps=caps))

    assert (refused.decision, refused.reasons) == (
        CAPPED,
        ("cap.campaign.day", "cap.partner.rolling"),
    )


async def test_a_duplicate_consumes_no_cap(engine: DecisionEngine) -> None:
    cap = calendar_cap(2)
    ann = await decide_one(engine, request(T0, dedup=[dedup("ann")], caps=[cap]))
    ann_again = await decide_one(engine, request(T0 + 1, dedup=[dedup("ann")], caps=[cap]))
    bob = await decide_one(engine, request(T0 + 2, dedup=[dedup("bob")], caps=[cap]))
    cid = await decide_one(engine, request(T0 + 3, dedup=[dedup("cid")], caps=[cap]))
    ann_when_full = await decide_one(engine, request(T0 + 4, dedup=[dedup("ann")], caps=[cap]))

    assert [o.decision for o in (ann, ann_again, bob, cid)] == [
        ACCEPTED,
        DUPLICATE,
        ACCEPTED,  # the duplicate did not take the second place
        CAPPED,
    ]
    # A lead that is both: dedup is answered first (the publisher learns it is a duplicate).
    assert (ann_when_full.decision, ann_when_full.reasons) == (DUPLICATE, ("duplicate.campaign",))


async def test_a_capped_lead_is_not_remembered(engine: DecisionEngine) -> None:
    today, tomorrow = calendar_cap(1, bucket="2026-09-22"), calendar_cap(1, bucket="2026-09-23")
    await decide_one(engine, request(T0, dedup=[dedup("ann")], caps=[today]))
    bob_capped = await decide_one(engine, request(T0 + 1, dedup=[dedup("bob")], caps=[today]))
    bob_next_day = await decide_one(
        engine, request(T0 + DAY_MS, dedup=[dedup("bob")], caps=[tomorrow])
    )

    assert bob_capped.decision is CAPPED
    assert bob_next_day.decision is ACCEPTED


# -- test mode ---------------------------------------------------------------------------------


async def test_a_dry_run_decides_but_remembers_nothing(
    engine: DecisionEngine, view: StoreView
) -> None:
    cap = calendar_cap(1)
    hourly = rolling_cap(1, HOUR_MS)
    person = [reservation("ann", ADVERTISER, network_window_ms=WINDOW_MS, pressure_limit=1,
                          pressure_window_ms=WINDOW_MS)]  # fmt: skip

    def ann(now_ms: int, *, dry_run: bool) -> DecisionRequest:
        return request(
            now_ms, dedup=[dedup("ann")], caps=[cap, hourly], person=person, dry_run=dry_run
        )

    dry = await decide_one(engine, ann(T0, dry_run=True))
    assert await view.key_names() == []  # not a dedup mark, cap count, stream entry or slot
    dry_again = await decide_one(engine, ann(T0 + 1, dry_run=True))
    real = await decide_one(engine, ann(T0 + 2, dry_run=False))
    dry_after_real = await decide_one(engine, ann(T0 + 3, dry_run=True))

    assert [o.decision for o in (dry, dry_again, real)] == [ACCEPTED, ACCEPTED, ACCEPTED]
    assert dry_after_real.decision is DUPLICATE  # a dry run still decides against real data
    assert [d.lead_id for d in await view.deliveries()] == [real.lead_id]


async def test_a_dry_run_is_refused_like_a_real_lead_when_a_cap_is_full(
    engine: DecisionEngine,
) -> None:
    cap = calendar_cap(1)
    await decide_one(engine, request(T0, dedup=[dedup("ann")], caps=[cap]))

    dry = await decide_one(engine, request(T0 + 1, dedup=[dedup("bob")], caps=[cap], dry_run=True))

    assert (dry.decision, dry.reasons) == (CAPPED, ("cap.campaign.day",))


# -- idempotency -------------------------------------------------------------------------------


@pytest.mark.parametrize("first_decision", [ACCEPTED, DUPLICATE, CAPPED])
async def test_a_retry_with_the_same_key_and_body_gets_the_first_answer(
    engine: DecisionEngine, view: StoreView, first_decision: Decision
) -> None:
    cap = calendar_cap(0 if first_decision is CAPPED else 10)
    if first_decision is DUPLICATE:
        await decide_one(engine, request(T0 - 1, dedup=[dedup("ann")]))
    before = len(await view.deliveries())

    def post() -> DecisionRequest:
        return request(T0, dedup=[dedup("ann")], caps=[cap], idempotency=idempotency("K1", "B1"))

    first = await decide_one(engine, post())
    retry_request = post()
    retry = await decide_one(engine, retry_request)

    assert first.decision is first_decision
    assert retry.replayed
    assert (retry.decision, retry.reasons, retry.lead_id) == (
        first.decision,
        first.reasons,
        first.lead_id,
    )
    assert retry.lead_id != retry_request.lead_id
    accepted = 1 if first_decision is ACCEPTED else 0
    assert len(await view.deliveries()) == before + accepted


async def test_the_same_key_with_another_body_is_a_conflict(
    engine: DecisionEngine, view: StoreView
) -> None:
    first = await decide_one(
        engine, request(T0, dedup=[dedup("ann")], idempotency=idempotency("K1", "B1"))
    )
    (conflict,) = await engine.run(
        [request(T0 + 1, dedup=[dedup("bob")], idempotency=idempotency("K1", "B2"))]
    )
    bob = await decide_one(engine, request(T0 + 2, dedup=[dedup("bob")]))

    assert first.decision is ACCEPTED
    assert conflict is None
    assert bob.decision is ACCEPTED  # the refused body was not decided: nothing remembered
    assert [d.lead_id for d in await view.deliveries()] == [first.lead_id, bob.lead_id]


async def test_a_dry_run_answer_is_not_replayed_to_the_real_post(engine: DecisionEngine) -> None:
    ref = idempotency("K1", "B1")
    dry = await decide_one(engine, request(T0, dedup=[dedup("ann")], idempotency=ref, dry_run=True))
    real = await decide_one(engine, request(T0 + 1, dedup=[dedup("ann")], idempotency=ref))
    retry = await decide_one(engine, request(T0 + 2, dedup=[dedup("ann")], idempotency=ref))

    assert (dry.decision, dry.replayed) == (ACCEPTED, False)
    assert (real.decision, real.replayed) == (ACCEPTED, False)
    assert real.lead_id != dry.lead_id
    assert (retry.replayed, retry.lead_id) == (True, real.lead_id)


async def test_a_refusal_in_the_person_slot_is_replayed_too(engine: DecisionEngine) -> None:
    pressure = {"pressure_limit": 1, "pressure_window_ms": WINDOW_MS}
    await decide_one(engine, request(T0, person=[reservation("ann", OTHER, **pressure)]))
    ref = idempotency("K1", "B1")

    def post(now_ms: int) -> DecisionRequest:
        return request(now_ms, person=[reservation("ann", ADVERTISER, **pressure)], idempotency=ref)

    first = await decide_one(engine, post(T0 + 1))
    retry = await decide_one(engine, post(T0 + 2))

    assert (first.decision, first.reasons) == (CAPPED, ("cap.person",))
    assert (retry.decision, retry.reasons, retry.replayed) == (CAPPED, ("cap.person",), True)


# -- delivery stream ---------------------------------------------------------------------------


async def test_the_delivery_stream_gets_one_entry_per_accepted_lead(
    engine: DecisionEngine, view: StoreView
) -> None:
    cap = calendar_cap(3)
    people = ["ann", "bob", "ann", "cid", "bob", "dan", "eve"]
    outcomes = [
        await decide_one(engine, request(T0 + i, dedup=[dedup(p)], caps=[cap]))
        for i, p in enumerate(people)
    ]
    other = await decide_one(
        engine, request(T0 + 9, dedup=[dedup("ann", advertiser=OTHER)], advertiser=OTHER)
    )

    accepted = [o for o in outcomes if o.decision is ACCEPTED]
    assert [o.decision for o in outcomes] == [
        ACCEPTED, ACCEPTED, DUPLICATE, ACCEPTED, DUPLICATE, CAPPED, CAPPED,
    ]  # fmt: skip
    deliveries = await view.deliveries()
    assert [d.lead_id for d in deliveries] == [o.lead_id for o in accepted]
    assert [d.accepted_at_ms for d in deliveries] == [T0, T0 + 1, T0 + 3]
    assert all(f'"lead_id":"{d.lead_id}"'.encode() in d.record for d in deliveries)
    assert [d.lead_id for d in await view.deliveries(OTHER)] == [other.lead_id]


async def test_a_batch_is_decided_in_order_within_one_call(
    engine: DecisionEngine, view: StoreView
) -> None:
    cap = calendar_cap(2)
    batch = [request(T0, dedup=[dedup(p)], caps=[cap]) for p in ("ann", "ann", "bob", "cid")]

    outcomes = await engine.run(batch)

    assert [o.decision if o else None for o in outcomes] == [ACCEPTED, DUPLICATE, ACCEPTED, CAPPED]
    assert [o.lead_id if o else None for o in outcomes] == [rq.lead_id for rq in batch]
    assert [d.lead_id for d in await view.deliveries()] == [batch[0].lead_id, batch[2].lead_id]


# -- the person's slot: network dedup and contact pressure -------------------------------------


async def test_network_dedup_spans_advertisers(engine: DecisionEngine, view: StoreView) -> None:
    def ann(now_ms: int, advertiser: AdvertiserId) -> DecisionRequest:
        net = reservation("ann", advertiser, network_window_ms=WINDOW_MS)
        return request(now_ms, person=[net], advertiser=advertiser)

    at_acme = await decide_one(engine, ann(T0, ADVERTISER))
    at_globex = await decide_one(engine, ann(T0 + DAY_MS, OTHER))
    at_globex_later = await decide_one(engine, ann(T0 + WINDOW_MS, OTHER))

    assert at_acme.decision is ACCEPTED
    assert (at_globex.decision, at_globex.reasons) == (DUPLICATE, ("duplicate.network",))
    assert at_globex_later.decision is ACCEPTED
    assert [d.lead_id for d in await view.deliveries(OTHER)] == [at_globex_later.lead_id]


@pytest.mark.parametrize(
    ("sequence", "expected"),
    [
        # the advertiser of each lead, all for the same person
        ([ADVERTISER, OTHER, THIRD], [ACCEPTED, ACCEPTED, CAPPED]),
        # the same advertiser again takes no second slot
        ([ADVERTISER, ADVERTISER, OTHER, ADVERTISER, THIRD], [ACCEPTED] * 4 + [CAPPED]),
    ],
)
async def test_contact_pressure_allows_a_person_to_reach_n_advertisers(
    engine: DecisionEngine, sequence: list[AdvertiserId], expected: list[Decision]
) -> None:
    outcomes = [
        await decide_one(
            engine,
            request(
                T0 + i,
                person=[
                    reservation("ann", advertiser, pressure_limit=2, pressure_window_ms=WINDOW_MS)
                ],
                advertiser=advertiser,
            ),
        )
        for i, advertiser in enumerate(sequence)
    ]

    assert [o.decision for o in outcomes] == expected
    assert outcomes[-1].reasons == (("cap.person",) if expected[-1] is CAPPED else ())


async def test_contact_pressure_slots_free_up_when_the_window_ends(engine: DecisionEngine) -> None:
    def ann(now_ms: int, advertiser: AdvertiserId) -> DecisionRequest:
        press = reservation("ann", advertiser, pressure_limit=1, pressure_window_ms=WINDOW_MS)
        return request(now_ms, person=[press], advertiser=advertiser)

    await decide_one(engine, ann(T0, ADVERTISER))
    inside = await decide_one(engine, ann(T0 + WINDOW_MS - 1, OTHER))
    after = await decide_one(engine, ann(T0 + WINDOW_MS, OTHER))

    assert inside.decision is CAPPED
    assert after.decision is ACCEPTED


async def test_a_lead_refused_by_the_advertiser_gives_its_person_slot_back(
    engine: DecisionEngine,
) -> None:
    def ann(now_ms: int, advertiser: AdvertiserId, cap_limit: int = 10) -> DecisionRequest:
        press = reservation("ann", advertiser, pressure_limit=2, pressure_window_ms=WINDOW_MS)
        cap = calendar_cap(cap_limit, advertiser=advertiser)
        return request(now_ms, person=[press], caps=[cap], advertiser=advertiser)

    at_acme = await decide_one(engine, ann(T0, ADVERTISER))
    at_globex_full = await decide_one(engine, ann(T0 + 1, OTHER, cap_limit=0))
    at_initech = await decide_one(engine, ann(T0 + 2, THIRD))
    at_globex = await decide_one(engine, ann(T0 + 3, OTHER))

    assert at_acme.decision is ACCEPTED
    assert (at_globex_full.decision, at_globex_full.reasons) == (CAPPED, ("cap.campaign.day",))
    assert at_initech.decision is ACCEPTED  # globex's refused lead holds no slot
    assert (at_globex.decision, at_globex.reasons) == (CAPPED, ("cap.person",))


async def test_a_lead_refused_by_the_advertiser_restores_the_network_mark_it_replaced(
    engine: DecisionEngine,
) -> None:
    # Network dedup over 30 d for email leads, 7 d for cashback leads (one memory of 30 d).
    def ann(
        now_ms: int, advertiser: AdvertiserId, window_ms: int, **refuse: int
    ) -> DecisionRequest:
        net = reservation(
            "ann", advertiser, network_window_ms=window_ms, network_retention_ms=WINDOW_MS
        )
        cap = calendar_cap(refuse.get("cap", 10), advertiser=advertiser)
        return request(now_ms, person=[net], caps=[cap], advertiser=advertiser)

    email, cashback = WINDOW_MS, 7 * DAY_MS
    at_acme = await decide_one(engine, ann(T0, ADVERTISER, email))
    # 8 days later a cashback lead passes network dedup but globex's cap refuses it.
    refused = await decide_one(engine, ann(T0 + 8 * DAY_MS, OTHER, cashback, cap=0))
    # Had the refused lead's mark stayed, this cashback lead would be a duplicate (1 d < 7 d).
    cashback_next_day = await decide_one(engine, ann(T0 + 9 * DAY_MS, THIRD, cashback))
    # Had the mark been deleted instead of restored, this email lead would be accepted.
    email_next_day = await decide_one(engine, ann(T0 + 9 * DAY_MS + 1, OTHER, email))

    assert at_acme.decision is ACCEPTED
    assert refused.decision is CAPPED
    assert cashback_next_day.decision is ACCEPTED
    assert (email_next_day.decision, email_next_day.reasons) == (DUPLICATE, ("duplicate.network",))


async def test_a_refused_lead_releases_only_its_own_network_mark(engine: DecisionEngine) -> None:
    def ann(now_ms: int, advertiser: AdvertiserId, cap: int = 10) -> DecisionRequest:
        net = reservation("ann", advertiser, network_window_ms=WINDOW_MS)
        press = reservation("ann-phone", advertiser, pressure_limit=5, pressure_window_ms=WINDOW_MS)
        caps = [calendar_cap(cap, advertiser=advertiser)]
        return request(now_ms, person=[net, press], caps=caps, advertiser=advertiser)

    first = await decide_one(engine, ann(T0, ADVERTISER))
    duplicate_and_capped = await decide_one(engine, ann(T0 + 1, OTHER, cap=0))
    later = await decide_one(engine, ann(T0 + 2, THIRD))

    assert first.decision is ACCEPTED
    # Refused in the person's slot: it reserved nothing, so its release must not free ann.
    assert duplicate_and_capped.reasons == ("duplicate.network",)
    assert later.reasons == ("duplicate.network",)


async def test_a_dry_run_takes_no_person_slot(engine: DecisionEngine) -> None:
    def ann(now_ms: int, advertiser: AdvertiserId, *, dry_run: bool) -> DecisionRequest:
        both = reservation(
            "ann", advertiser, network_window_ms=WINDOW_MS, pressure_limit=1,
            pressure_window_ms=WINDOW_MS,
        )  # fmt: skip
        return request(now_ms, person=[both], advertiser=advertiser, dry_run=dry_run)

    dry = await decide_one(engine, ann(T0, ADVERTISER, dry_run=True))
    real_elsewhere = await decide_one(engine, ann(T0 + 1, OTHER, dry_run=False))
    dry_third = await decide_one(engine, ann(T0 + 2, THIRD, dry_run=True))

    assert dry.decision is ACCEPTED
    assert real_elsewhere.decision is ACCEPTED
    assert (dry_third.decision, dry_third.reasons) == (DUPLICATE, ("duplicate.network",))


# -- keys: TTLs and hash slots -----------------------------------------------------------------


def _ping(now_ms: int, ping_id: str, caps: list[CapCheck]) -> DecisionRequest:
    record = PingRecord(PARTNER, CAMPAIGN, now_ms + 60_000, "k1.digest")
    hold = take_hold(ADVERTISER, ping_id, record, now_ms=now_ms)
    return dataclasses.replace(request(now_ms, caps=caps), payload=b"", hold=hold)


def _post(now_ms: int, ping_id: str, caps: list[CapCheck], person: str) -> DecisionRequest:
    rq = request(now_ms, dedup=[dedup(person)], caps=caps)
    return dataclasses.replace(rq, hold=commit_hold(ADVERTISER, ping_id))


async def _every_write_path(engine: DecisionEngine) -> list[DecisionRequest]:
    """Exercise every kind of key the stores write; return the requests that were run."""
    press = {"pressure_limit": 2, "pressure_window_ms": WINDOW_MS}
    pinged = [dataclasses.replace(c, holds=keys.cap_holds(c.key)) for c in (calendar_cap(5),)]
    net = {"network_window_ms": 7 * DAY_MS, "network_retention_ms": WINDOW_MS}
    caps = [calendar_cap(2), rolling_cap(5, HOUR_MS)]
    run = [
        request(
            T0,
            dedup=[
                dedup("ann"),
                dedup("ann", DedupScope.ADVERTISER),
                dedup("ann", key_id="k0", remember=False),
            ],
            caps=caps,
            person=[
                reservation("ann", ADVERTISER, **net),
                reservation("ann-phone", ADVERTISER, **press),
            ],
            idempotency=idempotency("K1", "B1"),
        ),
        request(T0 + 1, dedup=[dedup("bob", DedupScope.CHANNEL)], caps=caps),
        request(T0 + 2, dedup=[dedup("cid")], caps=caps),  # capped
        # Two pings hold a cap (ping ids: gateway-made ids); a post uses one's hold up.
        *(_ping(T0 + 3, f"0192f1c2-7d5e-7a1b-9c3d-4e5f6071829{n}", pinged) for n in (1, 2)),
        _post(T0 + 4, "0192f1c2-7d5e-7a1b-9c3d-4e5f60718291", pinged, "dan"),
        # Refused by globex's cap after 8 days: its release restores ann's earlier mark.
        request(
            T0 + 8 * DAY_MS,
            caps=[calendar_cap(0, advertiser=OTHER)],
            person=[reservation("ann", OTHER, **net)],
            advertiser=OTHER,
            idempotency=idempotency("K2", "B2", advertiser=OTHER),
        ),
    ]
    for rq in run:
        await decide_one(engine, rq)
    return run


async def test_every_redis_key_expires_except_the_delivery_streams(redis_url: str) -> None:
    store = RedisStore(redis_url)
    try:
        await _every_write_path(DecisionEngine(store))
    finally:
        await store.close()

    client = redis.asyncio.Redis.from_url(redis_url, decode_responses=True)
    try:
        ttls = {key: await client.pttl(key) async for key in client.scan_iter(count=1000)}
    finally:
        await client.aclose()

    streams = {keys.deliveries(ADVERTISER)}
    # The delivery worker trims the streams once the CRM took the leads: they have no TTL.
    assert {k for k, ttl in ttls.items() if ttl == -1} == streams
    assert {k: ttl for k, ttl in ttls.items() if k not in streams and ttl <= 0} == {}
    kinds = {k.split("}:", 1)[1].split(":", 1)[0] for k in ttls}
    assert kinds == {"seen", "cap", "idem", "net", "press", "deliveries", "ping"}


async def test_no_key_carries_a_raw_identity_and_each_has_its_owners_hash_tag(
    engine: DecisionEngine, view: StoreView
) -> None:
    run = await _every_write_path(engine)

    names = await view.key_names()
    tags = {keys.hash_slot_tag(k) for k in names}
    people = {f"p:{fingerprint(p)}" for p in ("ann", "ann-phone")}
    assert tags <= {f"a:{ADVERTISER}", f"a:{OTHER}", f"i:{PARTNER}", *people}
    # Everything one decision script touches is in one slot (Redis Cluster runs it unchanged),
    # and each reservation's two keys are in the person's own slot.
    for rq in run:
        assert {keys.hash_slot_tag(k) for k in decision_keys(rq)} == {
            keys.hash_slot_tag(rq.stream_key)
        }
        for r in rq.person:
            assert keys.hash_slot_tag(r.seen_key) == keys.hash_slot_tag(r.pressure_key)
    # A ping leaves its record and its holds, named by ids only (a ping carries keyed
    # fingerprints and digests, never the identities themselves).
    pinged = {rq.hold.record_key for rq in run if rq.hold is not None}
    pinged |= {c.holds for rq in run if rq.hold is not None for c in rq.caps}
    assert {n for n in names if ":ping:" in n or n.endswith(":holds")} == pinged
    assert all(keys.hash_slot_tag(n) == f"a:{ADVERTISER}" for n in pinged)
