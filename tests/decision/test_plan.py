"""``build_request``: from a parsed lead and its campaign to the complete DecisionRequest a store
checks and commits (pure: no store, no clock)."""

from __future__ import annotations

import gc
import itertools
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from network_support import KEYS, network

from gateway.config.load import parse_config
from gateway.config.model import (
    CalendarPeriod,
    Campaign,
    CampaignKind,
    CapRule,
    CapSubject,
    CapWindow,
    Config,
    ContactPressure,
    DedupRule,
    DedupScope,
    Partner,
    PressureUnit,
)
from gateway.decision.engine import DecisionEngine
from gateway.decision.intake import Intake
from gateway.decision.model import CampaignReservation, Decision, DecisionRequest, Hold
from gateway.decision.ping import PingRecord, commit_hold, take_hold
from gateway.decision.plan import (
    Idempotency,
    Plan,
    ScopePlan,
    build_request,
    cap_checks,
    dedup_check,
    pinged_advertisers,
)
from gateway.decision.sale_plan import SalePlan
from gateway.leads.fingerprint import Fingerprinter
from gateway.leads.lead import Lead
from gateway.leads.parse import parse_lead
from gateway.storage import keys
from gateway.storage.memory import MemoryStore
from gateway.storage.redis import _campaign_reserve_command, _decide_parts
from gateway.types import (
    AdvertiserId,
    CampaignId,
    ChannelId,
    Fingerprint,
    FingerprintKey,
    LeadId,
    PartnerId,
)

DAY_S = 86_400
ACME = AdvertiserId("acme")
COREG, CASHBACK = ChannelId("coreg"), ChannelId("cashback")
#: 2026-11-22T15:30:00+01:00, a Sunday afternoon in Paris.
NOW_S = datetime.fromisoformat("2026-11-22T15:30:00+01:00").timestamp()
K1 = FingerprintKey("k1", b"x" * 32)
K2 = FingerprintKey("k2", b"y" * 32)

CAMPAIGN = Campaign(
    id=CampaignId("acme-peak"),
    advertiser=ACME,
    name="ACME peak",
    kind=CampaignKind.ALWAYS_ON,
    timezone=ZoneInfo("Europe/Paris"),
    dedup=(
        DedupRule(DedupScope.CAMPAIGN, 90 * DAY_S),
        DedupRule(DedupScope.ADVERTISER, 30 * DAY_S, {CASHBACK: 7 * DAY_S}),
        DedupRule(DedupScope.CHANNEL, 14 * DAY_S),
        DedupRule(DedupScope.NETWORK, 30 * DAY_S, {CASHBACK: 7 * DAY_S}),
    ),
    caps=(
        CapRule(CapSubject.CAMPAIGN, CapWindow(period=CalendarPeriod.DAY), 200),
        CapRule(CapSubject.PARTNER, CapWindow(rolling_s=3600), 50),
    ),
)
PARTNER = Partner(
    id=PartnerId("p-coreg"),
    name="CoregNet",
    api_key_hashes=(),
    channels=(COREG, CASHBACK),
    campaigns=(CAMPAIGN.id,),
)
PRESSURE = ContactPressure(limit=3, window_s=30 * DAY_S)
POSTED: Mapping[str, object] = {
    "campaign": "acme-peak",
    "email": "Jean.Dupont+promo@GoogleMail.com",
    "phone": "06 12 34 56 78",
    "first_name": "Jean",
    "ref": "order-1",
}
#: What the person typed, in every spelling that could leak into a key name.
RAW_IDENTITIES = (
    "jean.dupont",
    "jeandupont",
    "googlemail",
    "gmail",
    "+33612345678",
    "33612345678",
    "0612345678",
    "612345678",
)


def _lead(campaign: Campaign = CAMPAIGN, **fields: object) -> Lead:
    posted = {**POSTED, "campaign": campaign.id, **fields}
    return parse_lead(posted, {campaign.id: campaign}, now_s=NOW_S)


_LEAD_NUMBERS = itertools.count(1)


