"""The configuration as plain frozen data, built once at start (and on reload) by ``config.load``.

Every duration is in whole seconds (``*_s``); every instant is epoch seconds (``*_at``).
Nothing here does I/O; nothing reads the environment after ``load``.

YAML shape (see ``examples/leadgate.yaml`` for one that uses every feature)::

    server:        {max_body_bytes: 65536, batch_max_leads: 1000, idempotency_ttl_s: 86400}
    channels:      [{id: email, name: Emailing}, …]
    advertisers:   [{id: acme, name: ACME Energie}, …]
    contact_pressure: {limit: 3, per: advertiser, window: 30d}     # optional, network-wide
    campaigns:
      - id: acme-always-on
        advertiser: acme
        kind: always_on | peak            # peak needs start and end (ISO 8601 with offset)
        start: 2026-11-20T00:00:00+01:00
        end:   2026-11-30T23:59:59+01:00
        timezone: Europe/Paris            # calendar caps count in this zone
        identity: [email, phone]          # identity fields, a match on any is a duplicate
        required: [email, first_name]     # fields a lead must carry (422 otherwise)
        phone_region: FR                  # default region for numbers without +CC
        contact_pressure: true            # whether the network-wide pressure cap applies
        cpl: 12.50                        # cost per lead, in the advertiser's currency
        dedup:
          - {scope: advertiser, window: 30d, channels: {cashback: 7d}}
          - {scope: campaign, window: 90d}
        caps:
          - {subject: campaign, window: day, limit: 200}
          - {subject: partner, window: 1h, limit: 50}     # a duration = rolling window
      - id: acme-shared                   # distribution (docs/distribution.md): instead of
        buyers:                           # one advertiser, buyers offered in turn
          - {advertiser: acme, price: 9.0, caps: [{subject: buyer, window: day, limit: 50}]}
          - {advertiser: globex, price: 7.5, hours: {mon-fri: ["09:00-18:00"]}}
        distribution: shared              # exclusive (one buyer, the default) or shared
        max_buyers: 2                     # shared: sold to up to this many
        order: price                      # priority | weighted | round_robin | price
        payout: 4.0                       # paid to the publisher per lead sold
    partners:
      - id: p-coreg
        name: CoregNet
        api_keys: [sha256:<64 hex>]       # hashes only; `leadgate hash-key` makes them
        channels: [coreg]                 # the first is the default for leads that name none
        campaigns: [acme-always-on]
        rate_limit: {per_s: 100, burst: 200}
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from ipaddress import IPv4Network, IPv6Network
from zoneinfo import ZoneInfo

from gateway.config.delivery import DeliverySettings, Endpoint
from gateway.leads.lead import IDENTITY_FIELDS
from gateway.rules.model import RuleSet
from gateway.types import AdvertiserId, CampaignId, ChannelId, PartnerId

IPNetwork = IPv4Network | IPv6Network


class CampaignKind(enum.StrEnum):
    ALWAYS_ON = "always_on"
    PEAK = "peak"


class DedupScope(enum.StrEnum):
    """Where a fingerprint counts as already seen."""

    CAMPAIGN = "campaign"  # this campaign only
    ADVERTISER = "advertiser"  # any campaign of the same advertiser (always-on vs peak)
    CHANNEL = "channel"  # the same advertiser, through the same channel
    NETWORK = "network"  # any advertiser of the network (lives in the person's slot)


class CapSubject(enum.StrEnum):
    """What a cap counts accepted leads of."""

    CAMPAIGN = "campaign"
    PARTNER = "partner"  # partner x campaign
    CHANNEL = "channel"  # channel x campaign
    ADVERTISER = "advertiser"  # all campaigns of the advertiser


class CalendarPeriod(enum.StrEnum):
    HOUR = "hour"
    DAY = "day"
    WEEK = "week"  # ISO weeks, Monday 00:00 in the campaign's time zone
    MONTH = "month"


class PressureUnit(enum.StrEnum):
    ADVERTISER = "advertiser"
    CAMPAIGN = "campaign"


@dataclass(frozen=True, slots=True)
class CapWindow:
    """Either a calendar period in the campaign's time zone or a rolling duration; never both."""

    period: CalendarPeriod | None = None
    rolling_s: int | None = None

    @property
    def label(self) -> str:
        """The window's name in reason codes: ``hour``/``day``/``week``/``month``/``rolling``."""
        return self.period.value if self.period is not None else "rolling"


