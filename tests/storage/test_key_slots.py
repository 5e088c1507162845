"""Every Lua script gets keys of one hash slot, so it runs unchanged on Redis Cluster.

Requests are built the way the gateway builds them (``decision.plan.build_request`` from a
parsed lead and its campaign), for several advertisers, partners, channels and fingerprint
keys, with ids holding ``-``, ``_`` and digits. Slots are computed with Redis Cluster's own
CRC16 (``redis.crc.key_slot``), not with ``keys.hash_slot_tag``, so a tag that Redis would
read differently (a stray brace, an empty tag) fails here.
"""

from __future__ import annotations

import itertools
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from redis.crc import key_slot

from gateway.config.model import (
    CalendarPeriod,
    Campaign,
    CampaignKind,
    CapRule,
    CapSubject,
    CapWindow,
    ContactPressure,
    DedupRule,
    DedupScope,
    Partner,
    PressureUnit,
    SuppressionRule,
    VelocityRule,
)
from gateway.decision.model import DecisionRequest
from gateway.decision.plan import Idempotency, build_request, digest
from gateway.leads.fingerprint import Fingerprinter
from gateway.leads.parse import parse_lead
from gateway.storage import keys
from gateway.storage.redis import _decide_command, _decide_parts
from gateway.types import AdvertiserId, CampaignId, ChannelId, FingerprintKey, LeadId, PartnerId

DAY_S = 86_400
NOW_S = datetime.fromisoformat("2026-11-22T15:30:00+01:00").timestamp()
K1 = FingerprintKey("k1", b"x" * 32)
K2 = FingerprintKey("2026a_k-2", b"y" * 32)
EMAIL = "Jean.Dupont+promo@GoogleMail.com"
PHONE = "06 12 34 56 78"
IP = "203.0.113.77"
#: What the person typed, in every spelling that could leak into a key name.
RAW = ("jean.dupont", "jeandupont", "googlemail", "gmail", "0612345678", "612345678", IP)

ADVERTISERS = [AdvertiserId(a) for a in ("acme", "globex-fr_2", "a1", "x_y-z-9")]
PARTNERS = [PartnerId(p) for p in ("p-coreg", "p_42", "mail-7")]
CHANNELS = [ChannelId(c) for c in ("coreg", "cash_back-2")]
#: One fingerprint key, and a rotation (the new key first, the previous one still checked).
KEY_SETS = [(K1,), (K2, K1)]

EVERY_CAP = tuple(
    CapRule(subject, window, 100)
    for subject in CapSubject
    for window in (CapWindow(period=CalendarPeriod.DAY), CapWindow(rolling_s=3600))
)
VELOCITY = (
    VelocityRule("ip-1h", "velocity.ip", "too many leads from one address", 5, 3600),
    VelocityRule("ip_day-2", "velocity.ip", "too many leads from one address", 20, DAY_S),
)
SUPPRESSION = (SuppressionRule("optout", "suppressed", "on a list", ("optout", "cust-2")),)
DELIVERY_QUEUE = (
    keys.deliveries,
    keys.delivery_retries,
    keys.delivery_delayed,
    keys.delivery_waiting,
    keys.delivery_retrying,
    keys.delivery_dead,
    keys.delivery_disabled,
)

_lead_numbers = itertools.count(1)


def _campaign(advertiser: AdvertiserId, identity_fields: tuple[str, ...]) -> Campaign:
    """A campaign that uses every key builder of the decision: all dedup scopes, every cap
    subject on a calendar and a rolling window, IP velocity, suppression lists, pressure."""
    return Campaign(
        id=CampaignId(f"{advertiser}-peak_2026"),
        advertiser=advertiser,
        name=advertiser,
        kind=CampaignKind.ALWAYS_ON,
        timezone=ZoneInfo("Europe/Paris"),
        identity_fields=identity_fields,
        dedup=tuple(DedupRule(scope, 30 * DAY_S) for scope in DedupScope),
        caps=EVERY_CAP,
        velocity=VELOCITY,
        suppression=SUPPRESSION,
    )


