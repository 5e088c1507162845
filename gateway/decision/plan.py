"""From a validated lead and its campaign to a complete ``DecisionRequest`` (pure).

Everything a store needs is computed here: the fingerprint of every identity under every key
still in use, every dedup key with its window for the lead's channel, every cap's key for the
current calendar period or rolling window, the person's reservations and the delivery record.
"""

from __future__ import annotations

import functools
import hashlib
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import repeat
from typing import NamedTuple
from zoneinfo import ZoneInfo

import orjson

from gateway.config.model import (
    CalendarPeriod,
    Campaign,
    CapRule,
    CapSubject,
    Config,
    ContactPressure,
    DedupRule,
    DedupScope,
    Partner,
    PressureUnit,
    SuppressionRule,
    VelocityRule,
)
from gateway.decision.model import (
    CapCheck,
    DecisionRequest,
    DedupCheck,
    Hold,
    HoldMode,
    IdempotencyRef,
    LeadIndexEntry,
    PersonReservation,
)
from gateway.decision.windows import calendar_bucket
from gateway.leads.email import email_identity
from gateway.leads.fingerprint import Fingerprinter
from gateway.leads.lead import Lead
from gateway.storage import keys
from gateway.types import AdvertiserId, ChannelId, Fingerprint, LeadId


@dataclass(frozen=True, slots=True)
class Idempotency:
    """A request's Idempotency-Key, already hashed (the raw key is never stored)."""

    key_digest: str
    body_digest: str
    ttl_s: int