@dataclass(frozen=True, slots=True)
class CapRule:
    subject: CapSubject
    window: CapWindow
    limit: int

    @property
    def reason(self) -> str:
        """Stable reason code, e.g. ``cap.campaign.day`` or ``cap.partner.rolling``."""
        return f"cap.{self.subject.value}.{self.window.label}"


@dataclass(frozen=True, slots=True)
class DedupRule:
    scope: DedupScope
    window_s: int
    #: The window for leads arriving through these channels, instead of ``window_s``.
    channel_windows_s: Mapping[ChannelId, int] = field(default_factory=dict)

    def window_for(self, channel: ChannelId) -> int:
        """How far back a lead arriving through ``channel`` is compared, in seconds."""
        return self.channel_windows_s.get(channel, self.window_s)

    @property
    def retention_s(self) -> int:
        """How long a remembered fingerprint must be kept: the longest window of the rule."""
        return max([self.window_s, *self.channel_windows_s.values()])

    @property
    def reason(self) -> str:
        return f"duplicate.{self.scope.value}"


@dataclass(frozen=True, slots=True)
class ContactPressure:
    """At most ``limit`` advertisers (or campaigns) may receive one person per rolling window."""

    limit: int
    window_s: int
    per: PressureUnit = PressureUnit.ADVERTISER


@dataclass(frozen=True, slots=True)
class SuppressionList:
    """A named list of people never to be sent (opt-outs, customers, litigators). Only keyed
    fingerprints of its emails and phones are stored, loaded by ``leadgate suppress load``.
    ``network: true`` applies it to every campaign; otherwise campaigns name it in a rule."""

    id: str
    name: str
    network: bool = False
    #: The code partners see. Neutral by default: telling a publisher that a person is on a
    #: litigators' list would itself be a disclosure.
    reason: str = "suppressed"


@dataclass(frozen=True, slots=True)
class SuppressionRule:
    """A rule-pack rule decided in the store: refused when any identity is on one of ``lists``."""

    id: str
    reason: str
    message: str
    lists: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class VelocityRule:
    """A rule-pack rule decided in the store, with the caps: at most ``limit`` leads accepted
    from one IP address (by its keyed fingerprint) per rolling ``window_s``, per advertiser."""

    id: str
    reason: str
    message: str
    limit: int
    window_s: int


@dataclass(frozen=True, slots=True)
class Channel:
    id: ChannelId
    name: str


@dataclass(frozen=True, slots=True)
class Advertiser:
    id: AdvertiserId
    name: str
    #: Where its accepted leads are delivered; None: they stay queued, nothing is sent.
    endpoint: Endpoint | None = None
    #: SHA-256 hex digests of the advertiser's feedback API keys (``POST /v1/feedback``);
    #: never a partner's. Empty: the advertiser sends no feedback.
    api_key_hashes: tuple[str, ...] = ()


class SaleMode(enum.StrEnum):
    """How a distributed campaign's lead is sold."""

    EXCLUSIVE = "exclusive"  # to one buyer
    SHARED = "shared"  # to up to ``max_buyers`` buyers, never twice to one


class BuyerOrder(enum.StrEnum):
    """The order buyers are offered a lead in (docs/distribution.md)."""

    PRIORITY = "priority"  # lowest priority number first; equal priorities take turns
    WEIGHTED = "weighted"  # smooth weighted round robin: first offers in proportion to weight
    ROUND_ROBIN = "round_robin"  # each lead starts with the next buyer
    PRICE = "price"  # highest price first; equal prices take turns