def _build(
    lead: Lead | None = None,
    *,
    campaign: Campaign = CAMPAIGN,
    channel: ChannelId = COREG,
    pressure: ContactPressure | None = PRESSURE,
    fingerprinter: Fingerprinter | None = None,
    idempotency: Idempotency | None = None,
    now_s: float = NOW_S,
    advertiser: AdvertiserId | None = None,
) -> DecisionRequest:
    if advertiser is not None:
        campaign = Campaign(
            id=CampaignId(f"{advertiser}-offer"),
            advertiser=advertiser,
            name=advertiser,
            kind=campaign.kind,
            timezone=campaign.timezone,
            dedup=campaign.dedup,
            caps=campaign.caps,
            contact_pressure=campaign.contact_pressure,
        )
    return build_request(
        lead=lead if lead is not None else _lead(campaign),
        # Every lead its own id, as in the gateway: a reservation under a lead's own id is
        # that lead's (a keyed retry), never another's.
        lead_id=LeadId(f"lead-{next(_LEAD_NUMBERS)}"),
        campaign=campaign,
        partner=PARTNER,
        channel=channel,
        pressure=pressure,
        fingerprinter=fingerprinter or Fingerprinter([K1]),
        now_s=now_s,
        idempotency=idempotency,
    )


def _all_keys(rq: DecisionRequest) -> list[str]:
    dedup = [key for check in rq.dedup for key in check.keys]
    found = [rq.stream_key, rq.slot_anchor, *dedup, *(c.key for c in rq.caps)]
    for r in rq.person:
        found += [r.seen_key, r.pressure_key]
    if rq.idempotency is not None:
        found += [rq.idempotency.claim_key, rq.idempotency.answer_key]
    return found


def test_every_identity_is_checked_in_every_advertiser_scope() -> None:
    lead = _lead()
    fp = Fingerprinter([K1])

    rq = _build(lead)

    expected = {
        (f"duplicate.{scope.value}", _mark_key(scope, fp.fingerprint(kind, value)))
        for scope in (DedupScope.CAMPAIGN, DedupScope.ADVERTISER, DedupScope.CHANNEL)
        for kind, value in lead.identities.items()
    }
    assert {(c.reason, (c.keys[0], c.field)) for c in rq.dedup} == expected
    assert len(rq.dedup) == 6
    assert all(c.remember for c in rq.dedup)
    # Spellings of one mailbox are one identity: the Gmail dots and +tag change nothing.
    same_mailbox = _build(_lead(email="jeandupont@gmail.com"))
    assert {(c.keys, c.field) for c in same_mailbox.dedup} == {(c.keys, c.field) for c in rq.dedup}


def _mark_key(scope: DedupScope, fp: Fingerprint, channel: ChannelId = COREG) -> tuple[str, str]:
    """Where the lead built at NOW_S writes the mark of ``fp`` in ``scope``: hash and field."""
    mark = keys.seen_mark(fp)
    space = keys.SeenSpace(ACME, scope, CAMPAIGN.id, channel)
    return keys.seen(space, mark, keys.seen_generation(int(NOW_S * 1000))), mark.field


def test_a_window_reaches_back_through_every_generation_it_covers() -> None:
    rq = _build()

    now_ms = int(NOW_S * 1000)
    for check in rq.dedup:
        generations = [int(key.split(":")[-2].removeprefix("g")) for key in check.keys]
        # Newest first, consecutive, from the current one back to the window's start.
        assert generations[0] == check.generation == keys.seen_generation(now_ms)
        assert generations == list(range(generations[0], generations[0] - len(generations), -1))
        assert generations[-1] == keys.seen_generation(now_ms - check.window_ms + 1)
        assert len({key.rsplit(":", 2)[0] for key in check.keys}) == 1