def _request(
    advertiser: AdvertiserId,
    partner: PartnerId,
    channel: ChannelId,
    key_set: tuple[FingerprintKey, ...],
    identity_fields: tuple[str, ...] = ("email", "phone"),
    *,
    test: bool = False,
    per: PressureUnit = PressureUnit.ADVERTISER,
) -> DecisionRequest:
    campaign = _campaign(advertiser, identity_fields)
    posted = {"campaign": campaign.id, "email": EMAIL, "phone": PHONE, "ip": IP, "test": test}
    lead = parse_lead(posted, {campaign.id: campaign}, now_s=NOW_S)
    return build_request(
        lead=lead,
        lead_id=LeadId(f"lead-{next(_lead_numbers):04d}"),
        campaign=campaign,
        partner=Partner(partner, partner, (), tuple(CHANNELS), (campaign.id,)),
        channel=channel,
        pressure=ContactPressure(limit=3, window_s=30 * DAY_S, per=per),
        fingerprinter=Fingerprinter(key_set),
        now_s=NOW_S,
        idempotency=Idempotency(digest(b"key-" + partner.encode()), digest(b"body"), DAY_S),
    )


def _decide_keys(rq: DecisionRequest) -> list[str]:
    """The KEYS the store passes to ``decide.lua`` for ``rq``, legacy marks included (an
    upgrade a day ago: the legacy layout may hold marks in every window)."""
    command = _decide_command([_decide_parts(rq, None, rq.now_ms - DAY_S * 1000)])
    count = int(command[2])
    return [str(k) for k in command[3 : 3 + count]]


def _slots(names: list[str]) -> set[int]:
    return {key_slot(name.encode()) for name in names}


def _advertiser_slot(advertiser: AdvertiserId) -> int:
    return key_slot(f"a:{advertiser}".encode())


CASES = [
    pytest.param(a, p, c, f, id=f"{a}/{p}/{c}/{len(f)}key")
    for a, p, c, f in itertools.product(ADVERTISERS, PARTNERS, CHANNELS, KEY_SETS)
]


@pytest.mark.parametrize(("advertiser", "partner", "channel", "key_set"), CASES)
def test_every_key_of_one_decision_is_in_the_advertisers_slot(
    advertiser: AdvertiserId,
    partner: PartnerId,
    channel: ChannelId,
    key_set: tuple[FingerprintKey, ...],
) -> None:
    rq = _request(advertiser, partner, channel, key_set)
    assert rq.idempotency is not None
    decide = _decide_keys(rq)

    # Every kind of key the decision holds is really there, so none escapes the check.
    identities = 2 * len(key_set)
    assert len(rq.dedup) == 3 * identities
    assert len(rq.caps) == len(EVERY_CAP) + len(VELOCITY)
    assert sum(":vel:" in c.key for c in rq.caps) == len(VELOCITY)
    assert set(decide) >= {
        rq.stream_key,
        rq.idempotency.answer_key,
        *(k for c in rq.dedup for k in c.keys),
        *(c.key for c in rq.caps),
    }
    assert rq.index is not None
    slot = keys.lead_index(advertiser, rq.lead_id)
    assert {rq.index.key, rq.index.routes} == {slot.key, slot.routes} <= set(decide)
    # The legacy layout's marks the decision still reads are in the slot too.
    assert any(":seen:" in k and ":g" not in k.rsplit(":", 3)[1] for k in decide)
    assert _slots([*decide, rq.slot_anchor]) == {_advertiser_slot(advertiser)}


@pytest.mark.parametrize("advertiser", ADVERTISERS)
def test_without_an_idempotency_key_the_anchor_keeps_the_decision_in_one_slot(
    advertiser: AdvertiserId,
) -> None:
    rq = _request(advertiser, PARTNERS[0], CHANNELS[0], KEY_SETS[0], test=True)

    assert rq.idempotency is None  # test mode remembers no Idempotency-Key
    decide = _decide_keys(rq)
    assert decide[0] == rq.slot_anchor == keys.slot_anchor(advertiser)
    assert _slots(decide) == {_advertiser_slot(advertiser)}