@dataclass(frozen=True, slots=True)
class OpeningHours:
    """When a buyer takes leads, in its campaign's time zone: per ISO weekday (``weekly[0]``
    is Monday) the ranges ``[start, end)`` in seconds since local midnight; closed all day on
    ``holidays``. Wall-clock time: on a daylight-saving day a range means the same clock
    times (a range inside the skipped hour is never open that day; one inside the repeated
    hour is open both times)."""

    weekly: tuple[tuple[tuple[int, int], ...], ...]
    holidays: frozenset[date] = frozenset()

    def open_at(self, now_s: float, zone: ZoneInfo) -> bool:
        local = datetime.fromtimestamp(now_s, zone)
        if local.date() in self.holidays:
            return False
        second = local.hour * 3600 + local.minute * 60 + local.second
        return any(start <= second < end for start, end in self.weekly[local.weekday()])


@dataclass(frozen=True, slots=True)
class Buyer:
    """An advertiser buying a distributed campaign's leads. Its keys, delivery, feedback and
    metrics are its advertiser's (an advertiser is a campaign's buyer at most once, so the
    advertiser id names the buyer)."""

    advertiser: AdvertiserId
    #: Buyer-level dedup (scopes campaign, advertiser, channel in the advertiser's slot): a
    #: person it already has is offered to the next buyer.
    dedup: tuple[DedupRule, ...] = ()
    #: Caps on this buyer's purchases: subject ``advertiser`` (written ``buyer`` too) counts
    #: every campaign selling to it, ``campaign`` this campaign's sales to it.
    caps: tuple[CapRule, ...] = ()
    #: Rules a lead must pass for this buyer (``None``: every lead).
    filter: RuleSet | None = None
    #: ``None``: always open.
    hours: OpeningHours | None = None
    #: What the buyer pays per lead (``None``: not priced).
    price: float | None = None
    weight: int = 1
    #: Lower is offered first (default: the buyer's position in the list, from 1).
    priority: int = 1


@dataclass(frozen=True, slots=True)
class Distribution:
    """How a campaign with buyers sells its leads (docs/distribution.md)."""

    buyers: tuple[Buyer, ...]
    mode: SaleMode = SaleMode.EXCLUSIVE
    #: Most buyers one lead is sold to: 1 when exclusive.
    max_buyers: int = 1
    order: BuyerOrder = BuyerOrder.PRIORITY
    #: Answers name the buyers (``sold_to``); publishers never learn them otherwise.
    show_buyers: bool = False


@dataclass(frozen=True, slots=True)
class Campaign:
    id: CampaignId
    #: The advertiser buying every lead; ``None`` for a distributed campaign (``distribution``
    #: names its buyers instead).
    advertiser: AdvertiserId | None
    name: str
    kind: CampaignKind
    timezone: ZoneInfo
    identity_fields: tuple[str, ...] = IDENTITY_FIELDS
    required_fields: tuple[str, ...] = ("email",)
    phone_region: str = "FR"
    dedup: tuple[DedupRule, ...] = ()
    caps: tuple[CapRule, ...] = ()
    contact_pressure: bool = True
    start_at: float | None = None  # peak campaigns only
    end_at: float | None = None
    cpl: float | None = None
    #: Rule-pack rules that need the store (decided atomically with dedup and caps); the pure
    #: rules are in ``rules``. Network-wide suppression lists are added here at load.
    suppression: tuple[SuppressionRule, ...] = ()
    velocity: tuple[VelocityRule, ...] = ()
    #: The pure rules of the campaign's rule packs, compiled (``None``: no rule pack).
    rules: RuleSet | None = None
    #: Leads scoring below this are rejected (``score.below_minimum``); needs scoring rules.
    min_score: float | None = None
    #: How long after acceptance the advertiser may return a lead (feedback ``returned``).
    return_window_s: int = 30 * 86_400
    #: How long after acceptance any feedback is taken (conversions come late); at least the
    #: return window. The lead-id index that feedback needs expires with it.
    feedback_window_s: int = 90 * 86_400
    #: The buyers and how a lead is sold to them; ``None``: every lead goes to ``advertiser``.
    distribution: Distribution | None = None
    #: What the publisher is paid per lead sold (accepted), for answers and reports.
    payout: float | None = None
    #: Seconds an accepted ping holds the cap room its post will need (0: the campaign takes
    #: no pings). Single-advertiser campaigns only: a ping to buyers would reserve nothing yet.
    ping_ttl_s: int = 0

    def is_active(self, now_s: float) -> bool:
        if self.start_at is not None and now_s < self.start_at:
            return False
        return not (self.end_at is not None and now_s >= self.end_at)