@settings(max_examples=500, deadline=None)
@given(
    now_ms=st.one_of(
        st.integers(0, 4 * keys.SEEN_GENERATION_MS),
        st.integers(1_700_000_000_000, 1_900_000_000_000),
    ),
    window_ms=st.one_of(
        st.sampled_from([1, 1000, DAY_S * 1000, 30 * DAY_S * 1000, 90 * DAY_S * 1000]),
        st.sampled_from([keys.SEEN_GENERATION_MS + d for d in (-1, 0, 1)]),
        st.integers(1, 400 * DAY_S * 1000),
    ),
    offset=st.floats(0, 1),
)
def test_the_generations_a_scope_keeps_are_those_of_every_time_they_are_kept_for(
    now_ms: int, window_ms: int, offset: float
) -> None:
    """``ScopePlan.frame`` works its hashes out once per span of time over which the range of
    generations stays the same (``keys.seen_generations_span``): everywhere in that span it
    is the range worked out afresh, and right after it, it is not."""
    generations, since, until = keys.seen_generations_span(now_ms, window_ms)
    assert since <= now_ms < until
    assert generations == keys.seen_generations(now_ms, window_ms)
    for at in (since, until - 1, since + int((until - 1 - since) * offset)):
        assert keys.seen_generations(at, window_ms) == generations
    assert keys.seen_generations(until, window_ms) != generations
    prefix = "lg:{a:acme}:seen:c:acme-peak"
    scope = ScopePlan("duplicate.campaign", prefix, window_ms, window_ms)
    # Kept, moved on, and back (a clock set back), under two fingerprint keys: always the
    # hashes of the time asked.
    for at in (now_ms, since, until - 1, until, now_ms, since):
        for key_id in ("k1", "k2"):
            expected = keys.seen_generations(at, window_ms)
            assert scope.frame(key_id, at) == (
                keys.seen_heads(prefix, key_id, expected),
                expected[0],
                keys.legacy_seen_head(prefix, key_id),
            )


def test_a_lead_with_one_identity_is_checked_on_that_identity_only() -> None:
    rq = _build(_lead(phone=None))

    assert len(rq.dedup) == 3
    assert len(rq.person) == 1


def test_during_a_key_rotation_previous_fingerprints_are_checked_but_never_written() -> None:
    lead = _lead()
    rotating = Fingerprinter([K2, K1])

    rq = _build(lead, fingerprinter=rotating)

    previous = {
        _mark_key(scope, Fingerprinter([K1]).fingerprint(kind, value))
        for scope in (DedupScope.CAMPAIGN, DedupScope.ADVERTISER, DedupScope.CHANNEL)
        for kind, value in lead.identities.items()
    }
    assert len(rq.dedup) == 12
    assert {(c.keys[0], c.field) for c in rq.dedup if not c.remember} == previous
    assert all(":k2:" in key for c in rq.dedup if c.remember for key in c.keys)
    assert all(":k1:" in key for c in rq.dedup if not c.remember for key in c.keys)


@pytest.mark.parametrize(
    ("channel", "advertiser_window_s", "network_window_s"),
    [
        (COREG, 30 * DAY_S, 30 * DAY_S),
        (CASHBACK, 7 * DAY_S, 7 * DAY_S),  # the cashback override
    ],
)
def test_channel_window_overrides_apply_to_the_leads_channel(
    channel: ChannelId, advertiser_window_s: int, network_window_s: int
) -> None:
    rq = _build(channel=channel)

    windows = {c.reason: (c.window_ms, c.retention_ms) for c in rq.dedup}
    assert windows == {
        "duplicate.campaign": (90 * DAY_S * 1000, 90 * DAY_S * 1000),
        # remembered for the longest window whatever the channel, so an email lead still
        # finds a person a cashback lead brought
        "duplicate.advertiser": (advertiser_window_s * 1000, 30 * DAY_S * 1000),
        "duplicate.channel": (14 * DAY_S * 1000, 14 * DAY_S * 1000),
    }
    assert {(r.network_window_ms, r.network_retention_ms) for r in rq.person} == {
        (network_window_s * 1000, 30 * DAY_S * 1000)
    }
    assert all(
        f":{channel}:" in key for c in rq.dedup if c.reason == "duplicate.channel" for key in c.keys
    )


