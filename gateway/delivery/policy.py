"""What becomes of a lead after an attempt: pure, over plain data (the worker carries it out).

=================  =============================================================================
attempt outcome    the lead
=================  =============================================================================
delivered          acknowledged and deleted ("delivered means gone")
rejected           dead letter ``rejected_by_advertiser`` (400/422, or the body said so)
retry              back to the delayed set for attempt n+1 after the schedule's wait, or dead
                   letter ``attempts_exhausted`` after the last one, or ``expired`` when the
                   next attempt would come after the maximum lead age
held               back to the delayed set for the *same* attempt (nothing was sent); time
                   still counts: ``expired`` past the maximum age
endpoint gone      the endpoint is disabled for every worker and the lead waits, attempt not
                   consumed, until ops re-enable it
=================  =============================================================================
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from gateway.config.delivery import DeliverySettings
from gateway.delivery.model import AttemptResult, Outcome
from gateway.delivery.queue_base import Claimed, LastResponse
from gateway.delivery.schedule import Random, next_delay_s

#: Dead-letter reasons (metric label values, ``gateway.observe.DEAD_LETTER_REASONS``).
REJECTED = "rejected_by_advertiser"
EXHAUSTED = "attempts_exhausted"
EXPIRED = "expired"
INVALID = "invalid_record"
#: Handed to workers ``max_deliveries`` times without an outcome: it keeps crashing them.
CRASHING = "worker_crashes"


class Step(enum.StrEnum):
    ACK = "ack"
    LATER = "later"
    DEAD = "dead"
    DISABLE = "disable"  # disable the endpoint, then LATER (same attempt, due now)


@dataclass(frozen=True, slots=True)
class Action:
    step: Step
    last: LastResponse
    due_ms: int = 0
    attempt: int = 0
    reason: str = ""


def expired(claimed: Claimed, settings: DeliverySettings, at_ms: int) -> bool:
    """Whether the lead is past its maximum age at ``at_ms``."""
    return at_ms - claimed.age_base_ms > settings.max_lead_age_s * 1000


def after_attempt(
    claimed: Claimed,
    result: AttemptResult,
    settings: DeliverySettings,
    now_ms: int,
    rng: Random,
) -> Action:
    attempt = claimed.delivery.attempt
    outcome = result.outcome
    if outcome is Outcome.DELIVERED:
        return Action(Step.ACK, LastResponse.of(result))
    if outcome is Outcome.REJECTED:
        return Action(Step.DEAD, LastResponse.of(result), reason=REJECTED)
    if outcome is Outcome.GONE:
        return Action(Step.DISABLE, LastResponse.of(result), due_ms=now_ms, attempt=attempt)
    # HELD keeps the previous response: nothing new was learnt about the CRM.
    last = claimed.last if outcome is Outcome.HELD else LastResponse.of(result)
    delay_s = next_delay_s(settings, attempt, result, rng)
    if delay_s is None:
        return Action(Step.DEAD, last, reason=EXHAUSTED)
    due_ms = now_ms + int(delay_s * 1000)
    if expired(claimed, settings, due_ms):
        return Action(Step.DEAD, last, reason=EXPIRED)
    next_attempt = attempt if outcome is Outcome.HELD else attempt + 1
    return Action(Step.LATER, last, due_ms=due_ms, attempt=next_attempt)


def before_attempt(claimed: Claimed, settings: DeliverySettings, now_ms: int) -> Action | None:
    """A lead that must not be sent at all: unreadable, or already too old."""
    if claimed.invalid:
        return Action(Step.DEAD, claimed.last, reason=INVALID)
    if expired(claimed, settings, now_ms):
        return Action(Step.DEAD, claimed.last, reason=EXPIRED)
    return None
