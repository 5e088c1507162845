"""From a validated lead of a campaign sold to buyers to a complete ``SaleRequest`` (pure).

Worked out here, before any store work: which buyers may be offered the lead (their filters,
opening hours and endpoints, ``decision.distribution``) and in which order (the campaign's
``BuyerTurns``); the campaign's own dedup and caps in its slot (a ``CampaignReservation``);
the person's reservations (network dedup, contact pressure counted with the campaign as the
unit, suppression lists); the Idempotency-Key's claim, lease and answer. Each buyer's own
decision request (its dedup and caps in its advertiser's slot, the delivery record with its
price, the lead index feedback reads) is built only when the waterfall reaches that buyer
(``BuyerRequests``): a lead sold to its first buyer builds one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping
from dataclasses import dataclass

import orjson

from gateway.config.model import Buyer, Campaign, Config, ContactPressure, Distribution, Partner
from gateway.decision.distribution import BuyerTurns, EndpointView, Refusal, in_process_refusal
from gateway.decision.model import (
    CampaignReservation,
    DecisionRequest,
    IdempotencyRef,
    PersonReservation,
)
from gateway.decision.plan import (
    Idempotency,
    Identities,
    Route,
    cap_checks,
    dedup_checks,
    index_route,
    lookups,
    person_reservations,
    pinged_advertisers,
    pinged_caps,
    route_of,
    velocity_check,
)
from gateway.leads.fingerprint import Fingerprinter
from gateway.leads.lead import Lead
from gateway.storage import keys
from gateway.storage.base import LeadProbe
from gateway.types import AdvertiserId, CampaignId, ChannelId, LeadId


@dataclass(frozen=True, slots=True)
class SaleRoute:
    """What every lead of one (distributed campaign, partner, channel) shares."""

    #: The campaign's own dedup and caps, keyed in its slot; its network dedup and
    #: suppression lists (the person's slot).
    campaign: Route
    #: Each buyer's dedup and caps, keyed in its advertiser's slot.
    buyers: Mapping[AdvertiserId, Route]


class BuyerRequests:
    """Builds a buyer's decision request for one lead, when the waterfall reaches the buyer:
    ``decide.lua`` over the buyer's keys, without an Idempotency-Key or a forced outcome,
    is the whole sale (check its dedup and caps; if they pass, mark, count, queue the lead to
    the buyer's CRM and index it for the buyer's feedback, all or nothing)."""

    __slots__ = ("_campaign", "_channel", "_identities", "_lead", "_now_ms", "_partner", "_route")

    def __init__(
        self,
        campaign: Campaign,
        partner: Partner,
        channel: ChannelId,
        lead: Lead,
        identities: Identities,
        route: SaleRoute,
        now_ms: int,
    ) -> None:
        self._campaign = campaign
        self._partner = partner
        self._channel = channel
        self._lead = lead
        self._identities = identities
        self._route = route
        self._now_ms = now_ms

    def request(self, buyer: Buyer, lead_id: LeadId) -> DecisionRequest:
        campaign, now_ms, advertiser = self._campaign, self._now_ms, buyer.advertiser
        route = self._route.buyers[advertiser]
        record = {
            "lead_id": lead_id,
            "campaign": campaign.id,
            "advertiser": advertiser,
            "buyer": advertiser,
            "price": buyer.price,
            "partner": self._partner.id,
            "channel": self._channel,
            "ref": self._lead.ref,
            "accepted_at_ms": now_ms,
            "lead": self._lead.to_payload(),
        }
        return DecisionRequest(
            lead_id=lead_id,
            now_ms=now_ms,
            dry_run=self._lead.test,
            dedup=dedup_checks(route.scopes, self._identities, now_ms),
            caps=tuple(cap_checks(route.caps, campaign.timezone, now_ms / 1000)),
            person=(),
            stream_key=keys.deliveries(advertiser),
            payload=orjson.dumps(record),
            slot_anchor=keys.slot_anchor(advertiser),
            index=route.index_entry(advertiser, lead_id, campaign.feedback_window_s * 1000),
        )


@dataclass(frozen=True, slots=True)
class SaleRequest:
    """Everything the waterfall (``decision.waterfall``) needs for one lead."""

    lead_id: LeadId
    now_ms: int
    dry_run: bool
    campaign: CampaignId
    #: 1 when exclusive.
    max_buyers: int
    #: The buyers the lead may be offered to, in this lead's order.
    offers: tuple[Buyer, ...]
    #: The buyers not offered it, and why (filtered, closed, disabled).
    passed: tuple[tuple[AdvertiserId, Refusal], ...]
    #: Every buyer of the campaign: where a retry looks for sales of its lead id.
    buyers: tuple[AdvertiserId, ...]
    person: tuple[PersonReservation, ...]
    reservation: CampaignReservation | None
    idempotency: IdempotencyRef | None
    lease_key: str
    lease_ms: int
    anchor: str
    requests: BuyerRequests

    def rebind(self, lead_id: LeadId) -> SaleRequest:
        """This request under the lead id an earlier request with its Idempotency-Key claimed
        (it crashed): the retry finds that attempt's reservations and sales as its own."""
        reservation = self.reservation
        if reservation is not None:
            reservation = dataclasses.replace(
                reservation, lead_id=lead_id, key=keys.campaign_reservation(self.campaign, lead_id)
            )
        return dataclasses.replace(
            self,
            lead_id=lead_id,
            person=tuple(dataclasses.replace(r, lead_id=lead_id) for r in self.person),
            reservation=reservation,
        )

    def probes(self) -> tuple[LeadProbe, ...]:
        """Where every buyer indexed a sale of this lead id (written with each sale): the
        packed lead index, and the previous layout's key (read only for a lead id older than
        the layout: docs/decision.md, "Why a crash cannot sell wrongly")."""
        return tuple(
            LeadProbe(keys.lead_index(b, self.lead_id), keys.legacy_lead_index(b, self.lead_id))
            for b in self.buyers
        )


