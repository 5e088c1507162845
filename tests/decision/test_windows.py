"""Calendar cap windows in the campaign's time zone: "200 a day" resets at local midnight,
including on the 23- and 25-hour days daylight saving time makes."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.config.model import CalendarPeriod
from gateway.decision.windows import _compute_bucket, calendar_bucket

HOUR, DAY, WEEK, MONTH = (
    CalendarPeriod.HOUR,
    CalendarPeriod.DAY,
    CalendarPeriod.WEEK,
    CalendarPeriod.MONTH,
)
UTC, PAR, NYC = "UTC", "Europe/Paris", "America/New_York"
ZONES = [UTC, PAR, NYC]


def _at(iso: str) -> float:
    """Epoch seconds of an ISO 8601 instant written with its offset."""
    return datetime.fromisoformat(iso).timestamp()


@pytest.mark.parametrize(
    ("zone", "period", "now", "label", "ends"),
    [
        # UTC: labels, period ends, ISO weeks, month and year rollover, leap February
        (UTC, HOUR, "2026-11-22T15:30+00:00", "2026-11-22T15+0", "2026-11-22T16:00+00:00"),
        (UTC, DAY, "2026-11-22T15:30+00:00", "2026-11-22", "2026-11-23T00:00+00:00"),
        (UTC, DAY, "2026-12-31T23:59:59+00:00", "2026-12-31", "2027-01-01T00:00+00:00"),
        (UTC, DAY, "2027-01-01T00:00+00:00", "2027-01-01", "2027-01-02T00:00+00:00"),
        (UTC, WEEK, "2026-11-22T15:30+00:00", "2026-W47", "2026-11-23T00:00+00:00"),
        (UTC, WEEK, "2026-11-23T00:00+00:00", "2026-W48", "2026-11-30T00:00+00:00"),
        # 2026 has 53 ISO weeks: 1-3 January 2027 belong to 2026-W53
        (UTC, WEEK, "2027-01-01T12:00+00:00", "2026-W53", "2027-01-04T00:00+00:00"),
        (UTC, WEEK, "2027-01-04T00:00+00:00", "2027-W01", "2027-01-11T00:00+00:00"),
        # ... and 30 December 2024 already belongs to 2025-W01
        (UTC, WEEK, "2024-12-30T08:00+00:00", "2025-W01", "2025-01-06T00:00+00:00"),
        (UTC, MONTH, "2026-11-22T15:30+00:00", "2026-11", "2026-12-01T00:00+00:00"),
        (UTC, MONTH, "2026-12-31T23:59:59+00:00", "2026-12", "2027-01-01T00:00+00:00"),
        (UTC, MONTH, "2028-02-29T12:00+00:00", "2028-02", "2028-03-01T00:00+00:00"),
        # Paris: local midnight, not UTC midnight
        (PAR, DAY, "2026-11-23T00:30+01:00", "2026-11-23", "2026-11-24T00:00+01:00"),
        (PAR, HOUR, "2026-11-23T00:30+01:00", "2026-11-23T00+60", "2026-11-23T01:00+01:00"),
        (PAR, MONTH, "2027-01-01T00:30+01:00", "2027-01", "2027-02-01T00:00+01:00"),
        (PAR, WEEK, "2027-01-01T00:30+01:00", "2026-W53", "2027-01-04T00:00+01:00"),
        # Paris, DST: spring forward on 2026-03-29 (02:00 -> 03:00), fall back on 2026-10-25
        (PAR, DAY, "2026-03-29T12:00+02:00", "2026-03-29", "2026-03-30T00:00+02:00"),
        (PAR, DAY, "2026-10-25T12:00+01:00", "2026-10-25", "2026-10-26T00:00+01:00"),
        (PAR, WEEK, "2026-03-29T12:00+02:00", "2026-W13", "2026-03-30T00:00+02:00"),
        (PAR, MONTH, "2026-10-31T23:30+01:00", "2026-10", "2026-11-01T00:00+01:00"),
        (PAR, MONTH, "2026-03-01T00:00+01:00", "2026-03", "2026-04-01T00:00+02:00"),
        (PAR, HOUR, "2026-03-29T01:30+01:00", "2026-03-29T01+60", "2026-03-29T03:00+02:00"),
        (PAR, HOUR, "2026-03-29T03:00+02:00", "2026-03-29T03+120", "2026-03-29T04:00+02:00"),
        # New York: local evening is already tomorrow in UTC
        (NYC, DAY, "2026-11-22T21:00-05:00", "2026-11-22", "2026-11-23T00:00-05:00"),
        (NYC, MONTH, "2026-12-31T22:00-05:00", "2026-12", "2027-01-01T00:00-05:00"),
        (NYC, WEEK, "2026-11-29T23:00-05:00", "2026-W48", "2026-11-30T00:00-05:00"),
        # New York, DST: spring forward on 2026-03-08 (02:00 -> 03:00), fall back on 2026-11-01
        (NYC, DAY, "2026-03-08T12:00-04:00", "2026-03-08", "2026-03-09T00:00-04:00"),
        (NYC, DAY, "2026-11-01T12:00-05:00", "2026-11-01", "2026-11-02T00:00-05:00"),
        (NYC, HOUR, "2026-03-08T01:59:59-05:00", "2026-03-08T01-300", "2026-03-08T03:00-04:00"),
    ],
)  # fmt: skip
def test_calendar_bucket_labels_and_ends(
    zone: str, period: CalendarPeriod, now: str, label: str, ends: str
) -> None:
    assert calendar_bucket(period, ZoneInfo(zone), _at(now)) == (label, _at(ends))


@pytest.mark.parametrize(
    ("zone", "day_start", "hours"),
    [
        (PAR, "2026-03-29T00:00+01:00", 23),  # spring forward
        (PAR, "2026-10-25T00:00+02:00", 25),  # fall back
        (PAR, "2026-06-15T00:00+02:00", 24),
        (NYC, "2026-03-08T00:00-05:00", 23),
        (NYC, "2026-11-01T00:00-04:00", 25),
        (UTC, "2026-03-29T00:00+00:00", 24),
    ],
)
def test_a_day_cap_lasts_as_long_as_the_local_day(zone: str, day_start: str, hours: int) -> None:
    start = _at(day_start)
    at_start = calendar_bucket(DAY, ZoneInfo(zone), start)
    last_second = calendar_bucket(DAY, ZoneInfo(zone), start + hours * 3600 - 1)

    assert at_start[1] - start == hours * 3600
    assert last_second == at_start  # one bucket, one end, from midnight to midnight


@pytest.mark.parametrize(
    ("zone", "first", "second"),
    [
        # 02:00-03:00 happens twice in Paris on 2026-10-25, 01:00-02:00 twice in New York on
        # 2026-11-01: each copy of the hour is its own hour-cap bucket, one hour long.
        (PAR, "2026-10-25T02:30+02:00", "2026-10-25T02:30+01:00"),
        (NYC, "2026-11-01T01:30-04:00", "2026-11-01T01:30-05:00"),
    ],
)
def test_the_repeated_hour_at_fall_back_is_two_distinct_hour_buckets(
    zone: str, first: str, second: str
) -> None:
    label_1, end_1 = calendar_bucket(HOUR, ZoneInfo(zone), _at(first))
    label_2, end_2 = calendar_bucket(HOUR, ZoneInfo(zone), _at(second))

    assert label_1 != label_2
    assert label_1[:13] == label_2[:13]  # both name the same wall-clock hour
    assert end_1 == _at(first) + 30 * 60  # each ends one real hour after it began
    assert end_2 == _at(second) + 30 * 60


@pytest.mark.parametrize(
    ("zone", "now", "hour_label", "ends"),
    [
        # Half- and quarter-hour offsets: an hour cap resets on the local hour.
        ("Asia/Kolkata", "2026-11-22T15:10+05:30", "2026-11-22T15", "2026-11-22T16:00+05:30"),
        ("Asia/Kathmandu", "2026-11-22T15:50+05:45", "2026-11-22T15", "2026-11-22T16:00+05:45"),
        ("America/St_Johns", "2026-11-22T09:10-03:30", "2026-11-22T09", "2026-11-22T10:00-03:30"),
    ],
)  # fmt: skip
def test_an_hour_cap_follows_the_local_hour_in_zones_with_fractional_offsets(
    zone: str, now: str, hour_label: str, ends: str
) -> None:
    label, end_s = calendar_bucket(HOUR, ZoneInfo(zone), _at(now))

    assert label.startswith(hour_label)
    assert end_s == _at(ends)


@settings(max_examples=300, deadline=None)
@given(
    zone=st.sampled_from(ZONES),
    period=st.sampled_from(list(CalendarPeriod)),
    now_s=st.integers(min_value=1_700_000_000, max_value=2_000_000_000),
)
def test_a_bucket_holds_from_now_to_its_end_and_the_next_one_starts_there(
    zone: str, period: CalendarPeriod, now_s: int
) -> None:
    tz = ZoneInfo(zone)
    label, end_s = calendar_bucket(period, tz, now_s)
    next_label, next_end_s = calendar_bucket(period, tz, end_s)

    assert now_s < end_s
    assert calendar_bucket(period, tz, end_s - 0.001) == (label, end_s)
    assert next_label != label
    assert next_end_s > end_s
    local_end = datetime.fromtimestamp(end_s, tz)
    assert (local_end.minute, local_end.second) == (0, 0)  # periods end on a local hour
    if period is not HOUR:
        assert local_end.hour == 0  # ... and days, weeks, months at local midnight
    if period is WEEK:
        assert local_end.weekday() == 0  # ISO weeks end on Monday 00:00
    if period is MONTH:
        assert local_end.day == 1


@settings(max_examples=200, deadline=None)
@given(
    zone=st.sampled_from([*ZONES, "Asia/Kolkata", "Australia/Lord_Howe"]),
    period=st.sampled_from([HOUR, DAY, WEEK, MONTH]),
    # Around the 2026 DST changes of Paris and New York, in any order (requests arrive
    # slightly out of order; clocks step back).
    offsets_s=st.lists(st.integers(-3 * 86_400, 3 * 86_400), min_size=2, max_size=30),
    around=st.sampled_from(["2026-03-29T01:00:00+00:00", "2026-11-01T06:00:00+00:00"]),
)
def test_the_remembered_bucket_is_the_one_computed_afresh(
    zone: str, period: CalendarPeriod, offsets_s: list[int], around: str
) -> None:
    tz = ZoneInfo(zone)
    for offset_s in offsets_s:
        now_s = _at(around) + offset_s
        assert calendar_bucket(period, tz, now_s) == _compute_bucket(period, tz, now_s)
