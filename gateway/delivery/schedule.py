"""When to try a lead again: the retry schedule, jitter that only adds, and ``Retry-After``.

Pure arithmetic over ``DeliverySettings``: the queue calls ``next_delay_s`` after every attempt
that did not settle the lead, and dead-letters the lead when it answers ``None``. The maximum
lead age (``DeliverySettings.max_lead_age_s``) is checked by the queue, not here: it depends
on the clock, this does not.
"""

from __future__ import annotations

from typing import Protocol

from gateway.config.delivery import DeliverySettings
from gateway.delivery.model import AttemptResult, Outcome


class Random(Protocol):
    """What ``next_delay_s`` needs of a random source: ``random.Random()`` (seeded in tests)."""

    def random(self) -> float: ...


def max_attempts(settings: DeliverySettings) -> int:
    """How many attempts a lead gets: one per schedule entry."""
    return len(settings.retry_schedule_s)


def next_delay_s(
    settings: DeliverySettings,
    attempt: int,
    result: AttemptResult,
    rng: Random,
) -> float | None:
    """Seconds to wait before the next try, after ``attempt`` (1-based) gave ``result``.

    - ``RETRY``: the schedule's next entry (``retry_schedule_s[attempt]``), plus jitter in
      ``[0, jitter]`` of it, and at least the endpoint's ``Retry-After``. ``None`` when
      ``attempt`` was the last one: the lead goes to dead letters.
    - ``HELD``: the attempt did not count (breaker open, throttled): wait ``retry_after_s``
      (1 s when it says nothing) plus jitter, never ``None``.
    - ``DELIVERED``, ``REJECTED``, ``GONE``: nothing to retry here (``None``); the queue
      acknowledges, dead-letters or parks the lead itself.
    """
    if result.outcome is Outcome.HELD:
        floor = result.retry_after_s if result.retry_after_s is not None else 1.0
        return max(0.0, floor) * (1.0 + settings.jitter * rng.random())
    if result.outcome is not Outcome.RETRY:
        return None
    schedule = settings.retry_schedule_s
    if attempt < 1 or attempt >= len(schedule):
        return None
    wait = schedule[attempt] * (1.0 + settings.jitter * rng.random())
    if result.retry_after_s is not None:
        wait = max(wait, result.retry_after_s)
    return wait