@dataclass(frozen=True, slots=True)
class RateLimit:
    per_s: float
    burst: int


@dataclass(frozen=True, slots=True)
class Partner:
    id: PartnerId
    name: str
    #: Lower-case hex SHA-256 digests of the partner's API keys (never the keys themselves).
    api_key_hashes: tuple[str, ...]
    channels: tuple[ChannelId, ...]
    campaigns: tuple[CampaignId, ...]
    rate_limit: RateLimit | None = None
    #: Pre-ping checks and pings have limits of their own (``server.default_check_rate_limit``
    #: and ``default_ping_rate_limit`` when not set here): they are cheaper than leads, and
    #: a partner probing hard must not eat its lead budget, nor the other way round.
    check_rate_limit: RateLimit | None = None
    ping_rate_limit: RateLimit | None = None

    @property
    def default_channel(self) -> ChannelId:
        return self.channels[0]


@dataclass(frozen=True, slots=True)
class ServerSettings:
    """The ``server:`` section: HTTP limits, connection deadlines and default rate limits
    (docs/configuration.md). Reloaded with the rest of the file, except where a field says."""

    max_body_bytes: int = 64 * 1024
    batch_max_leads: int = 1000
    #: Larger bound for the batch endpoint's body.
    batch_max_body_bytes: int = 4 * 1024 * 1024
    idempotency_ttl_s: int = 24 * 3600
    #: A request's line and headers must arrive within this many seconds of the connection
    #: opening, or of the first byte of a later request on a kept-alive connection.
    head_timeout_s: int = 10
    #: A request's body must arrive within this many seconds once the handler reads it.
    body_timeout_s: int = 30
    #: An idle kept-alive connection is closed after this many seconds (above the idle
    #: timeout of the load balancers in front, so they never reuse a connection being closed).
    keepalive_timeout_s: int = 75
    #: Open connections per process on the public listener; beyond, new ones are refused
    #: with 503. None: derived at start from the open-file limit (``app.limits``).
    max_connections: int | None = None
    #: The rate limit of partners that do not configure their own (per process).
    default_rate_limit: RateLimit = RateLimit(per_s=100.0, burst=1000)
    #: Pre-ping checks and pings of partners that do not configure their own (per process).
    default_check_rate_limit: RateLimit = RateLimit(per_s=100.0, burst=1000)
    default_ping_rate_limit: RateLimit = RateLimit(per_s=100.0, burst=1000)
    #: Pings a partner may send per post that follows one, over the last hour (per process):
    #: beyond, its pings are answered 429 until its posts catch up (docs/api.md, "Ping/post").
    max_pings_per_post: int = 100
    #: Failed authentications allowed per client address (per process), brute force bound.
    auth_failure_limit: RateLimit = RateLimit(per_s=1.0, burst=20)
    #: Feedback items per client address (per process).
    feedback_rate_limit: RateLimit = RateLimit(per_s=100.0, burst=1000)
    #: Networks of the reverse proxies in front: a request from one of them is attributed to
    #: the address its ``X-Forwarded-For`` names (the rightmost one not itself trusted).
    trusted_proxies: tuple[IPNetwork, ...] = ()
    #: How long a keyed request to a distributed campaign holds its Idempotency-Key against a
    #: concurrent request with the same key (a crashed request: until then a retry is told to
    #: wait). A request gives up (503) after half of it (docs/decision.md, "Distribution").
    sale_lease_s: int = 10


@dataclass(frozen=True, slots=True)
class Config:
    server: ServerSettings
    channels: Mapping[ChannelId, Channel]
    advertisers: Mapping[AdvertiserId, Advertiser]
    campaigns: Mapping[CampaignId, Campaign]
    partners: Mapping[PartnerId, Partner]
    contact_pressure: ContactPressure | None = None
    suppression_lists: Mapping[str, SuppressionList] = field(default_factory=dict)
    delivery: DeliverySettings = field(default_factory=DeliverySettings)
    #: SHA-256 of the file's bytes, so a reload can tell whether anything changed.
    checksum: str = ""
