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
from gateway.decision.distribution import (
    BuyerTurns,
    EndpointView,
    Refusal,
    in_process_refusal,
    unsold,
)
from gateway.decision.model import (
    CampaignReservation,
    DecisionRequest,
    Hold,
    HoldMode,
    IdempotencyRef,
    PersonReservation,
)
from gateway.decision.ping import PingRecord, commit_hold, take_hold
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

    @property
    def buyers(self) -> tuple[Buyer, ...]:
        """Every buyer of the campaign, in its list's order."""
        distribution = self._campaign.distribution
        return distribution.buyers if distribution is not None else ()

    def request(self, buyer: Buyer, lead_id: LeadId, hold: Hold | None = None) -> DecisionRequest:
        """``hold``: the lead's hold at this buyer (``SaleRequest.hold_for``): a ping's
        (TAKE: decided as a test lead, a place held if the buyer would buy, nothing queued or
        indexed) or a post's naming a ping (COMMIT)."""
        campaign, now_ms, advertiser = self._campaign, self._now_ms, buyer.advertiser
        route = self._route.buyers[advertiser]
        payload, index = b"", None  # a ping queues nothing and indexes nothing
        if hold is None or hold.mode is not HoldMode.TAKE:
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
            payload = orjson.dumps(record)
            index = route.index_entry(advertiser, lead_id, campaign.feedback_window_s * 1000)
        return DecisionRequest(
            lead_id=lead_id,
            now_ms=now_ms,
            dry_run=self._lead.test,
            dedup=dedup_checks(route.scopes, self._identities, now_ms),
            caps=tuple(cap_checks(route.caps, campaign.timezone, now_ms / 1000)),
            person=(),
            stream_key=keys.deliveries(advertiser),
            payload=payload,
            slot_anchor=keys.slot_anchor(advertiser),
            index=index,
            hold=hold,
        )


@dataclass(frozen=True, slots=True)
class SalePing:
    """A ping to a distributed campaign (TAKE) or a post naming one (COMMIT): what the
    waterfall does with holds (docs/decision.md, "Ping and post")."""

    ping_id: str
    mode: HoldMode
    #: TAKE: the record each buyer that would buy keeps (``keys.ping_record`` in its slot).
    record: PingRecord | None = None
    #: COMMIT: the buyers whose slot held a record of the ping when the post read them
    #: (whatever its state): their requests carry the COMMIT, which says what became of it.
    found: tuple[AdvertiserId, ...] = ()
    #: COMMIT: those whose hold was live then: offered the post first, and, if the post
    #: does not reach them, their holds are given back at its close.
    held: tuple[AdvertiserId, ...] = ()
    #: COMMIT: what the records said (``expired``, ``used``, ``unknown``), for a post no
    #: buyer's script told anything.
    status: str = ""


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
    #: A ping, or a post naming one; None: a plain lead.
    ping: SalePing | None = None
    #: Not empty: a post naming a ping, refused in the gateway with these reasons (its
    #: campaign's rules or state, or no buyer may be offered it). Offered to no buyer, opened
    #: nowhere (no ``person``): it reaches the store only to give back its ping's holds and
    #: record its answer under its Idempotency-Key (``decision.waterfall``).
    rejected: tuple[str, ...] = ()

    def hold_for(self, buyer: AdvertiserId) -> Hold | None:
        """This lead's hold at ``buyer``: a ping takes one at every buyer it is offered to; a
        post commits the one a buyer's slot has a record of; None: a plain offer."""
        ping = self.ping
        if ping is None:
            return None
        if ping.mode is HoldMode.TAKE:
            assert ping.record is not None, "a ping carries its record"
            return take_hold(buyer, ping.ping_id, ping.record, now_ms=self.now_ms)
        return commit_hold(buyer, ping.ping_id) if buyer in ping.found else None

    def naming(self, ping: SalePing) -> SaleRequest:
        """This post, naming ``ping`` (COMMIT, as its records were read): offered first to
        the buyers holding the ping (in this lead's order), so the place the ping reserved is
        the one the post takes; its campaign reservation commits the campaign's hold."""
        held = [b for b in self.offers if b.advertiser in ping.held]
        offers = (*held, *(b for b in self.offers if b.advertiser not in ping.held))
        reservation = self.reservation
        if reservation is not None:
            hold = Hold(ping.ping_id, "", HoldMode.COMMIT)
            reservation = dataclasses.replace(reservation, hold=hold)
        return dataclasses.replace(self, offers=offers, reservation=reservation, ping=ping)

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
    a ping holds. A campaign that takes pings counts (and its pings take) holds on every cap
    of its own and of its buyers'."""
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
        holds=pinged_caps(campaign, False),
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
    ping: SalePing | None = None,
    naming: bool = False,
    rejected: tuple[str, ...] = (),
) -> SaleRequest | NoOffer:
    """The complete sale request for one lead of a distributed campaign, or ``NoOffer``.
    ``ping``: a ping (TAKE, of a campaign with ``ping_ttl_s``; no Idempotency-Key): the
    waterfall finds the buyers that would buy it now and holds a place at each, the campaign
    slot one on its caps; the person's slot is only checked. A post naming a ping is built
    plain, then given its ``SaleRequest.naming`` once its records are read.

    ``naming``: a post naming a ping, never ``NoOffer``: the places its ping holds must be
    given back, so a post no buyer may be offered is built whole, offered to none and
    refused (``SaleRequest.rejected``) with ``unsold``'s reasons. ``rejected``: such a post
    refused already (the campaign's rules or state), with these reasons: no buyer is judged."""
    distribution = _distribution(campaign)
    taking = ping is not None and ping.mode is HoldMode.TAKE
    if taking and (campaign.ping_ttl_s <= 0 or idempotency is not None):
        raise ValueError(f"campaign {campaign.id} takes no pings, nor a ping an Idempotency-Key")
    if rejected and not naming:
        raise ValueError("only a post naming a ping is built to be refused")
    disabled = endpoints.disabled_now()
    passed: list[tuple[AdvertiserId, Refusal]] = []
    if rejected:
        eligible: tuple[Buyer, ...] | list[Buyer] = []
    elif sales.plain(campaign) and not disabled:
        eligible = distribution.buyers
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
            if not naming:
                return NoOffer(tuple(passed))
            _, rejected = unsold(refusal for _, refusal in passed)
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
        hold = None
        if taking and ping is not None and ping.record is not None:
            hold = Hold(ping.ping_id, "", HoldMode.TAKE, ping.record.expires_ms)
        reservation = CampaignReservation(
            key=keys.campaign_reservation(campaign.id, lead_id),
            lead_id=lead_id,
            now_ms=now_ms,
            dry_run=lead.test,
            dedup=dedup,
            caps=tuple(caps),
            ttl_ms=idem.ttl_ms if idem is not None else lease_ms,
            hold=hold,
        )
    pressing = pressure if pressure is not None and campaign.contact_pressure else None
    person: tuple[PersonReservation, ...] = ()
    if not rejected:  # a post refused in the gateway takes nothing of the person's
        # The campaign is the unit of contact pressure: its buyers are not known yet. ``c:``
        # keeps it apart from an advertiser (or campaign) id of the same name.
        person = person_reservations(
            lead, identities, route.campaign, pressing, f"c:{campaign.id}", lead_id, now_ms,
            channel, fingerprinter, check_only=taking,
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
        ping=ping if taking else None,
        rejected=rejected,
    )


def _distribution(campaign: Campaign) -> Distribution:
    if campaign.distribution is None:
        raise ValueError(f"campaign {campaign.id} has one advertiser: see decision.plan")
    return campaign.distribution
