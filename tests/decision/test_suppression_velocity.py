"""Suppression lists and IP velocity: the store-decided rules, on both stores.

Suppression is checked in the person's slot before anything is reserved, for every email and
phone of the lead (whatever the campaign dedups on), under every fingerprint key in use; IP
velocity is a rolling cap on the IP's fingerprint, committed with the other caps."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from zoneinfo import ZoneInfo

from support import StoreView

from gateway.config.model import (
    Campaign,
    CampaignKind,
    ContactPressure,
    DedupRule,
    DedupScope,
    Partner,
    SuppressionRule,
    VelocityRule,
)
from gateway.decision.engine import DecisionEngine
from gateway.decision.model import Decision, DecisionOutcome
from gateway.decision.plan import build_request
from gateway.leads.fingerprint import Fingerprinter
from gateway.leads.ids import new_lead_id
from gateway.leads.parse import parse_lead
from gateway.privacy.suppression import identity_keys
from gateway.storage.base import Store, SuppressionStore
from gateway.storage.memory import MemoryStore
from gateway.storage.redis import RedisStore
from gateway.types import AdvertiserId, CampaignId, ChannelId, FingerprintKey, PartnerId

ACME = AdvertiserId("acme")
EMAIL = ChannelId("email")
NOW_S = 1_795_000_000.0
K1 = FingerprintKey("k1", b"s" * 32)
K2 = FingerprintKey("k2", b"t" * 32)
OPTOUT = SuppressionRule("list-optout", "suppressed", "on the opt-out list", ("optout",))
CUSTOMERS = SuppressionRule("no-customers", "rule.customers", "already a customer", ("customers",))
BASE = Campaign(
    id=CampaignId("acme-on"),
    advertiser=ACME,
    name="ACME",
    kind=CampaignKind.ALWAYS_ON,
    timezone=ZoneInfo("Europe/Paris"),
    identity_fields=("email",),
    dedup=(DedupRule(DedupScope.ADVERTISER, 30 * 86_400),),
    suppression=(OPTOUT, CUSTOMERS),
)
PARTNER = Partner(PartnerId("p1"), "P1", (), (EMAIL,), (BASE.id,))


def lead(n: int, **fields: object) -> dict[str, object]:
    return {
        "campaign": BASE.id,
        "email": f"person{n}@example.org",
        "phone": f"+33 6 12 34 56 {n:02d}",
        **fields,
    }


async def decide(
    store: Store,
    data: Mapping[str, object],
    *,
    campaign: Campaign = BASE,
    keys: tuple[FingerprintKey, ...] = (K1,),
    now_s: float = NOW_S,
    pressure: ContactPressure | None = None,
) -> DecisionOutcome:
    parsed = parse_lead(data, {campaign.id: campaign}, now_s=now_s)
    rq = build_request(
        lead=parsed,
        lead_id=new_lead_id(),
        campaign=campaign,
        partner=PARTNER,
        channel=EMAIL,
        pressure=pressure,
        fingerprinter=Fingerprinter(keys),
        now_s=now_s,
    )
    (outcome,) = await DecisionEngine(store).run([rq])
    assert outcome is not None
    return outcome


def lists(store: Store) -> SuppressionStore:
    """Both stores keep suppression lists (the engine's ``Store`` contract does not need to)."""
    assert isinstance(store, MemoryStore | RedisStore)
    return store


async def suppress(
    store: Store,
    list_id: str,
    *,
    keys: tuple[FingerprintKey, ...] = (K1,),
    email: str | None = None,
    phone: str | None = None,
) -> int:
    found = identity_keys(Fingerprinter(keys), email=email, phone=phone)
    return await lists(store).suppression_change(list_id, found, add=True)


async def test_a_person_on_a_list_is_rejected_and_nothing_is_remembered(
    store: Store, view: StoreView
) -> None:
    assert await suppress(store, "optout", email="Person1@Example.org") == 1
    outcome = await decide(store, lead(1))
    assert (outcome.decision, outcome.reasons) == (Decision.REJECTED, ("suppressed",))
    assert await view.deliveries(ACME) == []
    # Taken off the list, the person is accepted: the refusal remembered nothing.
    found = identity_keys(Fingerprinter((K1,)), email="person1@example.org")
    assert await lists(store).suppression_change("optout", found, add=False) == 1
    assert (await decide(store, lead(1))).decision is Decision.ACCEPTED


async def test_the_phone_is_checked_even_when_the_campaign_dedups_on_email_only(
    store: Store,
) -> None:
    await suppress(store, "customers", phone="06 12 34 56 02")
    outcome = await decide(store, lead(2))
    assert (outcome.decision, outcome.reasons) == (Decision.REJECTED, ("rule.customers",))


async def test_the_email_identity_form_is_what_lists_hold(store: Store) -> None:
    """A list loaded with one spelling catches the other spellings of the same mailbox."""
    await suppress(store, "optout", email="jean.dupont@gmail.com")
    outcome = await decide(store, lead(3, email="J.E.A.N.Dupont+promo@googlemail.com"))
    assert outcome.reasons == ("suppressed",)


async def test_lists_the_campaign_does_not_check_do_not_refuse(store: Store) -> None:
    await suppress(store, "litigators", email="person4@example.org")
    assert (await decide(store, lead(4))).decision is Decision.ACCEPTED
    campaign = dataclasses.replace(BASE, suppression=())
    await suppress(store, "optout", email="person5@example.org")
    assert (await decide(store, lead(5), campaign=campaign)).decision is Decision.ACCEPTED


async def test_test_mode_still_reports_suppression(store: Store) -> None:
    await suppress(store, "optout", email="person6@example.org")
    outcome = await decide(store, lead(6, test=True))
    assert outcome.reasons == ("suppressed",)


async def test_a_list_loaded_before_a_key_rotation_still_counts(store: Store) -> None:
    await suppress(store, "optout", email="person7@example.org", keys=(K1,))
    outcome = await decide(store, lead(7), keys=(K2, K1))
    assert outcome.reasons == ("suppressed",)


async def test_suppression_comes_before_network_dedup_and_pressure(store: Store) -> None:
    campaign = dataclasses.replace(BASE, dedup=(*BASE.dedup, DedupRule(DedupScope.NETWORK, 86_400)))
    pressure = ContactPressure(limit=1, window_s=86_400)
    assert (await decide(store, lead(8), campaign=campaign, pressure=pressure)).decision is (
        Decision.ACCEPTED
    )
    await suppress(store, "optout", email="person8@example.org")
    outcome = await decide(store, lead(8), campaign=campaign, pressure=pressure)
    assert outcome.reasons == ("suppressed",)


async def test_sizes_count_identities_once(store: Store) -> None:
    assert await suppress(store, "optout", email="a@example.org", phone="+33612345699") == 2
    assert await suppress(store, "optout", email="A@example.org") == 0
    assert await lists(store).suppression_size("optout") == 2


VELOCITY = VelocityRule("ip-burst", "fraud.ip_velocity", "too many leads from one IP", 2, 3600)


async def test_ip_velocity_caps_accepted_leads_per_ip(store: Store) -> None:
    campaign = dataclasses.replace(BASE, suppression=(), velocity=(VELOCITY,))
    ip = "203.0.113.7"
    for n in (10, 11):
        assert (await decide(store, lead(n, ip=ip), campaign=campaign)).decision is (
            Decision.ACCEPTED
        )
    third = await decide(store, lead(12, ip=ip), campaign=campaign)
    assert (third.decision, third.reasons) == (Decision.CAPPED, ("fraud.ip_velocity",))
    # Another address, or the same one once the window has slid past, goes through.
    other = await decide(store, lead(13, ip="198.51.100.1"), campaign=campaign)
    assert other.decision is Decision.ACCEPTED
    later = await decide(store, lead(14, ip=ip), campaign=campaign, now_s=NOW_S + 3601)
    assert later.decision is Decision.ACCEPTED
    # A lead without an IP is not counted against anyone.
    assert (await decide(store, lead(15), campaign=campaign)).decision is Decision.ACCEPTED


async def test_a_duplicate_does_not_count_against_the_ip(store: Store) -> None:
    campaign = dataclasses.replace(BASE, suppression=(), velocity=(VELOCITY,))
    ip = "2001:db8::1"
    assert (await decide(store, lead(20, ip=ip), campaign=campaign)).decision is Decision.ACCEPTED
    dup = await decide(store, lead(20, ip=ip), campaign=campaign)
    assert dup.decision is Decision.DUPLICATE
    assert (await decide(store, lead(21, ip=ip), campaign=campaign)).decision is Decision.ACCEPTED


async def test_no_personal_data_in_key_names(store: Store, view: StoreView) -> None:
    await suppress(store, "optout", email="canary.person@example.org", phone="+33 6 99 88 77 66")
    campaign = dataclasses.replace(BASE, velocity=(VELOCITY,))
    await decide(store, lead(30, ip="192.0.2.44"), campaign=campaign)
    names = " ".join(await view.key_names())
    for canary in ("canary", "example.org", "99887766", "+336", "192.0.2.44", "person30"):
        assert canary not in names


async def test_list_ids_match_whole(store: Store) -> None:
    """An identity on ``optout-eu`` and ``xoptout`` is on neither ``optout`` nor ``opt``."""
    await suppress(store, "optout-eu", email="person40@example.org")
    await suppress(store, "xoptout", email="person40@example.org")
    assert (await decide(store, lead(40))).decision is Decision.ACCEPTED


async def test_taking_one_list_off_keeps_the_others(store: Store) -> None:
    await suppress(store, "customers", email="person41@example.org")
    await suppress(store, "optout", email="person41@example.org")
    found = identity_keys(Fingerprinter((K1,)), email="person41@example.org")
    assert await lists(store).suppression_change("optout", found, add=False) == 1
    assert await lists(store).suppression_change("optout", found, add=False) == 0
    outcome = await decide(store, lead(41))
    assert outcome.reasons == ("rule.customers",)
    assert await lists(store).suppression_change("customers", found, add=False) == 1
    assert (await decide(store, lead(41))).decision is Decision.ACCEPTED