@pytest.mark.parametrize("per", [PressureUnit.ADVERTISER, PressureUnit.CAMPAIGN])
def test_network_scope_and_pressure_become_person_reservations(per: PressureUnit) -> None:
    lead = _lead()
    fp = Fingerprinter([K1])

    rq = _build(lead, pressure=ContactPressure(limit=3, window_s=30 * DAY_S, per=per))

    people = {fp.fingerprint(kind, value) for kind, value in lead.identities.items()}
    assert {(r.seen_key, r.pressure_key) for r in rq.person} == {
        (keys.person_network_seen(f), keys.person_pressure(f)) for f in people
    }
    unit = ACME if per is PressureUnit.ADVERTISER else CAMPAIGN.id
    for r in rq.person:
        assert (r.lead_id, r.now_ms, r.unit, r.dry_run) == (
            rq.lead_id,
            int(NOW_S * 1000),
            unit,
            False,
        )
        assert (r.pressure_limit, r.pressure_window_ms) == (3, 30 * DAY_S * 1000)
        assert r.network_window_ms == 30 * DAY_S * 1000
    assert "duplicate.network" not in {c.reason for c in rq.dedup}


@pytest.mark.parametrize(
    ("campaign_pressure", "network_pressure", "reservations", "limit"),
    [
        (True, PRESSURE, 2, 3),
        (False, PRESSURE, 2, 0),  # the campaign opted out: network dedup only
        (True, None, 2, 0),  # no network-wide pressure configured
    ],
)
def test_a_campaign_without_contact_pressure_gets_none(
    campaign_pressure: bool,
    network_pressure: ContactPressure | None,
    reservations: int,
    limit: int,
) -> None:
    campaign = Campaign(
        id=CAMPAIGN.id,
        advertiser=ACME,
        name=CAMPAIGN.name,
        kind=CAMPAIGN.kind,
        timezone=CAMPAIGN.timezone,
        dedup=CAMPAIGN.dedup,
        contact_pressure=campaign_pressure,
    )

    rq = _build(campaign=campaign, pressure=network_pressure)

    assert len(rq.person) == reservations
    assert {r.pressure_limit for r in rq.person} == {limit}


def test_a_campaign_without_network_dedup_or_pressure_needs_no_person_slot() -> None:
    campaign = Campaign(
        id=CAMPAIGN.id,
        advertiser=ACME,
        name=CAMPAIGN.name,
        kind=CAMPAIGN.kind,
        timezone=CAMPAIGN.timezone,
        dedup=CAMPAIGN.dedup[:3],
        contact_pressure=False,
    )

    assert _build(campaign=campaign).person == ()


@pytest.mark.parametrize("test_mode", [False, True])
def test_test_mode_becomes_a_dry_run(test_mode: bool) -> None:
    rq = _build(_lead(test=test_mode))

    assert rq.dry_run is test_mode
    assert {r.dry_run for r in rq.person} == {test_mode}


def test_caps_count_in_the_campaigns_time_zone() -> None:
    rq = _build()

    day, rolling = rq.caps
    assert (day.reason, day.limit, day.rolling) == ("cap.campaign.day", 200, False)
    assert day.key.endswith(":2026-11-22")
    midnight = datetime.fromisoformat("2026-11-23T00:00:00+01:00").timestamp()
    assert day.span_ms == int((midnight - NOW_S) * 1000)
    assert (rolling.reason, rolling.limit, rolling.rolling) == ("cap.partner.rolling", 50, True)
    assert rolling.span_ms == 3600 * 1000
    assert ":p-coreg" in rolling.key


def test_keys_hold_no_personal_data_and_the_payload_no_fingerprint() -> None:
    lead = _lead()
    ref = Idempotency(key_digest="d" * 32, body_digest="b" * 32, ttl_s=DAY_S)
    rq = _build(lead, fingerprinter=Fingerprinter([K2, K1]), idempotency=ref)

    names = _all_keys(rq)
    assert [n for n in names if any(raw in n.lower() for raw in RAW_IDENTITIES)] == []
    fingerprints = {keys.hash_slot_tag(r.seen_key)[2:] for r in rq.person}
    assert len(fingerprints) == 4  # email and phone, under k2 and k1
    assert [f for f in fingerprints if f in rq.payload.decode()] == []
    # Dedup marks name a bucket and a field derived from the fingerprint, never the fingerprint.
    marks = [n for n in names if ":seen:" in n] + [c.field for c in rq.dedup]
    assert [m for m in marks if any(f.partition(".")[2] in m for f in fingerprints)] == []
    # The delivery record is what the CRM gets: the lead as typed, its ids, no identities.
    assert b'"email":"jean.dupont+promo@googlemail.com"' in rq.payload
    assert b'"ref":"order-1"' in rq.payload
    assert b"identities" not in rq.payload


