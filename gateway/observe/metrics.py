"""What the gateway tells ops: Prometheus metrics and one JSON log line per decision.

Label values come only from configured ids and fixed code tables, never from request input;
log lines carry ids, codes and timings, never an email, phone, name, IP or body.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector

from gateway import __version__
from gateway.config.model import (
    CalendarPeriod,
    Campaign,
    CampaignKind,
    CapSubject,
    Config,
    DedupScope,
    Partner,
)
from gateway.decision.answer import Answer, probe_status
from gateway.decision.model import Decision
from gateway.delivery.metrics import DeliveryMetrics
from gateway.errors import RequestError
from gateway.observe.buyer_metrics import BuyerMetrics
from gateway.observe.connections import ConnectionMetrics
from gateway.observe.tally import Spread, Tallies, Tally
from gateway.quality.metrics import FeedbackMetrics
from gateway.rules.model import SCORE_BELOW_MINIMUM

DECISION_LOG = logging.getLogger("leadgate.decision")

# prometheus-client writes, beside every counter and histogram series, a ``_created`` series
# (the time the series was made) of its own family: as many series again for Prometheus to
# store, and 40 % of a scrape's lines and time (docs/observability.md), for a value that the
# text format gives Prometheus as a plain gauge that no panel or alert of ours reads.
# Multiprocess mode (``--workers N``) never wrote them. A process-wide switch, read at each
# scrape: the gateway's process is this one's.
disable_created_metrics()  # type: ignore[no-untyped-call]

_LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


#: Reason codes counted as duplicates, by dedup scope (a fixed table: metric label values).
DUPLICATE_SCOPES: Mapping[str, str] = {f"duplicate.{s.value}": s.value for s in DedupScope}
#: Reason codes counted as caps hit: ``cap.<subject>.<window>`` and the contact-pressure cap.
CAP_CODES: Mapping[str, tuple[str, str]] = {
    **{
        f"cap.{subject.value}.{window}": (subject.value, window)
        for subject in CapSubject
        for window in (*(p.value for p in CalendarPeriod), "rolling")
    },
    "cap.person": ("person", "rolling"),
}
#: HTTP statuses the lead routes answer, pre-initialised so error-rate queries have series;
#: 499 is no answer at all: the client closed the connection before it (``web.app``).
_LEAD_STATUSES = (
    "200",
    "400",
    "401",
    "403",
    "408",
    "413",
    "415",
    "422",
    "429",
    "499",
    "500",
    "503",
)
#: Statuses of leads refused inside a batch (invalid, campaign not open, key reused).
_REFUSED_STATUSES = ("403", "422")
#: What a check or a ping can answer (``answer.probe_status``), and ``invalid``.
_PROBE_STATUSES = ("open", "duplicate", "capped", "closed", "rejected", "invalid")
#: ``leadgate_ping_reservations_total`` events: made, then what posts found.
_PING_EVENTS = ("made", "committed", "released", "expired", "used", "unknown")
_REDIS_BUCKETS = (0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 2.5)


class Observer:
    """Metrics (in its own registry, so several apps can live in one test process) and the
    decision log.

    With ``multiprocess_dir`` (``leadgate serve --workers N``), every process writes its
    values to files there and ``exposition`` merges all of them: counters add up across
    processes, gauges merge by their declared mode.

    What every request and lead records (requests, decisions, reasons, refusals, Redis round
    trips) is tallied in plain numbers and added to the metrics by ``flush``
    (``gateway.observe.tally``) before every page is rendered (``exposition``; ``/metrics``
    flushes, then renders ``page`` in a thread), the metrics' only reader. With
    ``multiprocess_dir``, every count goes to its file at once.
    """

    def __init__(
        self,
        config: Config,
        registry: CollectorRegistry | None = None,
        *,
        multiprocess_dir: str | None = None,
    ) -> None:
        self.registry = registry or CollectorRegistry()
        self.multiprocess_dir = multiprocess_dir
        r = self.registry
        self.leads = Counter(
            "leadgate_leads",
            "Leads decided, by partner, campaign, channel and decision.",
            ["partner", "campaign", "channel", "decision"],
            registry=r,
        )
        self.reasons = Counter(
            "leadgate_lead_reasons",
            "Reason codes of leads not accepted, by partner, campaign and reason.",
            ["partner", "campaign", "reason"],
            registry=r,
        )
        self.duplicates = Counter(
            "leadgate_duplicates",
            "Leads found to be duplicates, by partner, campaign and dedup scope.",
            ["partner", "campaign", "scope"],
            registry=r,
        )
        self.caps_hit = Counter(
            "leadgate_caps_hit",
            "Leads refused by a cap, by campaign and cap (subject and window).",
            ["campaign", "subject", "window"],
            registry=r,
        )
        self.probes = Counter(
            "leadgate_probes",
            "Pre-ping checks and pings answered, by partner, kind (check, ping) and status "
            "(open, duplicate, capped, closed, rejected, invalid).",
            ["partner", "kind", "status"],
            registry=r,
        )
        self.ping_reservations = Counter(
            "leadgate_ping_reservations",
            "What became of pings' reservations, by partner and event: made (an accepted "
            "ping held room), then for posts naming a ping: committed (accepted on it), "
            "released (refused, room given back), expired, used (another post had it), "
            "unknown. Test pings and replays are not counted.",
            ["partner", "event"],
            registry=r,
        )
        self.refusals = Counter(
            "leadgate_requests_refused",
            "Leads refused before a decision (alone or in a batch), by partner and HTTP status.",
            ["partner", "status"],
            registry=r,
        )
        self.decision_seconds = Histogram(
            "leadgate_decision_duration_seconds",
            "Time to decide one request (a lead or a batch), store round trips included.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.http_seconds = Histogram(
            "leadgate_http_request_duration_seconds",
            "Time from request received to response ready, by route and method.",
            ["route", "method"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.http_requests = Counter(
            "leadgate_http_requests",
            "HTTP requests answered, by route, method and status.",
            ["route", "method", "status"],
            registry=r,
        )
        self.store_errors = Counter(
            "leadgate_store_unavailable",
            "Requests answered 503 because the decision store could not be reached.",
            registry=r,
        )
        self.redis_seconds = Histogram(
            "leadgate_redis_round_trip_duration_seconds",
            "Time of one (pipelined) Redis round trip, from write to the last reply read.",
            buckets=_REDIS_BUCKETS,
            registry=r,
        )
        self.redis_errors = Counter(
            "leadgate_redis_errors",
            "Redis round trips that failed, by kind (timeout, connection), and callers whose "
            "own deadline passed first (deadline).",
            ["kind"],
            registry=r,
        )
        self.store_up = Gauge(
            "leadgate_store_up",
            "Whether the decision store answered a ping at the last scrape (1) or not (0).",
            registry=r,
            multiprocess_mode="livemostrecent",
        )
        self.cap_used = Gauge(
            "leadgate_cap_used",
            "Accepted leads counted by a campaign's cap in its current window (partner and "
            "channel caps: the partner or channel closest to the limit), read at scrape.",
            ["campaign", "subject", "window"],
            registry=r,
            multiprocess_mode="livemostrecent",
        )
        self.cap_limit = Gauge(
            "leadgate_cap_limit",
            "The configured limit of a campaign's cap.",
            ["campaign", "subject", "window"],
            registry=r,
            multiprocess_mode="livemostrecent",
        )
        info = Gauge(
            "leadgate_build_info",
            "Build information.",
            ["version"],
            registry=r,
            multiprocess_mode="livemax",
        )
        info.labels(__version__).set(1)
        self.config_loaded = Gauge(
            "leadgate_config_loaded_timestamp_seconds",
            "When the running configuration was loaded.",
            registry=r,
            multiprocess_mode="livemax",
        )
        self.config_info = Gauge(
            "leadgate_config_info",
            "The running configuration's checksum (SHA-256 of its files): 1 for the current.",
            ["checksum"],
            registry=r,
            multiprocess_mode="livemax",
        )
        self.reloads = Counter(
            "leadgate_config_reloads",
            "Configuration reloads, by result (success, failure).",
            ["result"],
            registry=r,
        )
        for result in ("success", "failure"):
            self.reloads.labels(result)
        for kind in ("timeout", "connection", "deadline"):
            self.redis_errors.labels(kind)
        self.connections = ConnectionMetrics(r)
        self.delivery = DeliveryMetrics(config, r)
        self.feedback = FeedbackMetrics(config, r)
        self.buyers = BuyerMetrics(config, r)
        self._known: set[tuple[str, ...]] = set()
        self._tallies = Tallies(direct=multiprocess_dir is not None)
        self._decision_spread = self._tallies.spread(self.decision_seconds)
        self._redis_spread = self._tallies.spread(self.redis_seconds)
        # Label children's tallies by label values (configured ids and fixed codes: bounded).
        self._http: dict[tuple[str, str, int], tuple[Spread, Tally]] = {}
        self._leads: dict[tuple[str, str, str, str], Tally] = {}
        # A reason's tallies (its reason counter's, and its duplicate or cap counter's if
        # any) by (partner, campaign, reason): configured ids and reason codes, bounded.
        self._reasons: dict[tuple[str, str, str], tuple[Tally, ...]] = {}
        self._refused: dict[tuple[str, int], Tally] = {}
        self._checksum = ""
        self.configure(config)

    def configure(self, config: Config) -> None:
        """Adopt ``config`` (at start and on reload): its checksum, and label sets at 0 for
        partners, campaigns, caps and advertisers not seen before. Series of removed ones
        stay (their totals are history; they just stop growing)."""
        if self._checksum:
            self.config_info.labels(self._checksum).set(0)
        self._checksum = config.checksum
        self.config_info.labels(config.checksum).set(1)
        self.config_loaded.set(time.time())
        self.delivery.configure(config)
        self.feedback.configure(config)
        self.buyers.configure(config)
        pinged = any(c.ping_ttl_s for c in config.campaigns.values())
        for partner in config.partners.values():
            for status in _REFUSED_STATUSES:
                self.refusals.labels(partner.id, status)
            for status in _PROBE_STATUSES:
                self.probes.labels(partner.id, "check", status)
                if pinged:
                    self.probes.labels(partner.id, "ping", status)
            if pinged:
                for event in _PING_EVENTS:
                    self.ping_reservations.labels(partner.id, event)
            for campaign_id in partner.campaigns:
                campaign = config.campaigns.get(campaign_id)
                if campaign is None or (partner.id, campaign_id) in self._known:
                    continue
                self._known.add((partner.id, campaign_id))
                for channel in partner.channels:
                    for decision in Decision:
                        self.leads.labels(partner.id, campaign_id, channel, decision.value)
                for reason in _campaign_reasons(campaign, config):
                    self.reasons.labels(partner.id, campaign_id, reason)
                for code in DUPLICATE_SCOPES.values():
                    self.duplicates.labels(partner.id, campaign_id, code)
        for campaign in config.campaigns.values():
            for cap in campaign.caps:
                subject, window = cap.subject.value, cap.window.label
                self.caps_hit.labels(campaign.id, subject, window)
                self.cap_limit.labels(campaign.id, subject, window).set(cap.limit)
                if (campaign.id, subject, window) not in self._known:
                    self._known.add((campaign.id, subject, window))
                    self.cap_used.labels(campaign.id, subject, window).set(0)
            if campaign.contact_pressure and config.contact_pressure is not None:
                self.caps_hit.labels(campaign.id, "person", "rolling")

    def route_known(self, route: str, methods: Sequence[str]) -> None:
        """Create the request series of one route at 0 (called as routes are added)."""
        for method in methods:
            self.http_seconds.labels(route, method)
            statuses = _LEAD_STATUSES if route.startswith("/v1/") else ("200", "500", "503")
            for status in statuses:
                self.http_requests.labels(route, method, status)

    def request(self, route: str, method: str, status: int, elapsed_s: float) -> None:
        """One HTTP request answered. ``route`` is a registered route's canonical path (or
        ``unmatched``) and ``method`` one of the methods routed: never raw request input."""
        seconds, count = self._http.get((route, method, status)) or self._http_children(
            route, method, status
        )
        seconds.observe(elapsed_s)
        count.n += 1

    def _http_children(self, route: str, method: str, status: int) -> tuple[Spread, Tally]:
        # ``labels()`` validates and locks on every call: each child is looked up once
        # (bounded: routes x methods x statuses).
        children = (
            self._tallies.spread(self.http_seconds.labels(route, method)),
            self._tallies.tally(self.http_requests.labels(route, method, str(status))),
        )
        self._http[(route, method, status)] = children
        return children

    def redis_round_trip(self, elapsed_s: float, error: str | None) -> None:
        """Called by the Redis pipeline after every round trip; ``error`` is ``timeout``,
        ``connection`` or None; and for every caller whose own deadline passed (``deadline``)."""
        if error is None:
            self._redis_spread.observe(elapsed_s)
        else:
            self.redis_errors.labels(error).inc()

    def reloaded(self, config: Config | None) -> None:
        """A reload attempt: the new config, or None when it was refused."""
        if config is None:
            self.reloads.labels("failure").inc()
            return
        self.reloads.labels("success").inc()
        self.configure(config)

    def flush(self) -> None:
        """Add what was tallied since the last flush to the metrics (``gateway.observe.tally``)."""
        self._tallies.flush()

    def exposition(self) -> bytes:
        """The text format for ``/metrics``: this process, or all processes of the server;
        the tallies flushed first, the page rendered in this thread."""
        self.flush()
        return self.page()

    def page(self) -> bytes:
        """The text format for ``/metrics`` as the metrics stand, without a flush. Safe in a
        thread other than the event loop's (prometheus-client reads each metric under its
        lock): ``/metrics`` renders it in one, after ``flush``, which only the event loop's
        thread may run (the tallies are its plain numbers)."""
        if self.multiprocess_dir is None:
            return generate_latest(self.registry)
        merged = CollectorRegistry()
        MultiProcessCollector(merged, path=self.multiprocess_dir)  # type: ignore[no-untyped-call]
        return generate_latest(merged)

    def refused(self, partner: Partner, error: RequestError) -> None:
        """One lead refused before a decision (invalid, campaign not open), posted alone or
        inside a batch."""
        refused = self._refused.get((partner.id, error.status))
        if refused is None:
            refused = self._refused[(partner.id, error.status)] = self._tallies.tally(
                self.refusals.labels(partner.id, str(error.status))
            )
        refused.n += 1

    def probed(
        self, partner: Partner, kind: str, answer: Answer | RequestError, elapsed_s: float
    ) -> None:
        """One check or ping: counted by its status (never as a lead), no decision log line
        (a probe names no one and creates nothing)."""
        status = "invalid" if isinstance(answer, RequestError) else probe_status(answer)
        self.probes.labels(partner.id, kind, status).inc()
        if isinstance(answer, Answer) and answer.ping_status == "held" and not answer.test:
            self.ping_reservations.labels(partner.id, "made").inc()

    def decided(
        self,
        partner: Partner,
        answers: Sequence[Answer | RequestError],
        elapsed_s: float,
        now_s: float = 0.0,
    ) -> None:
        """One request's answers: counted per partner, campaign, channel, decision and
        reason, its latency observed, one decision log line per lead (``now_s`` unused: the
        log line carries its own time)."""
        self._decision_spread.observe(elapsed_s)
        sold: list[Answer] = []
        log = DECISION_LOG.isEnabledFor(logging.INFO)
        latency_ms = round(elapsed_s * 1000, 3)
        for answer in answers:
            if isinstance(answer, RequestError):
                self.refused(partner, answer)
                continue
            if answer.sales is not None:
                sold.append(answer)
            if answer.ping_status and not answer.test and not answer.replayed:
                self.ping_reservations.labels(partner.id, answer.ping_status).inc()
            key = (partner.id, answer.campaign, answer.channel, answer.decision)
            leads = self._leads.get(key)
            if leads is None:
                leads = self._leads[key] = self._tallies.tally(self.leads.labels(*key))
            leads.n += 1
            for reason in answer.reasons:
                tallies = self._reasons.get((partner.id, answer.campaign, reason))
                if tallies is None:
                    tallies = self._reason_tallies(partner.id, answer.campaign, reason)
                for tally in tallies:
                    tally.n += 1
            if log:
                fields: dict[str, object] = {
                    "lead_id": answer.lead_id,
                    "partner": partner.id,
                    "campaign": answer.campaign,
                    "channel": answer.channel,
                    "decision": answer.decision.value,
                    "reasons": list(answer.reasons),
                    "test": answer.test,
                    "replayed": answer.replayed,
                    "latency_ms": latency_ms,
                }
                if answer.sales is not None:
                    # The waterfall, buyer by buyer: ids and codes only.
                    fields["sold_to"] = [sale.buyer for sale in answer.sales]
                    fields["offers"] = [f"{buyer}:{code}" for buyer, code in answer.offers]
                DECISION_LOG.info("decision", extra={"fields": fields})
        if sold:
            self.buyers.decided(sold)

    def _reason_tallies(self, partner: str, campaign: str, reason: str) -> tuple[Tally, ...]:
        # ``labels()`` validates and locks on every call: each reason's children are looked
        # up once. A duplicate also counts in its scope's counter, a cap in the caps counter.
        children: list[Any] = [self.reasons.labels(partner, campaign, reason)]
        scope = DUPLICATE_SCOPES.get(reason)
        cap = CAP_CODES.get(reason)
        if scope is not None:
            children.append(self.duplicates.labels(partner, campaign, scope))
        elif cap is not None:
            children.append(self.caps_hit.labels(campaign, *cap))
        tallies = tuple(self._tallies.tally(child) for child in children)
        self._reasons[(partner, campaign, reason)] = tallies
        return tallies


def _campaign_reasons(campaign: Campaign, config: Config) -> list[str]:
    """The reason codes a campaign's configuration can produce: dedup, caps, store-decided
    rules, its rule packs' rules, inactivity."""
    codes = [rule.reason for rule in campaign.dedup]
    codes += [cap.reason for cap in campaign.caps]
    codes += [rule.reason for rule in campaign.suppression]
    codes += [rule.reason for rule in campaign.velocity]
    if campaign.rules is not None:
        codes += [rule.reason for rule in campaign.rules.rules]
        if campaign.rules.min_score is not None:
            codes.append(SCORE_BELOW_MINIMUM)
    if campaign.contact_pressure and config.contact_pressure is not None:
        codes.append("cap.person")
    if campaign.kind is CampaignKind.PEAK:
        codes.append("campaign.inactive")
    return list(dict.fromkeys(codes))
