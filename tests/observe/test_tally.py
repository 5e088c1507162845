"""Tallies: what the hot path counts in plain numbers reaches Prometheus exactly as if every
count and observation had gone to prometheus-client one by one (the observer's flushes:
``tests/observe/test_metrics.py``)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from gateway.observe.tally import Tallies

BOUNDS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
#: Durations, the bounds themselves (an observation on a bound goes in that bucket), and
#: the edges: 0, negative (a clock step), beyond the last bound, infinity. Never NaN: these
#: are differences of ``time.perf_counter()``.
VALUES = st.one_of(
    st.floats(min_value=-1.0, max_value=10.0, allow_nan=False),
    st.sampled_from([*BOUNDS, 0.0, float("inf")]),
)


def _text(registry: CollectorRegistry) -> list[str]:
    """The exposition without its ``_created`` lines (the time each series was made)."""
    lines = generate_latest(registry).decode().splitlines()
    return [line for line in lines if "_created" not in line]


def _same(tallied: CollectorRegistry, one_by_one: CollectorRegistry) -> None:
    """The same expositions: every line, but a sum's last digits (added in another order,
    a float sum may round otherwise)."""
    ours, theirs = _text(tallied), _text(one_by_one)
    assert len(ours) == len(theirs)
    for line, expected in zip(ours, theirs, strict=True):
        name, _, value = line.rpartition(" ")
        expected_name, _, expected_value = expected.rpartition(" ")
        if "_sum" in name:
            assert name == expected_name
            assert float(value) == pytest.approx(float(expected_value), rel=1e-12, abs=1e-12)
        else:
            assert line == expected


def _pair() -> tuple[CollectorRegistry, CollectorRegistry]:
    return CollectorRegistry(), CollectorRegistry()


@settings(max_examples=200, deadline=None)
@given(batches=st.lists(st.lists(VALUES, max_size=30), min_size=1, max_size=4))
def test_a_spread_flushed_reads_as_every_observation_made_one_by_one(
    batches: list[list[float]],
) -> None:
    one_by_one, tallied = _pair()
    plain = Histogram("t_seconds", "t", ["route"], buckets=BOUNDS, registry=one_by_one)
    kept = Histogram("t_seconds", "t", ["route"], buckets=BOUNDS, registry=tallied)
    bare = Histogram("u_seconds", "u", buckets=BOUNDS, registry=one_by_one)
    bare_kept = Histogram("u_seconds", "u", buckets=BOUNDS, registry=tallied)
    plain.labels("/v1/leads")  # both children exist from the start, as the observer's do
    tallies = Tallies()
    spread = tallies.spread(kept.labels("/v1/leads"))
    bare_spread = tallies.spread(bare_kept)
    for batch in batches:  # a flush between batches: sums and buckets keep adding up
        for value in batch:
            plain.labels("/v1/leads").observe(value)
            bare.observe(value)
            spread.observe(value)
            bare_spread.observe(value)
        tallies.flush()
        _same(tallied, one_by_one)


@given(counts=st.lists(st.integers(min_value=0, max_value=50), min_size=1, max_size=5))
def test_a_tally_flushed_reads_as_every_count_made_one_by_one(counts: list[int]) -> None:
    one_by_one, tallied = _pair()
    plain = Counter("t", "t", ["partner"], registry=one_by_one)
    kept = Counter("t", "t", ["partner"], registry=tallied)
    plain.labels("p-alpha")
    tallies = Tallies()
    tally = tallies.tally(kept.labels("p-alpha"))
    for n in counts:
        for _ in range(n):
            plain.labels("p-alpha").inc()
            tally.n += 1
        assert _text(tallied) != _text(one_by_one) or n == 0  # nothing reached it yet
        tallies.flush()
        _same(tallied, one_by_one)
        assert tally.n == 0


def test_direct_tallies_reach_the_metric_at_once() -> None:
    registry = CollectorRegistry()
    counter = Counter("t", "t", registry=registry)
    histogram = Histogram("h_seconds", "h", buckets=BOUNDS, registry=registry)
    tallies = Tallies(direct=True)
    tally, spread = tallies.tally(counter), tallies.spread(histogram)
    tally.n += 1
    tally.n += 1
    spread.observe(0.003)
    assert registry.get_sample_value("t_total") == 2
    assert registry.get_sample_value("h_seconds_bucket", {"le": "0.005"}) == 1
    assert registry.get_sample_value("h_seconds_count") == 1
    tallies.flush()  # nothing waits in a direct tally: a flush adds nothing twice
    assert registry.get_sample_value("t_total") == 2
    assert registry.get_sample_value("h_seconds_count") == 1