def test_all_keys_of_one_decision_share_the_advertisers_hash_slot() -> None:
    ref = Idempotency(key_digest="d" * 32, body_digest="b" * 32, ttl_s=DAY_S)
    rq = _build(idempotency=ref)

    in_decision = [rq.stream_key, rq.slot_anchor, *(k for c in rq.dedup for k in c.keys)]
    in_decision += [
        *(c.key for c in rq.caps),
        *([rq.idempotency.answer_key] if rq.idempotency else []),
    ]
    assert {keys.hash_slot_tag(k) for k in in_decision} == {"a:acme"}
    for r in rq.person:
        assert keys.hash_slot_tag(r.seen_key) == keys.hash_slot_tag(r.pressure_key)
        assert keys.hash_slot_tag(r.seen_key).startswith("p:k1.")
    assert rq.idempotency is not None
    assert keys.hash_slot_tag(rq.idempotency.claim_key) == "i:p-coreg"


# -- end to end through a store: what a key rotation must not forget ---------------------------


async def test_a_key_rotation_keeps_the_advertisers_memory_of_people_seen_before_it() -> None:
    engine = DecisionEngine(MemoryStore())
    (accepted,) = await engine.run([_build(fingerprinter=Fingerprinter([K1]))])

    rotated = _build(fingerprinter=Fingerprinter([K2, K1]), now_s=NOW_S + DAY_S)
    (again,) = await engine.run([rotated])

    assert accepted is not None
    assert accepted.decision is Decision.ACCEPTED
    assert again is not None
    # The person's network memory survives the rotation too, so the lead is refused in the
    # person's slot before the advertiser's checks run; either way it is a duplicate.
    assert again.decision is Decision.DUPLICATE
    assert set(again.reasons) <= {
        "duplicate.network",
        "duplicate.campaign",
        "duplicate.advertiser",
        "duplicate.channel",
    }


@pytest.mark.parametrize(
    ("network_dedup", "pressure", "decision", "reason"),
    [
        (True, None, Decision.DUPLICATE, "duplicate.network"),
        (False, ContactPressure(limit=1, window_s=30 * DAY_S), Decision.CAPPED, "cap.person"),
    ],
)
async def test_a_key_rotation_keeps_the_network_memory_of_people_seen_before_it(
    network_dedup: bool, pressure: ContactPressure | None, decision: Decision, reason: str
) -> None:
    campaign = Campaign(
        id=CAMPAIGN.id,
        advertiser=ACME,
        name=CAMPAIGN.name,
        kind=CAMPAIGN.kind,
        timezone=CAMPAIGN.timezone,
        dedup=CAMPAIGN.dedup if network_dedup else CAMPAIGN.dedup[:3],
    )
    engine = DecisionEngine(MemoryStore())
    before = _build(campaign=campaign, pressure=pressure, fingerprinter=Fingerprinter([K1]))
    (accepted,) = await engine.run([before])

    after = _build(
        campaign=campaign,
        pressure=pressure,
        fingerprinter=Fingerprinter([K2, K1]),  # rotated the next day: k2 new, k1 still checked
        now_s=NOW_S + DAY_S,
        advertiser=AdvertiserId("globex"),
    )
    (elsewhere,) = await engine.run([after])

    assert accepted is not None
    assert accepted.decision is Decision.ACCEPTED
    # Advertiser-scope memories are found under k1 during a rotation; the person's network
    # memory and contact pressure must be too, or rotating the key resets them for everyone.
    assert elsewhere is not None
    assert (elsewhere.decision, elsewhere.reasons) == (decision, (reason,))


