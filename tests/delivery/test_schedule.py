"""The retry schedule: the configured waits, jitter that only adds, Retry-After that only
lengthens, and the end of the schedule."""

from __future__ import annotations

import random

import pytest

from gateway.config.delivery import DeliverySettings
from gateway.delivery.model import AttemptResult, Outcome
from gateway.delivery.schedule import max_attempts, next_delay_s

DEFAULT = DeliverySettings()
NO_JITTER = DeliverySettings(jitter=0.0)


def retry(retry_after_s: float | None = None) -> AttemptResult:
    return AttemptResult(Outcome.RETRY, 503, "HTTP 503", retry_after_s)


class Fixed:
    def __init__(self, value: float) -> None:
        self.value = value

    def random(self) -> float:
        return self.value


def test_the_default_schedule_is_the_documented_one() -> None:
    waits = [next_delay_s(NO_JITTER, n, retry(), Fixed(0)) for n in range(1, 10)]
    assert waits == [5, 30, 120, 600, 1800, 3600, 7200, 14400, None]
    assert max_attempts(DEFAULT) == 9


@pytest.mark.parametrize("attempt", range(1, 9))
def test_jitter_only_adds_up_to_its_share(attempt: int) -> None:
    rng = random.Random(attempt)
    base = DEFAULT.retry_schedule_s[attempt]
    for _ in range(200):
        wait = next_delay_s(DEFAULT, attempt, retry(), rng)
        assert wait is not None
        assert base <= wait <= base * 1.1
    assert next_delay_s(DEFAULT, attempt, retry(), Fixed(1.0)) == pytest.approx(base * 1.1)


def test_retry_after_lengthens_never_shortens() -> None:
    assert next_delay_s(NO_JITTER, 1, retry(retry_after_s=60), Fixed(0)) == 60
    assert next_delay_s(NO_JITTER, 3, retry(retry_after_s=60), Fixed(0)) == 120
    assert next_delay_s(NO_JITTER, 1, retry(retry_after_s=0), Fixed(0)) == 5


def test_the_last_attempt_has_no_next() -> None:
    settings = DeliverySettings(retry_schedule_s=(0.0, 1.0), jitter=0.0)
    assert next_delay_s(settings, 1, retry(), Fixed(0)) == 1.0
    assert next_delay_s(settings, 2, retry(retry_after_s=5), Fixed(0)) is None


def test_held_deliveries_wait_without_using_an_attempt() -> None:
    held = AttemptResult(Outcome.HELD, None, "circuit breaker open", retry_after_s=12.0)
    # Even "after" the last attempt: a held attempt did not count.
    assert next_delay_s(NO_JITTER, 9, held, Fixed(0)) == 12.0
    unsaid = AttemptResult(Outcome.HELD, None, "concurrency limit reached")
    assert next_delay_s(NO_JITTER, 1, unsaid, Fixed(0)) == 1.0


@pytest.mark.parametrize("outcome", [Outcome.DELIVERED, Outcome.REJECTED, Outcome.GONE])
def test_settled_outcomes_are_not_retried(outcome: Outcome) -> None:
    result = AttemptResult(outcome, 200, "x")
    assert next_delay_s(DEFAULT, 1, result, Fixed(0)) is None
