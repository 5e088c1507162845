"""From a validated lead and its campaign to a complete ``DecisionRequest`` (pure).

Everything a store needs is computed here: the fingerprint of every identity under every key
still in use, every dedup key with its window for the lead's channel, every cap's key for the
current calendar period or rolling window, the person's reservations and the delivery record.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import orjson

from gateway.config.model import (
    CalendarPeriod,
    Campaign,
    Config,
    ContactPressure,
    DedupRule,
    DedupScope,
    Partner,
    PressureUnit,
)
from gateway.decision.model import (
    CapCheck,
    DecisionRequest,
    DedupCheck,
    IdempotencyRef,
    LeadIndexEntry,
    PersonReservation,
)
from gateway.decision.windows import calendar_bucket
from gateway.leads.email import email_identity
from gateway.leads.fingerprint import Fingerprinter
from gateway.leads.lead import Lead
from gateway.storage import keys
from gateway.types import ChannelId, Fingerprint, LeadId


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
) -> DecisionRequest:
    """The complete request for one lead. ``plan``: the config's compiled plan, whose routes
    are kept between leads (the intake's); without one the route is worked out for this lead
    alone."""
    now_ms = int(now_s * 1000)
    advertiser = campaign.advertiser
    identities = [
        (kind, fingerprinter.lookups(kind, value)) for kind, value in lead.identities.items()
    ]

    route = plan.route(campaign, partner, channel) if plan else _route(campaign, partner, channel)
    dedup: list[DedupCheck] = []
    marks: dict[Fingerprint, keys.SeenMark] = {}
    for scope in route.scopes:
        generations = keys.seen_generations(now_ms, scope.window_ms)
        for _, fingerprints in identities:
            for n, fp in enumerate(fingerprints):
                mark = marks.get(fp) or marks.setdefault(fp, keys.seen_mark(fp))
                dedup.append(
                    DedupCheck(
                        scope.reason,
                        keys.seen_in(scope.heads(mark.key_id, generations), mark),
                        mark.field,
                        generations[0],
                        scope.window_ms,
                        scope.retention_ms,
                        n == 0,
                        scope.legacy_head(mark.key_id),
                        mark.legacy_bucket,
                    )
                )

    caps: list[CapCheck] = []
    for cap in route.caps:
        if cap.period is not None:
            bucket, end_s = calendar_bucket(cap.period, campaign.timezone, now_s)
            span_ms, rolling = max(1, int((end_s - now_s) * 1000)), False
        else:
            bucket, span_ms, rolling = str(cap.rolling_s), cap.rolling_s * 1000, True
        caps.append(CapCheck(cap.reason, cap.key_head + bucket, cap.limit, rolling, span_ms))

    if lead.ip is not None and campaign.velocity:
        ip_fp = fingerprinter.fingerprint("ip", lead.ip)
        for velocity in campaign.velocity:
            caps.append(
                CapCheck(
                    velocity.reason,
                    keys.ip_velocity(advertiser, velocity.id, ip_fp),
                    velocity.limit,
                    rolling=True,
                    span_ms=velocity.window_s * 1000,
                )
            )

    person: list[PersonReservation] = []
    pressing = pressure if pressure is not None and campaign.contact_pressure else None
    network, suppress = route.network, route.suppress
    if network is not None or pressing is not None or suppress:
        unit = campaign.id if pressing and pressing.per is PressureUnit.CAMPAIGN else advertiser
        for kind, fingerprints in _person_identities(
            lead, identities, bool(suppress), fingerprinter
        ):
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
                        dry_run=lead.test or n > 0 or not counted,
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
    slot = keys.lead_index(advertiser, lead_id)
    idem = None
    # Test mode remembers nothing, not even an Idempotency-Key.
    if idempotency is not None and not lead.test:
        idem = IdempotencyRef(
            claim_key=keys.idempotency_claim(partner.id, idempotency.key_digest),
            answer_key=keys.idempotency_answer(advertiser, partner.id, idempotency.key_digest),
            body_digest=idempotency.body_digest,
            ttl_ms=idempotency.ttl_s * 1000,
            lead_id=lead_id,
        )
    return DecisionRequest(
        lead_id=lead_id,
        now_ms=now_ms,
        dry_run=lead.test,
        dedup=tuple(dedup),
        caps=tuple(caps),
        person=tuple(person),
        stream_key=keys.deliveries(advertiser),
        payload=orjson.dumps(record),
        idempotency=idem,
        slot_anchor=keys.slot_anchor(advertiser),
        index=LeadIndexEntry(
            slot.key,
            slot.routes,
            slot.field,
            slot.id_ms,
            slot.generation_ends_ms,
            route.index_code,
            route.index_route,
            campaign.feedback_window_s * 1000,
        ),
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
    """One identity's check in one scope: the hashes of every generation its window reaches."""
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
class _ScopePlan:
    """A dedup rule (other than the network's) as one route applies it."""

    reason: str
    prefix: str  # keys.SeenSpace.prefix()
    window_ms: int
    retention_ms: int
    #: (fingerprint key id, newest generation, generation after the oldest) -> its
    #: ``keys.seen_heads``: the same for every lead until the window moves on.
    _heads: dict[tuple[str, int, int], tuple[str, ...]] = field(
        default_factory=dict, compare=False, repr=False
    )
    #: Fingerprint key id -> ``keys.legacy_seen_head``.
    _legacy_heads: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    def legacy_head(self, key_id: str) -> str:
        held = self._legacy_heads.get(key_id)
        if held is None:
            if len(self._legacy_heads) >= 16:  # the configured keys: a handful
                self._legacy_heads.clear()
            held = self._legacy_heads[key_id] = keys.legacy_seen_head(self.prefix, key_id)
        return held

    def heads(self, key_id: str, generations: range) -> tuple[str, ...]:
        at = (key_id, generations.start, generations.stop)
        held = self._heads.get(at)
        if held is None:
            if len(self._heads) >= 64:  # a week's ranges and rotating keys: a handful
                self._heads.clear()
            held = self._heads[at] = keys.seen_heads(self.prefix, key_id, generations)
        return held


@dataclass(frozen=True, slots=True)
class _CapPlan:
    reason: str
    key_head: str  # keys.cap_head(): the key without its period
    limit: int
    period: CalendarPeriod | None
    rolling_s: int


@dataclass(frozen=True, slots=True)
class _Route:
    """What the plan of every lead of one (campaign, partner, channel) shares: worked out once
    per config, not once per lead (key prefixes, windows and reason codes)."""

    scopes: tuple[_ScopePlan, ...]
    network: DedupRule | None
    caps: tuple[_CapPlan, ...]
    #: (suppression list id, reason) for every list the campaign's rules name.
    suppress: tuple[tuple[str, str], ...]
    #: The lead index's route text (``LeadIndexEntry.route``) and its code.
    index_route: str
    index_code: int


class Plan:
    """A configuration compiled for the hot path: built once per ``Config`` and swapped whole
    when the config is replaced (``Intake.replace_config``), so nothing of an old config
    outlives it and no lead is ever planned with half of each.

    It holds the partners by API-key hash and, worked out on the first lead of each
    (campaign, partner, channel), the route every later lead of it shares: dedup key prefixes
    and windows, cap key heads, suppression lists (``_Route``). Routes are bounded by the
    configuration itself (campaigns x partners x channels).
    """

    __slots__ = ("__weakref__", "_partners_by_key", "_routes", "config")

    def __init__(self, config: Config) -> None:
        self.config = config
        self._partners_by_key = {
            key_hash: partner
            for partner in config.partners.values()
            for key_hash in partner.api_key_hashes
        }
        self._routes: dict[tuple[str, str, str], _Route] = {}

    def partner(self, key_hash: str) -> Partner | None:
        """The partner holding the API key whose SHA-256 hex is ``key_hash``."""
        return self._partners_by_key.get(key_hash)

    def route(self, campaign: Campaign, partner: Partner, channel: ChannelId) -> _Route:
        """What every lead of (campaign, partner, channel) shares; ``campaign`` and
        ``partner`` are this plan's config's own."""
        at = (campaign.id, partner.id, channel)
        route = self._routes.get(at)
        if route is None:
            route = self._routes[at] = _route(campaign, partner, channel)
        return route


def _route(campaign: Campaign, partner: Partner, channel: ChannelId) -> _Route:
    """Work out a route (``Plan.route`` keeps it)."""
    scopes: list[_ScopePlan] = []
    network: DedupRule | None = None
    for rule in campaign.dedup:
        if rule.scope is DedupScope.NETWORK:
            network = rule
            continue
        space = keys.SeenSpace(campaign.advertiser, rule.scope, campaign.id, channel)
        scopes.append(
            _ScopePlan(
                rule.reason,
                space.prefix(),
                rule.window_for(channel) * 1000,
                rule.retention_s * 1000,
            )
        )
    caps = tuple(
        _CapPlan(
            cap.reason,
            keys.cap_head(campaign.advertiser, cap, campaign.id, partner.id, channel),
            cap.limit,
            cap.window.period,
            cap.window.rolling_s or 0,
        )
        for cap in campaign.caps
    )
    suppress = tuple(
        (list_id, rule.reason) for rule in campaign.suppression for list_id in rule.lists
    )
    index_route = (
        f"{partner.id}|{campaign.id}|{channel}|{campaign.return_window_s * 1000}|"
        f"{campaign.feedback_window_s * 1000}"
    )
    return _Route(tuple(scopes), network, caps, suppress, index_route, keys.lead_route(index_route))