def test_the_keys_of_every_generation_are_the_keys_of_each() -> None:
    space = keys.SeenSpace(ACME, DedupScope.CHANNEL, CAMPAIGN.id, COREG)
    mark = keys.seen_mark(Fingerprinter([K1]).fingerprint("email", "ann@example.fr"))
    generations = keys.seen_generations(int(NOW_S * 1000), 90 * DAY_S * 1000)

    assert keys.seen_each(space, mark, generations) == tuple(
        keys.seen(space, mark, g) for g in generations
    )
    # 24-day generations: a 90-day window reads 4 or 5 hashes (weekly ones took 13 or 14).
    assert len(generations) in (4, 5)


def test_a_reloaded_campaign_is_planned_with_its_new_rules_not_the_old_ones() -> None:
    # What a (campaign, partner, channel) shares is worked out once and kept: a reload builds
    # new config objects, and a lead of the new config must never be planned with the old.
    before = _build()
    reloaded = replace(
        CAMPAIGN,
        dedup=(DedupRule(DedupScope.CAMPAIGN, 2 * DAY_S),),
        caps=(CapRule(CapSubject.PARTNER, CapWindow(period=CalendarPeriod.HOUR), 7),),
    )

    after = _build(campaign=reloaded)

    assert {c.reason for c in before.dedup} != {c.reason for c in after.dedup}
    assert {(c.reason, c.window_ms) for c in after.dedup} == {
        ("duplicate.campaign", 2 * DAY_S * 1000)
    }
    assert [(c.reason, c.limit) for c in after.caps] == [("cap.partner.hour", 7)]
    assert _build().caps == before.caps  # the original objects still get their own plan


def test_each_partner_counts_under_its_own_cap_key() -> None:
    other = replace(PARTNER, id=PartnerId("p-other"))
    lead = _lead()
    mine = _build(lead)
    theirs = build_request(
        lead=lead,
        lead_id=LeadId("lead-other"),
        campaign=CAMPAIGN,
        partner=other,
        channel=COREG,
        pressure=PRESSURE,
        fingerprinter=Fingerprinter([K1]),
        now_s=NOW_S,
    )

    (_, mine_rolling), (_, theirs_rolling) = mine.caps, theirs.caps
    assert ":p-coreg:" in mine_rolling.key
    assert ":p-other:" in theirs_rolling.key
    assert mine.caps[0].key == theirs.caps[0].key  # the campaign's own cap is shared


@pytest.mark.parametrize("days_later", [0, 3, 8, 30, 91])
def test_the_keys_kept_between_leads_follow_the_window_as_time_goes_on(days_later: int) -> None:
    # The plan keeps each scope's key heads per generation range; a lead planned days later
    # must get the keys worked out afresh for its own instant.
    fingerprinter = Fingerprinter([K1, K2])  # during a rotation: two fingerprint keys
    _build(fingerprinter=fingerprinter)  # fills what the plan keeps
    now_s = NOW_S + days_later * DAY_S

    rq = _build(fingerprinter=fingerprinter, now_s=now_s)

    lead = _lead()
    for check in rq.dedup:
        scope = DedupScope(check.reason.removeprefix("duplicate."))
        fp = next(
            fp
            for kind, value in lead.identities.items()
            for fp in fingerprinter.lookups(kind, value)
            if keys.seen_mark(fp).field == check.field
        )
        fresh = dedup_check(
            check.reason,
            keys.SeenSpace(ACME, scope, CAMPAIGN.id, COREG),
            keys.seen_mark(fp),
            now_ms=int(now_s * 1000),
            window_ms=check.window_ms,
            retention_ms=check.retention_ms,
            remember=check.remember,
        )
        assert check == fresh


async def test_a_replaced_config_leaves_nothing_of_itself_in_what_the_plan_keeps() -> None:
    # The plan keeps what each (campaign, partner, channel) shares, holding the config objects
    # it came from; a reload swaps the whole plan, and nothing keeps the old one alive.
    old, new = parse_config(network(), checksum="c0"), parse_config(network(), checksum="c1")
    intake = Intake(old, DecisionEngine(MemoryStore()), Fingerprinter([K1]))
    partner = old.partners[PartnerId("p-alpha")]
    assert intake.authenticate(KEYS["p-alpha"]) is partner
    await intake.submit(partner, {"campaign": "acme-main", "email": "kept@example.com"})
    acme = old.campaigns[CampaignId("acme-main")]
    kept = intake.plan.route(acme, partner, partner.default_channel)
    assert intake.plan.route(acme, partner, partner.default_channel) is kept  # worked out once
    # Counted among the objects the collector tracks, not by a weak reference: a class
    # compiled by mypyc (setup.py) takes none.
    plan_type = type(intake.plan)

    intake.replace_config(new)
    gc.collect()

    assert [p for p in gc.get_objects() if type(p) is plan_type and p.config is old] == []
    assert intake.plan.config is new
    assert intake.authenticate(KEYS["p-alpha"]) is new.partners[PartnerId("p-alpha")]


