"""The delivery contract shared by the transport (adapters, signing, protection) and the queue
(streams, retries, dead letters, worker): what one delivery is, and what one attempt gave.

The queue builds a ``Delivery`` from a stream entry written by ``decide.lua`` (fields
``lead_id``, ``accepted_at_ms``, ``record``; ``record`` is the JSON built by
``decision.plan.build_request``: lead_id, campaign, advertiser, partner, channel, ref,
accepted_at_ms and ``lead``, the normalized lead from ``Lead.to_payload``). The transport turns
it into one HTTP request to the advertiser's endpoint and classifies the answer.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol

from gateway.types import AdvertiserId, LeadId


class Outcome(enum.StrEnum):
    """How one attempt ended. The values are metric labels and log fields: a fixed table."""

    DELIVERED = "delivered"  # 2xx, and no configured refusal matched the body
    REJECTED = "rejected_by_advertiser"  # 400/422 or a refusal match: terminal, dead letter
    RETRY = "retry"  # 408/429/5xx, timeout, reset, refused connection, redirect: try again
    GONE = "endpoint_gone"  # 410: the endpoint is disabled until ops re-enable it
    HELD = "held"  # not sent (breaker open, endpoint disabled): does not consume an attempt


@dataclass(frozen=True, slots=True)
class Delivery:
    lead_id: LeadId
    advertiser: AdvertiserId
    accepted_at_ms: int
    #: 1 for the first attempt; attempts that were HELD do not count.
    attempt: int
    #: The stream entry's ``record`` field, as written at acceptance (JSON bytes).
    record: bytes


@dataclass(frozen=True, slots=True)
class AttemptResult:
    outcome: Outcome
    #: The HTTP status, or None when no response came (timeout, connection error, held).
    status: int | None
    #: A short, PII-free account for ops: "HTTP 503", "timeout after 10s", "body matched
    #: refusal", "connection refused". Never the response body, never the lead.
    detail: str
    #: The endpoint's own wish (Retry-After), in seconds; it can lengthen a wait, never shorten.
    retry_after_s: float | None = None
    duration_s: float = 0.0
    #: The first bytes of the response body (capped), kept with a dead letter for ops.
    response_excerpt: str = ""


class DeliveryEvents(Protocol):
    """What the delivery side reports to metrics (implemented in ``gateway.observe``).
    Every argument is a configured id or a fixed code: never request input."""

    def attempted(self, advertiser: AdvertiserId, outcome: Outcome, duration_s: float) -> None: ...

    def dead_lettered(self, advertiser: AdvertiserId, reason: str) -> None: ...

    def queue_state(
        self, advertiser: AdvertiserId, depth: int, oldest_age_s: float, dead_letters: int
    ) -> None: ...

    def breaker_state(self, advertiser: AdvertiserId, state: str) -> None:
        """``closed`` / ``open`` / ``half_open`` / ``disabled``."""
        ...
