"""Delivery health per advertiser, in Prometheus: attempts, durations, dead letters, queue
depth and age, breaker state (implements ``delivery.model.DeliveryEvents``)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from gateway.config.model import Config
from gateway.delivery.model import Outcome
from gateway.types import AdvertiserId

#: Why a lead went to the dead-letter stream: a fixed table (metric label values). A reason the
#: delivery side reports that is not in it is counted as ``other``, so labels stay bounded.
DEAD_LETTER_REASONS = (
    "rejected_by_advertiser",  # 400/422 or a configured refusal matched: terminal
    "attempts_exhausted",  # every retry of the schedule failed
    "expired",  # older than the queue's maximum age before it could be delivered
    "invalid_record",  # the stream entry could not be turned into a request
    "worker_crashes",  # handed to workers again and again without an outcome
    "other",
)
#: Circuit-breaker states of an advertiser's endpoint (metric label values).
BREAKER_STATES = ("closed", "open", "half_open", "disabled")
_DELIVERY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class DeliveryMetrics:
    """Delivery health per advertiser (implements ``gateway.delivery.model.DeliveryEvents``).

    Every configured advertiser's label sets exist from the start at 0, so dashboards and
    alerts have series before the first delivery. Gauges declare how prometheus-client's
    multiprocess mode merges them: the most recent report of any live process wins (every
    process reads the same Redis streams, so the newest reading is the truest).
    """

    def __init__(self, config: Config, registry: CollectorRegistry) -> None:
        r = registry
        self.attempts = Counter(
            "leadgate_delivery_attempts",
            "Delivery attempts to advertisers' endpoints, by advertiser and outcome class.",
            ["advertiser", "outcome"],
            registry=r,
        )
        self.attempt_seconds = Histogram(
            "leadgate_delivery_duration_seconds",
            "Duration of one delivery attempt (request sent to response read), by advertiser.",
            ["advertiser"],
            buckets=_DELIVERY_BUCKETS,
            registry=r,
        )
        self.dead_letters = Counter(
            "leadgate_delivery_dead_letters",
            "Leads moved to the dead-letter stream, by advertiser and reason.",
            ["advertiser", "reason"],
            registry=r,
        )
        self.queue_depth = Gauge(
            "leadgate_delivery_queue_depth",
            "Accepted leads waiting in the advertiser's delivery stream.",
            ["advertiser"],
            registry=r,
            multiprocess_mode="livemostrecent",
        )
        self.oldest_age = Gauge(
            "leadgate_delivery_oldest_undelivered_age_seconds",
            "Age of the oldest lead not yet delivered to the advertiser (0 when none waits).",
            ["advertiser"],
            registry=r,
            multiprocess_mode="livemostrecent",
        )
        self.dead_letter_depth = Gauge(
            "leadgate_delivery_dead_letter_depth",
            "Leads in the advertiser's dead-letter stream, waiting for ops (replay or drop).",
            ["advertiser"],
            registry=r,
            multiprocess_mode="livemostrecent",
        )
        self.breaker = Gauge(
            "leadgate_delivery_breaker_state",
            "Circuit-breaker state of the advertiser's endpoint: 1 for the current state.",
            ["advertiser", "state"],
            registry=r,
            multiprocess_mode="livemostrecent",
        )
        self._advertisers: set[str] = set()
        #: Per advertiser and outcome, the attempt counter's child and (but for HELD, which
        #: took no time) the duration histogram's: ``labels()`` looked up once, not per attempt.
        self._attempt_children: dict[tuple[str, Outcome], tuple[Counter, Histogram | None]] = {}
        self.configure(config)

    def configure(self, config: Config) -> None:
        """Create the label sets of advertisers not seen before (at start and on reload)."""
        for advertiser in config.advertisers:
            if advertiser in self._advertisers:
                continue
            self._advertisers.add(advertiser)
            seconds = self.attempt_seconds.labels(advertiser)
            for outcome in Outcome:
                self._attempt_children[advertiser, outcome] = (
                    self.attempts.labels(advertiser, outcome.value),
                    None if outcome is Outcome.HELD else seconds,
                )
            for reason in DEAD_LETTER_REASONS:
                self.dead_letters.labels(advertiser, reason)
            self.queue_depth.labels(advertiser).set(0)
            self.oldest_age.labels(advertiser).set(0)
            self.dead_letter_depth.labels(advertiser).set(0)
            for state in BREAKER_STATES:
                self.breaker.labels(advertiser, state).set(0)

    def _known(self, advertiser: AdvertiserId) -> bool:
        # Only configured advertisers become label values: a stale stream entry naming an
        # advertiser removed from the config must not create a series.
        return advertiser in self._advertisers

    def attempted(self, advertiser: AdvertiserId, outcome: Outcome, duration_s: float) -> None:
        children = self._attempt_children.get((advertiser, outcome))
        if children is None:  # not a configured advertiser (see ``_known``)
            return
        attempts, seconds = children
        attempts.inc()
        if seconds is not None:
            seconds.observe(duration_s)

    def dead_lettered(self, advertiser: AdvertiserId, reason: str) -> None:
        if not self._known(advertiser):
            return
        code = reason if reason in DEAD_LETTER_REASONS else "other"
        self.dead_letters.labels(advertiser, code).inc()

    def queue_state(
        self, advertiser: AdvertiserId, depth: int, oldest_age_s: float, dead_letters: int
    ) -> None:
        if not self._known(advertiser):
            return
        self.queue_depth.labels(advertiser).set(depth)
        self.oldest_age.labels(advertiser).set(max(0.0, oldest_age_s))
        self.dead_letter_depth.labels(advertiser).set(dead_letters)

    def breaker_state(self, advertiser: AdvertiserId, state: str) -> None:
        """``closed`` / ``open`` / ``half_open`` / ``disabled``; anything else is ignored."""
        if not self._known(advertiser) or state not in BREAKER_STATES:
            return
        for known in BREAKER_STATES:
            self.breaker.labels(advertiser, known).set(1 if known == state else 0)