# -- pings (issue 20): which caps count holds, and what a ping's request carries -----------------


def _pinged_network() -> Config:
    """``network(buyers=True)`` with ``acme-ping``, a campaign of acme that takes pings (60 s;
    a campaign day cap and an advertiser-wide one), and an advertiser-wide cap on acme-main."""
    data = network(buyers=True)
    acme_main, nova_main = data["campaigns"][0], data["campaigns"][1]
    # network() lets acme-main take pings (for the metrics tests); here it is the sibling
    # that takes none.
    acme_main.pop("ping_ttl_s", None)
    acme_main["caps"].append({"subject": "advertiser", "window": "day", "limit": 50})
    acme_main["ping_ttl_s"] = 0  # the network's acme-main takes pings; here, only acme-ping
    nova_main["caps"].append({"subject": "advertiser", "window": "day", "limit": 50})
    data["campaigns"].append(
        {
            "id": "acme-ping",
            "advertiser": "acme",
            "kind": "always_on",
            "required": ["email"],
            "ping_ttl_s": 60,
            "caps": [
                {"subject": "campaign", "window": "day", "limit": 10},
                {"subject": "advertiser", "window": "day", "limit": 50},
            ],
        }
    )
    data["partners"][0]["campaigns"].append("acme-ping")
    return parse_config(data)


def _planned(
    plan: Plan, campaign_id: str, hold: Hold | None = None, *, test: bool = False
) -> DecisionRequest:
    config = plan.config
    campaign = config.campaigns[CampaignId(campaign_id)]
    posted = {"campaign": campaign_id, "email": "jean@example.com", "test": test}
    return build_request(
        lead=parse_lead(posted, config.campaigns, now_s=NOW_S),
        lead_id=LeadId("lead-1"),
        campaign=campaign,
        partner=config.partners[PartnerId("p-alpha")],
        channel=ChannelId("email"),
        pressure=ContactPressure(limit=3, window_s=30 * DAY_S),
        fingerprinter=Fingerprinter([K1]),
        now_s=NOW_S,
        plan=plan,
        hold=hold,
    )


def test_a_post_to_an_advertiser_without_pings_sends_no_holds_to_the_store() -> None:
    plan = Plan(_pinged_network())

    rq = _planned(plan, "nova-main")

    assert [c.holds for c in rq.caps] == ["", ""]
    # decide.lua gets exactly what it got before pings: no holds key, a one-character mode.
    lua_keys, lua_args = _decide_parts(rq, None, 0)
    n_dedup = sum(len(c.keys) for c in rq.dedup)
    assert len(lua_keys) == 2 + n_dedup + len(rq.caps) + 2  # answer/anchor, stream, index
    assert lua_args[2] == 0
    assert not [k for k in lua_keys if str(k).endswith(":holds") or ":ping:" in str(k)]


def test_holds_are_counted_on_every_cap_a_ping_may_hold_room_on_and_no_other() -> None:
    plan = Plan(_pinged_network())

    pinged, sibling = _planned(plan, "acme-ping"), _planned(plan, "acme-main")

    # Every cap of the campaign that takes pings.
    assert [c.holds for c in pinged.caps] == [keys.cap_holds(c.key) for c in pinged.caps]
    # Another campaign of acme shares only acme's advertiser-wide cap with those pings.
    held = {c.reason: c.holds for c in sibling.caps}
    assert held == {
        "cap.campaign.day": "",
        "cap.partner.rolling": "",
        "cap.advertiser.day": keys.cap_holds(sibling.caps[2].key),
    }
    assert sibling.caps[2].key == pinged.caps[1].key  # the one cap both count
    assert keys.hash_slot_tag(sibling.caps[2].holds) == "a:acme"