@dataclass(frozen=True, slots=True)
class NoOffer:
    """A lead no buyer may be offered (every one filtered, closed or disabled): decided without
    any store work, like a lead the rules reject."""

    passed: tuple[tuple[AdvertiserId, Refusal], ...]


class SalePlan:
    """The distributed campaigns of one configuration, compiled: the sale routes, kept per
    (campaign, partner, channel) like ``Plan``'s, and each campaign's ``BuyerTurns`` in this
    process (a reload starts the turns again)."""

    __slots__ = ("_buyers", "_pinged", "_plain", "_routes", "_turns", "config")

    def __init__(self, config: Config) -> None:
        self.config = config
        self._routes: dict[tuple[str, str, str], SaleRoute] = {}
        #: Buyers whose advertiser-wide caps pings of their own campaigns may hold room on.
        self._pinged = pinged_advertisers(config)
        self._turns = {
            c.id: BuyerTurns(c.distribution)
            for c in config.campaigns.values()
            if c.distribution is not None
        }
        #: The campaigns whose buyers have neither hours nor filters: with no endpoint
        #: disabled, every buyer may be offered every lead.
        self._plain = {
            c.id
            for c in config.campaigns.values()
            if c.distribution is not None
            and all(b.hours is None and b.filter is None for b in c.distribution.buyers)
        }

        self._buyers = {
            c.id: tuple(b.advertiser for b in c.distribution.buyers)
            for c in config.campaigns.values()
            if c.distribution is not None
        }

    def plain(self, campaign: Campaign) -> bool:
        return campaign.id in self._plain

    def buyers(self, campaign: Campaign) -> tuple[AdvertiserId, ...]:
        """Every buyer of ``campaign``, in its list's order."""
        return self._buyers[campaign.id]

    def route(self, campaign: Campaign, partner: Partner, channel: ChannelId) -> SaleRoute:
        at = (campaign.id, partner.id, channel)
        route = self._routes.get(at)
        if route is None:
            route = self._routes[at] = sale_route(campaign, partner, channel, self._pinged)
        return route

    def turns(self, campaign: Campaign) -> BuyerTurns:
        return self._turns[campaign.id]


def sale_route(
    campaign: Campaign,
    partner: Partner,
    channel: ChannelId,
    pinged: Collection[AdvertiserId] = frozenset(),
) -> SaleRoute:
    """Work out a distributed campaign's route (``SalePlan.route`` keeps it). ``pinged``: the
    advertisers with a campaign of their own that takes pings (``plan.pinged_advertisers``):
    a sale to one counts the live holds on its advertiser-wide caps, so it never takes room
    a ping holds. The campaign's own pings are not taken yet (config refuses them)."""
    distribution = _distribution(campaign)
    own = route_of(
        campaign.dedup,
        campaign.caps,
        campaign.suppression,
        seen_prefix=lambda scope: keys.campaign_seen_prefix(campaign.id, scope, channel),
        cap_head=lambda cap: keys.campaign_cap_head(campaign.id, cap, partner.id, channel),
        channel=channel,
        # The campaign's slot is as new as the dedup layout: no legacy mark to read there.
        legacy=False,
    )
    buyers = {
        b.advertiser: _buyer_route(campaign, b, partner, channel, b.advertiser in pinged)
        for b in distribution.buyers
    }
    return SaleRoute(own, buyers)