def digest(data: bytes) -> str:
    """Short non-reversible digest for idempotency keys and bodies (they may hold personal data)."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def build_request(
    *,
    lead: Lead,
    lead_id: LeadId,
    campaign: Campaign,
    partner: Partner,
    channel: ChannelId,
    pressure: ContactPressure | None,
    fingerprinter: Fingerprinter,
    now_s: float,
    idempotency: Idempotency | None = None,
    plan: Plan | None = None,
    hold: Hold | None = None,
) -> DecisionRequest:
    """The complete request for one lead. ``plan``: the config's compiled plan, whose routes
    are kept between leads (the intake's); without one the route is worked out for this lead
    alone, and only holds of ``campaign``'s own pings are counted (a ``Plan`` also knows the
    advertiser's other campaigns that take pings, which share its advertiser-wide caps).

    ``hold``: a ping (``decision.ping.take_hold``: decided as in test mode, the person's slot
    only checked, nothing written but the hold, so no Idempotency-Key) or a post naming one
    (``commit_hold``); ``ValueError`` for a ping to a campaign that takes none."""
    now_ms = int(now_s * 1000)
    advertiser = campaign.advertiser
    if advertiser is None:
        raise ValueError(f"campaign {campaign.id} is sold to buyers: see decision.sale_plan")
    ping = hold is not None and hold.mode is HoldMode.TAKE
    if ping and (campaign.ping_ttl_s <= 0 or idempotency is not None):
        raise ValueError(f"campaign {campaign.id} takes no pings, nor a ping an Idempotency-Key")
    identities = lookups(lead, fingerprinter)
    route = (
        plan.route(campaign, partner, channel)
        if plan
        else _route(campaign, partner, channel, pinged=campaign.ping_ttl_s > 0)
    )
    caps = cap_checks(route.caps, campaign.timezone, now_s)
    if lead.ip is not None and campaign.velocity:
        ip_fp = fingerprinter.fingerprint("ip", lead.ip)
        caps += [
            velocity_check(velocity, keys.ip_velocity(advertiser, velocity.id, ip_fp))
            for velocity in campaign.velocity
        ]
    pressing = pressure if pressure is not None and campaign.contact_pressure else None
    unit = campaign.id if pressing and pressing.per is PressureUnit.CAMPAIGN else advertiser
    person = person_reservations(
        lead, identities, route, pressing, unit, lead_id, now_ms, channel, fingerprinter,
        check_only=ping,
    )  # fmt: skip
    idem = None
    # Test mode remembers nothing, not even an Idempotency-Key (and a ping takes none).
    if idempotency is not None and not lead.test:
        idem = IdempotencyRef(
            claim_key=keys.idempotency_claim(partner.id, idempotency.key_digest),
            answer_key=keys.idempotency_answer(advertiser, partner.id, idempotency.key_digest),
            body_digest=idempotency.body_digest,
            ttl_ms=idempotency.ttl_s * 1000,
            lead_id=lead_id,
        )
    stream_key, slot_anchor = _slot_keys(advertiser)
    payload, index = b"", None  # a ping queues nothing and indexes nothing
    if not ping:
        record = {
            "lead_id": lead_id,
            "campaign": campaign.id,
            "advertiser": advertiser,
            "partner": partner.id,
            "channel": channel,
            "ref": lead.ref,
            "accepted_at_ms": now_ms,
            "lead": lead.to_payload(),
        }
        payload = orjson.dumps(record)
        index = route.index_entry(advertiser, lead_id, campaign.feedback_window_s * 1000)
    return DecisionRequest(
        lead_id=lead_id,
        now_ms=now_ms,
        dry_run=lead.test,
        dedup=dedup_checks(route.scopes, identities, now_ms),
        caps=tuple(caps),
        person=person,
        stream_key=stream_key,
        payload=payload,
        idempotency=idem,
        slot_anchor=slot_anchor,
        index=index,
        hold=hold,
    )


@functools.lru_cache(maxsize=1024)
def _slot_keys(advertiser: AdvertiserId) -> tuple[str, str]:
    """The advertiser's delivery stream and slot anchor: the same for all its leads (an id
    from the config, never personal data; the cache's look-up runs in C)."""
    return keys.deliveries(advertiser), keys.slot_anchor(advertiser)


def index_route(campaign: Campaign, partner: Partner, channel: ChannelId) -> str:
    """The lead index's route text (``LeadIndexEntry.route``): ids and the campaign's return
    and feedback windows, ms; the same for every lead of a route."""
    return (
        f"{partner.id}|{campaign.id}|{channel}|{campaign.return_window_s * 1000}|"
        f"{campaign.feedback_window_s * 1000}"
    )


def index_entry(
    advertiser: AdvertiserId, lead_id: LeadId, route: str, code: int, feedback_window_ms: int
) -> LeadIndexEntry:
    """Where and how an accepted lead (or a buyer's sale) is indexed for the advertiser's
    feedback (``keys.lead_index``): under ``route``, the index text of its route
    (``index_route``), and its ``code`` (``keys.lead_route``)."""
    slot = keys.lead_index(advertiser, lead_id)
    return LeadIndexEntry(
        slot.key, slot.routes, slot.field, slot.id_ms, slot.generation_ends_ms,
        code, route, feedback_window_ms,
    )  # fmt: skip


Identities = list[tuple[str, tuple[Fingerprint, ...]]]


def lookups(lead: Lead, fingerprinter: Fingerprinter) -> Identities:
    """Each identity of the lead with its fingerprint under every key still in use (the
    current key's first)."""
    if lead.hashed:
        return [
            (kind, fingerprinter.digest_lookups(kind, bytes.fromhex(digest)))
            for kind, digest in lead.identities.items()
        ]
    return [(kind, fingerprinter.lookups(kind, value)) for kind, value in lead.identities.items()]


def dedup_checks(
    scopes: Sequence[ScopePlan], identities: Identities, now_ms: int
) -> tuple[DedupCheck, ...]:
    """Every identity's check in every scope of a route (the slot its prefixes name)."""
    # Each fingerprint's mark, once for all scopes, and whether it is remembered (the current
    # key's, the first of its identity).
    marked = [
        (keys.seen_mark(fp), n == 0)
        for _, fingerprints in identities
        for n, fp in enumerate(fingerprints)
    ]
    dedup: list[DedupCheck] = []
    for scope in scopes:
        reason, window_ms, retention_ms = scope.reason, scope.window_ms, scope.retention_ms
        # A lead's identities share their fingerprint key (two keys during a rotation): the
        # scope's frame under each is looked up once.
        key_id: str | None = None
        heads: tuple[str, ...] = ()
        newest, legacy_head = 0, ""
        for mark, remember in marked:
            if mark.key_id != key_id:
                key_id = mark.key_id
                heads, newest, legacy_head = scope.frame(key_id, now_ms)
            dedup.append(
                DedupCheck(
                    reason,
                    # keys.seen_in(heads, mark), inline: it runs for every identity in
                    # every scope of every lead.
                    tuple(map(operator.add, heads, repeat(mark.bucket_name))),
                    mark.field,
                    newest,
                    window_ms,
                    retention_ms,
                    remember,
                    legacy_head,
                    mark.legacy_bucket,
                )
            )
    return tuple(dedup)


def cap_checks(caps: Sequence[CapPlan], zone: ZoneInfo, now_s: float) -> list[CapCheck]:
    """Every cap of a route, keyed for the current calendar period or rolling window, with
    its holds' key when pings may hold room on it (``CapPlan.holds``)."""
    checks: list[CapCheck] = []
    for cap in caps:
        if cap.period is not None:
            bucket, end_s = calendar_bucket(cap.period, zone, now_s)
            span_ms, rolling = max(1, int((end_s - now_s) * 1000)), False
        else:
            bucket, span_ms, rolling = str(cap.rolling_s), cap.rolling_s * 1000, True
        key = cap.key_head + bucket
        holds = keys.cap_holds(key) if cap.holds else ""
        checks.append(CapCheck(cap.reason, key, cap.limit, rolling, span_ms, holds))
    return checks


def velocity_check(velocity: VelocityRule, key: str) -> CapCheck:
    """An IP velocity rule as the rolling cap it is, on the IP's sliding log ``key``."""
    return CapCheck(velocity.reason, key, velocity.limit, rolling=True,
                    span_ms=velocity.window_s * 1000)  # fmt: skip


def person_reservations(
    lead: Lead,
    identities: Identities,
    route: Route,
    pressing: ContactPressure | None,
    unit: str,
    lead_id: LeadId,
    now_ms: int,
    channel: ChannelId,
    fingerprinter: Fingerprinter,
    *,
    check_only: bool = False,
) -> tuple[PersonReservation, ...]:
    """The reservations of the person's slot (network dedup, contact pressure as ``unit``,
    suppression lists): one per identity and fingerprint key; none when nothing needs them.
    ``check_only`` (a ping): checked as in test mode, nothing reserved, nothing to release."""
    person: list[PersonReservation] = []
    network, suppress = route.network, route.suppress
    if network is None and pressing is None and not suppress:
        return ()
    for kind, fingerprints in _person_identities(lead, identities, bool(suppress), fingerprinter):
        # Network dedup and pressure follow the campaign's identity fields; suppression
        # lists hold every email and phone, whatever the campaign dedups on.
        counted = kind in lead.identities
        # Under a previous key (during a rotation) the person is only checked, as in test
        # mode: what was remembered before the rotation still counts, nothing new is
        # written under an old key.
        for n, fp in enumerate(fingerprints):
            person.append(
                PersonReservation(
                    seen_key=keys.person_network_seen(fp),
                    pressure_key=keys.person_pressure(fp),
                    lead_id=lead_id,
                    unit=unit,
                    now_ms=now_ms,
                    dry_run=check_only or lead.test or n > 0 or not counted,
                    network_window_ms=(
                        network.window_for(channel) * 1000 if network and counted else 0
                    ),
                    network_retention_ms=network.retention_s * 1000 if network else 0,
                    pressure_limit=pressing.limit if pressing and counted else 0,
                    pressure_window_ms=pressing.window_s * 1000 if pressing else 0,
                    suppressed_key=keys.person_suppressed(fp) if suppress else "",
                    suppress=suppress,
                )
            )
    return tuple(person)


def build_refusal(
    *,
    lead_id: LeadId,
    campaign: Campaign,
    partner: Partner,
    now_s: float,
    idempotency: Idempotency,
    reasons: tuple[str, ...],
) -> DecisionRequest:
    """The request that records a rejection decided before the store (an inactive campaign,
    the rules) under its Idempotency-Key: no check, no reservation, no delivery record; the
    store answers ``rejected`` with ``reasons`` and keeps the answer for a retry, or answers
    a replay or a conflict like any keyed request. A campaign sold to buyers records it in its
    own slot, where its sales' answers are (the stream key is then its anchor: a forced
    outcome never writes to it)."""
    advertiser = campaign.advertiser
    if advertiser is None:
        anchor = keys.campaign_anchor(campaign.id)
        answer_key = keys.campaign_answer(campaign.id, partner.id, idempotency.key_digest)
        stream_key = anchor
    else:
        anchor = keys.slot_anchor(advertiser)
        answer_key = keys.idempotency_answer(advertiser, partner.id, idempotency.key_digest)
        stream_key = keys.deliveries(advertiser)
    return DecisionRequest(
        lead_id=lead_id,
        now_ms=int(now_s * 1000),
        dry_run=False,
        dedup=(),
        caps=(),
        person=(),
        stream_key=stream_key,
        payload=b"",
        idempotency=IdempotencyRef(
            claim_key=keys.idempotency_claim(partner.id, idempotency.key_digest),
            answer_key=answer_key,
            body_digest=idempotency.body_digest,
            ttl_ms=idempotency.ttl_s * 1000,
            lead_id=lead_id,
        ),
        slot_anchor=anchor,
        rejected=reasons,
    )


def dedup_check(
    reason: str,
    space: keys.SeenSpace,
    mark: keys.SeenMark,
    *,
    now_ms: int,
    window_ms: int,
    retention_ms: int,
    remember: bool = True,
) -> DedupCheck:
    """One identity's check in one scope of an advertiser: the hashes of every generation its
    window reaches (and the legacy layout's, ``DedupCheck.legacy_head``)."""
    generations = keys.seen_generations(now_ms, window_ms)
    return DedupCheck(
        reason,
        keys.seen_each(space, mark, generations),
        mark.field,
        generations[0],
        window_ms,
        retention_ms,
        remember,
        keys.legacy_seen_head(space.prefix(), mark.key_id),
        mark.legacy_bucket,
    )


def _person_identities(
    lead: Lead,
    identities: list[tuple[str, tuple[Fingerprint, ...]]],
    suppressed: bool,
    fingerprinter: Fingerprinter,
) -> list[tuple[str, tuple[Fingerprint, ...]]]:
    """The identities checked in the person's slot: the campaign's identity fields and, when
    suppression lists apply, the lead's email and phone even if the campaign does not dedup
    on them."""
    if not suppressed:
        return identities
    present = dict(identities)
    if "email" not in present and lead.email is not None:
        # Lead.email is the address as delivered; the lists hold the identity form.
        present["email"] = fingerprinter.lookups("email", email_identity(lead.email))
    if "phone" not in present and lead.phone is not None:
        present["phone"] = fingerprinter.lookups("phone", lead.phone)
    return list(present.items())


@dataclass(frozen=True, slots=True)
class ScopePlan:
    """A dedup rule (other than the network's) as one route applies it."""

    reason: str
    prefix: str  # keys.SeenSpace.prefix()
    window_ms: int
    retention_ms: int
    #: Whether the legacy layout (weekly generations) may hold marks of this scope: an
    #: advertiser's slot, which predates the layout; not a distributed campaign's own slot,
    #: which is as new as the layout.
    legacy: bool = True
    #: Fingerprint key id -> (from, until, its ``ScopeFrame``): what every lead under that
    #: key shares from ``from`` to ``until`` (epoch ms), while the window reaches the same
    #: generations (``keys.seen_generations_span``).
    _frames: dict[str, tuple[int, int, ScopeFrame]] = field(
        default_factory=dict, compare=False, repr=False
    )

    def frame(self, key_id: str, now_ms: int) -> ScopeFrame:
        """The scope's heads, newest generation and legacy head for marks under fingerprint
        key ``key_id`` at ``now_ms``: worked out again only when the window has moved on to
        other generations (about twice a generation), one look-up a lead otherwise."""
        held = self._frames.get(key_id)
        if held is not None and held[0] <= now_ms < held[1]:
            return held[2]
        generations, since, until = keys.seen_generations_span(now_ms, self.window_ms)
        legacy_head = keys.legacy_seen_head(self.prefix, key_id) if self.legacy else ""
        frame = ScopeFrame(
            keys.seen_heads(self.prefix, key_id, generations), generations[0], legacy_head
        )
        if len(self._frames) >= 16:  # the configured keys: a handful
            self._frames.clear()
        self._frames[key_id] = (since, until, frame)
        return frame


class ScopeFrame(NamedTuple):
    """``ScopePlan.frame``: a scope's hashes for one fingerprint key and time span."""

    #: ``keys.seen_heads``: the hash names of every generation the window reaches, newest
    #: first, without their bucket.
    heads: tuple[str, ...]
    #: The newest of those generations.
    generation: int
    #: ``DedupCheck.legacy_head`` ("" when the scope has no legacy layout).
    legacy_head: str


@dataclass(frozen=True, slots=True)
class CapPlan:
    reason: str
    key_head: str  # keys.cap_head(): the key without its period
    limit: int
    period: CalendarPeriod | None
    rolling_s: int
    #: Pings may hold room on this cap (``pinged_caps``): its live holds count as used.
    holds: bool = False


@dataclass(frozen=True, slots=True)
class Route:
    """What the plan of every lead of one (campaign, partner, channel) shares: worked out once
    per config, not once per lead (key prefixes, windows and reason codes)."""

    scopes: tuple[ScopePlan, ...]
    network: DedupRule | None
    caps: tuple[CapPlan, ...]
    #: (suppression list id, reason) for every list the campaign's rules name.
    suppress: tuple[tuple[str, str], ...]
    #: The lead index's route text (``index_route``) and its code (``keys.lead_route``); ""
    #: for a route that indexes nothing (a distributed campaign's own slot).
    index_route: str = ""
    index_code: int = 0

    def index_entry(
        self, advertiser: AdvertiserId, lead_id: LeadId, feedback_window_ms: int
    ) -> LeadIndexEntry:
        """``index_entry`` of a lead this route accepts (or sells to ``advertiser``)."""
        return index_entry(
            advertiser, lead_id, self.index_route, self.index_code, feedback_window_ms
        )


class Plan:
    """A configuration compiled for the hot path: built once per ``Config`` and swapped whole
    when the config is replaced (``Intake.replace_config``), so nothing of an old config
    outlives it and no lead is ever planned with half of each.

    It holds the partners by API-key hash and, worked out on the first lead of each
    (campaign, partner, channel), the route every later lead of it shares: dedup key prefixes
    and windows, cap key heads, suppression lists (``Route``). Routes are bounded by the
    configuration itself (campaigns x partners x channels).
    """

    __slots__ = ("__weakref__", "_partners_by_key", "_pinged", "_routes", "config")

    def __init__(self, config: Config) -> None:
        self.config = config
        self._partners_by_key = {
            key_hash: partner
            for partner in config.partners.values()
            for key_hash in partner.api_key_hashes
        }
        self._routes: dict[tuple[str, str, str], Route] = {}
        #: The advertisers with a campaign that takes pings: their advertiser-wide caps, shared
        #: by all their campaigns, may hold room for a ping of any of them.
        self._pinged = pinged_advertisers(config)

    def partner(self, key_hash: str) -> Partner | None:
        """The partner holding the API key whose SHA-256 hex is ``key_hash``."""
        return self._partners_by_key.get(key_hash)

    def route(self, campaign: Campaign, partner: Partner, channel: ChannelId) -> Route:
        """What every lead of (campaign, partner, channel) shares; ``campaign`` and
        ``partner`` are this plan's config's own."""
        at = (campaign.id, partner.id, channel)
        route = self._routes.get(at)
        if route is None:
            pinged = campaign.advertiser in self._pinged
            route = self._routes[at] = _route(campaign, partner, channel, pinged=pinged)
        return route


def pinged_advertisers(config: Config) -> frozenset[AdvertiserId]:
    """The advertisers a ping may hold room on (``Campaign.ping_ttl_s``): those with a
    campaign of their own that takes pings, and the buyers of a distributed one that does
    (a ping holds room on its buyers' caps, advertiser-wide ones among them)."""
    pinged: set[AdvertiserId] = set()
    for c in config.campaigns.values():
        if c.ping_ttl_s <= 0:
            continue
        if c.advertiser is not None:
            pinged.add(c.advertiser)
        if c.distribution is not None:
            pinged.update(b.advertiser for b in c.distribution.buyers)
    return frozenset(pinged)


def pinged_caps(campaign: Campaign, advertiser_pinged: bool) -> Callable[[CapRule], bool]:
    """Which of a campaign's caps pings may hold room on: every cap of a campaign that takes
    pings, and the advertiser-wide caps of any campaign (or buyer) of an advertiser with one
    (``advertiser_pinged``): those keys are the only ones its pings share. Any other cap
    costs what it did before pings (``CapCheck.holds`` empty)."""
    own = campaign.ping_ttl_s > 0
    return lambda cap: own or (advertiser_pinged and cap.subject is CapSubject.ADVERTISER)


def _route(campaign: Campaign, partner: Partner, channel: ChannelId, *, pinged: bool) -> Route:
    """Work out a single-advertiser campaign's route (``Plan.route`` keeps it); ``pinged``:
    its advertiser has a campaign that takes pings."""
    advertiser = campaign.advertiser
    if advertiser is None:
        raise ValueError(f"campaign {campaign.id} is sold to buyers: see decision.sale_plan")
    return route_of(
        campaign.dedup,
        campaign.caps,
        campaign.suppression,
        seen_prefix=lambda scope: keys.SeenSpace(advertiser, scope, campaign.id, channel).prefix(),
        cap_head=lambda cap: keys.cap_head(advertiser, cap, campaign.id, partner.id, channel),
        channel=channel,
        indexed=index_route(campaign, partner, channel),
        holds=pinged_caps(campaign, pinged),
    )


def route_of(
    dedup: Sequence[DedupRule],
    caps: Sequence[CapRule],
    suppression: Sequence[SuppressionRule],
    *,
    seen_prefix: Callable[[DedupScope], str],
    cap_head: Callable[[CapRule], str],
    channel: ChannelId,
    indexed: str = "",
    legacy: bool = True,
    holds: Callable[[CapRule], bool] | None = None,
) -> Route:
    """A route over dedup rules and caps whose keys ``seen_prefix`` and ``cap_head`` form (the
    slot they name: an advertiser's, or a distributed campaign's), for leads of ``channel``.
    ``indexed``: the lead index's route text of the leads it accepts (``index_route``);
    ``legacy``: whether its dedup scopes may hold marks of the legacy layout (an advertiser's
    slot does); ``holds``: which caps pings may hold room on (``pinged_caps``; none without)."""
    scopes: list[ScopePlan] = []
    network: DedupRule | None = None
    for rule in dedup:
        if rule.scope is DedupScope.NETWORK:
            network = rule
            continue
        scopes.append(
            ScopePlan(
                rule.reason,
                seen_prefix(rule.scope),
                rule.window_for(channel) * 1000,
                rule.retention_s * 1000,
                legacy,
            )
        )
    cap_plans = tuple(
        CapPlan(
            cap.reason, cap_head(cap), cap.limit, cap.window.period, cap.window.rolling_s or 0,
            holds is not None and holds(cap),
        )
        for cap in caps
    )  # fmt: skip
    suppress = tuple((list_id, rule.reason) for rule in suppression for list_id in rule.lists)
    code = keys.lead_route(indexed) if indexed else 0
    return Route(tuple(scopes), network, cap_plans, suppress, indexed, code)