def test_a_sale_to_a_buyer_whose_advertiser_takes_pings_counts_its_advertiser_wide_holds() -> None:
    config = _pinged_network()
    sold = config.campaigns[CampaignId("sold-main")]

    route = SalePlan(config).route(sold, config.partners[PartnerId("p-alpha")], ChannelId("email"))

    acme_cap, nova_caps = route.buyers[ACME].caps, route.buyers[AdvertiserId("nova")].caps
    assert [c.holds for c in acme_cap] == [True]  # acme's buyer cap is its advertiser-wide one
    assert [c.holds for c in nova_caps] == []
    assert [c.holds for c in route.campaign.caps] == []


def test_a_ping_is_planned_as_a_check_that_queues_nothing() -> None:
    plan = Plan(_pinged_network())
    record = PingRecord(PartnerId("p-alpha"), CampaignId("acme-ping"), 1, "k1.m")
    hold = take_hold(ACME, "ping-1", replace(record, expires_ms=int(NOW_S * 1000) + 60_000),
                     now_ms=int(NOW_S * 1000))  # fmt: skip

    rq = _planned(plan, "acme-ping", hold)
    post = _planned(plan, "acme-ping", commit_hold(ACME, "ping-1"))

    assert rq.hold is hold
    assert (rq.payload, rq.index, rq.idempotency, rq.dry_run) == (b"", None, None, False)
    assert rq.person
    assert all(r.dry_run for r in rq.person)  # checked, nothing reserved
    assert post.hold == commit_hold(ACME, "ping-1")
    assert post.payload
    assert post.index is not None
    assert not any(r.dry_run for r in post.person if r.pressure_limit)
    with pytest.raises(ValueError, match="takes no pings"):
        _planned(plan, "acme-main", hold)


def test_a_sale_without_pings_sends_no_holds_to_either_slot() -> None:
    config = network(buyers=True)
    config["campaigns"][0].pop("ping_ttl_s", None)  # no advertiser takes pings
    config["campaigns"][-1]["caps"] = [{"subject": "campaign", "window": "day", "limit": 5}]
    parsed = parse_config(config)
    sold = parsed.campaigns[CampaignId("sold-main")]
    route = SalePlan(parsed).route(sold, parsed.partners[PartnerId("p-alpha")], ChannelId("email"))

    assert [c.holds for c in route.campaign.caps] == [False]
    assert [c.holds for r in route.buyers.values() for c in r.caps] == [False]
    # campaign_reserve.lua gets exactly what it got before pings: a one-character mode, no
    # holds key.
    reservation = CampaignReservation(
        "lg:{c:sold-main}:res:l1", LeadId("l1"), 1, False, (),
        tuple(cap_checks(route.campaign.caps, sold.timezone, NOW_S)), 1000,
    )  # fmt: skip
    command = _campaign_reserve_command(reservation)
    assert command[3 + 2 + 2] == 0  # ARGV[3]: after EVALSHA, sha, numkeys, 2 keys, 2 args
    assert not [w for w in command if str(w).endswith(":holds")]


def test_a_distributed_campaign_with_pings_holds_every_cap_of_its_own_and_its_buyers() -> None:
    config = network(buyers=True)
    config["campaigns"][0].pop("ping_ttl_s", None)
    config["campaigns"][-1]["ping_ttl_s"] = 60
    config["campaigns"][-1]["caps"] = [{"subject": "campaign", "window": "day", "limit": 5}]
    parsed = parse_config(config)
    sold = parsed.campaigns[CampaignId("sold-main")]
    partner = parsed.partners[PartnerId("p-alpha")]

    route = SalePlan(parsed).route(sold, partner, ChannelId("email"))

    assert [c.holds for c in route.campaign.caps] == [True]
    assert [c.holds for c in route.buyers[ACME].caps] == [True]
    # acme's own campaigns count the holds on its advertiser-wide caps: a buyer's pings share them.
    assert ACME in pinged_advertisers(parsed)