def _buyer_route(
    campaign: Campaign, buyer: Buyer, partner: Partner, channel: ChannelId, pinged: bool
) -> Route:
    """A buyer's dedup and caps, keyed exactly as its advertiser's own campaign's would be
    (the distributed campaign's id in campaign-scoped keys), and its sales' lead index. Its
    marks live in the advertiser's slot, where the legacy layout may still hold some.
    ``pinged``: the advertiser's pings may hold room on its advertiser-wide caps."""
    advertiser = buyer.advertiser
    return route_of(
        buyer.dedup,
        buyer.caps,
        (),
        seen_prefix=lambda scope: keys.SeenSpace(advertiser, scope, campaign.id, channel).prefix(),
        cap_head=lambda cap: keys.cap_head(advertiser, cap, campaign.id, partner.id, channel),
        channel=channel,
        indexed=index_route(campaign, partner, channel),
        holds=pinged_caps(campaign, pinged),
    )


def build_sale(
    *,
    lead: Lead,
    lead_id: LeadId,
    campaign: Campaign,
    partner: Partner,
    channel: ChannelId,
    pressure: ContactPressure | None,
    fingerprinter: Fingerprinter,
    now_s: float,
    lease_s: int,
    sales: SalePlan,
    endpoints: EndpointView,
    idempotency: Idempotency | None = None,
) -> SaleRequest | NoOffer:
    """The complete sale request for one lead of a distributed campaign, or ``NoOffer``."""
    distribution = _distribution(campaign)
    disabled = endpoints.disabled_now()
    passed: list[tuple[AdvertiserId, Refusal]] = []
    if sales.plain(campaign) and not disabled:
        eligible: tuple[Buyer, ...] | list[Buyer] = distribution.buyers
    else:
        eligible = []
        for buyer in distribution.buyers:
            refusal = in_process_refusal(
                buyer, lead, now_s, campaign.timezone, channel=channel, partner=partner.id,
                disabled=disabled,
            )  # fmt: skip
            if refusal is None:
                eligible.append(buyer)
            else:
                passed.append((buyer.advertiser, refusal))
        if not eligible:
            return NoOffer(tuple(passed))
    offers = tuple(sales.turns(campaign).order(eligible))

    now_ms = int(now_s * 1000)
    identities = lookups(lead, fingerprinter)
    route = sales.route(campaign, partner, channel)
    lease_ms = lease_s * 1000
    idem, lease_key = None, ""
    if idempotency is not None and not lead.test:
        lease_key = keys.sale_lease(partner.id, idempotency.key_digest)
        idem = IdempotencyRef(
            claim_key=keys.idempotency_claim(partner.id, idempotency.key_digest),
            answer_key=keys.campaign_answer(campaign.id, partner.id, idempotency.key_digest),
            body_digest=idempotency.body_digest,
            ttl_ms=idempotency.ttl_s * 1000,
            lead_id=lead_id,
        )
    own = route.campaign
    caps = cap_checks(own.caps, campaign.timezone, now_s) if own.caps else []
    if lead.ip is not None and campaign.velocity:
        ip_fp = fingerprinter.fingerprint("ip", lead.ip)
        caps += [
            velocity_check(v, keys.campaign_ip_velocity(campaign.id, v.id, ip_fp))
            for v in campaign.velocity
        ]
    dedup = dedup_checks(own.scopes, identities, now_ms) if own.scopes else ()
    reservation = None
    if dedup or caps:
        reservation = CampaignReservation(
            key=keys.campaign_reservation(campaign.id, lead_id),
            lead_id=lead_id,
            now_ms=now_ms,
            dry_run=lead.test,
            dedup=dedup,
            caps=tuple(caps),
            ttl_ms=idem.ttl_ms if idem is not None else lease_ms,
        )
    pressing = pressure if pressure is not None and campaign.contact_pressure else None
    # The campaign is the unit of contact pressure: its buyers are not known yet. ``c:``
    # keeps it apart from an advertiser (or campaign) id of the same name.
    person = person_reservations(
        lead, identities, route.campaign, pressing, f"c:{campaign.id}", lead_id, now_ms,
        channel, fingerprinter,
    )  # fmt: skip
    return SaleRequest(
        lead_id=lead_id,
        now_ms=now_ms,
        dry_run=lead.test,
        campaign=campaign.id,
        max_buyers=distribution.max_buyers,
        offers=offers,
        passed=tuple(passed),
        buyers=sales.buyers(campaign),
        person=person,
        reservation=reservation,
        idempotency=idem,
        lease_key=lease_key,
        lease_ms=lease_ms,
        anchor=keys.campaign_anchor(campaign.id),
        requests=BuyerRequests(campaign, partner, channel, lead, identities, route, now_ms),
    )


def _distribution(campaign: Campaign) -> Distribution:
    if campaign.distribution is None:
        raise ValueError(f"campaign {campaign.id} has one advertiser: see decision.plan")
    return campaign.distribution