@pytest.mark.parametrize("per", list(PressureUnit))
@pytest.mark.parametrize("identity_fields", [("email", "phone"), ("email",), ("phone",)])
@pytest.mark.parametrize("key_set", KEY_SETS, ids=["one-key", "rotation"])
def test_each_person_reservation_keeps_its_keys_in_the_persons_slot(
    per: PressureUnit, identity_fields: tuple[str, ...], key_set: tuple[FingerprintKey, ...]
) -> None:
    rq = _request(ADVERTISERS[1], PARTNERS[1], CHANNELS[1], key_set, identity_fields, per=per)

    # Suppression lists check email and phone whatever the campaign dedups on.
    assert len(rq.person) == 2 * len(key_set)
    fingerprints = set()
    for reservation in rq.person:
        # person_reserve.lua gets these three; person_release.lua the first two.
        script_keys = [reservation.seen_key, reservation.pressure_key, reservation.suppressed_key]
        assert all(script_keys)
        (slot,) = _slots(script_keys)
        fingerprint = keys.hash_slot_tag(reservation.seen_key).removeprefix("p:")
        assert slot == key_slot(f"p:{fingerprint}".encode())
        fingerprints.add(fingerprint)
    assert len(fingerprints) == len(rq.person)  # one slot per identity and key, not per lead


@pytest.mark.parametrize("advertiser", ADVERTISERS)
def test_one_advertisers_delivery_queue_and_feedback_keys_share_its_slot(
    advertiser: AdvertiserId,
) -> None:
    queue = [build(advertiser) for build in DELIVERY_QUEUE]
    feedback = [
        key
        for lead in ("lead-0001", "lead_x-77")
        for key in (
            keys.lead_index(advertiser, lead).key,
            keys.lead_index(advertiser, lead).routes,
            keys.legacy_lead_index(advertiser, lead),
            keys.lead_feedback(advertiser, lead),
        )
    ]

    assert len(set(queue)) == len(DELIVERY_QUEUE)
    assert _slots(queue + feedback) == {_advertiser_slot(advertiser)}


@pytest.mark.parametrize("partner", PARTNERS)
def test_an_idempotency_claim_is_in_its_partners_slot_outside_every_decision(
    partner: PartnerId,
) -> None:
    claims = {a: _request(a, partner, CHANNELS[0], KEY_SETS[0]).idempotency for a in ADVERTISERS}

    # One Idempotency-Key of a partner is claimed in one place whatever the advertiser, so a
    # reuse across advertisers is seen; the claim is a single-key command, never in decide.
    assert {ref.claim_key for ref in claims.values() if ref is not None} == {
        keys.idempotency_claim(partner, digest(b"key-" + partner.encode()))
    }
    for advertiser, ref in claims.items():
        assert ref is not None
        assert key_slot(ref.claim_key.encode()) == key_slot(f"i:{partner}".encode())
        rq = _request(advertiser, partner, CHANNELS[0], KEY_SETS[0])
        assert ref.claim_key not in _decide_keys(rq)


def test_advertisers_spread_over_slots() -> None:
    # The tags differ per advertiser, so a cluster can spread advertisers over its primaries.
    assert len({_advertiser_slot(a) for a in ADVERTISERS}) == len(ADVERTISERS)


@pytest.mark.parametrize("key_set", KEY_SETS, ids=["one-key", "rotation"])
def test_no_key_holds_a_raw_email_phone_or_ip(key_set: tuple[FingerprintKey, ...]) -> None:
    names: list[str] = []
    for advertiser, partner in itertools.product(ADVERTISERS, PARTNERS):
        rq = _request(advertiser, partner, CHANNELS[0], key_set)
        names += _decide_keys(rq)
        for r in rq.person:
            names += [r.seen_key, r.pressure_key, r.suppressed_key]
        assert rq.idempotency is not None
        names.append(rq.idempotency.claim_key)

    assert len(names) > 100
    assert [n for n in names if any(raw in n.lower() for raw in RAW)] == []
    assert [n for n in names if "@" in n or "+33" in n] == []
