"""Cap window arithmetic: which calendar period an instant falls in, in the campaign's zone.

Lead buyers think "200 a day" in their own time zone, so a day cap resets at local midnight,
including on the days daylight saving time makes 23 or 25 hours long.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from gateway.config.model import CalendarPeriod


def _period_start(period: CalendarPeriod, local: datetime) -> datetime:
    if period is CalendarPeriod.HOUR:
        return local.replace(minute=0, second=0, microsecond=0)
    day = local.replace(hour=0, minute=0, second=0, microsecond=0)
    if period is CalendarPeriod.DAY:
        return day
    if period is CalendarPeriod.WEEK:
        return day - timedelta(days=day.weekday())
    return day.replace(day=1)


def _next_start(period: CalendarPeriod, start: datetime) -> datetime:
    if period is CalendarPeriod.HOUR:
        return start + timedelta(hours=1)
    if period is CalendarPeriod.DAY:
        return start + timedelta(days=1)
    if period is CalendarPeriod.WEEK:
        return start + timedelta(days=7)
    if start.month == 12:
        return start.replace(year=start.year + 1, month=1)
    return start.replace(month=start.month + 1)


#: (period, zone) -> (label, end_s, known_from_s): the last answer, right for every instant
#: from ``known_from_s`` (when it was computed) to ``end_s``. Bounded by the config's periods
#: and zones; it saves every lead the ~5 µs of zone arithmetic.
_LAST: dict[tuple[CalendarPeriod, ZoneInfo], tuple[str, float, float]] = {}


def calendar_bucket(period: CalendarPeriod, zone: ZoneInfo, now_s: float) -> tuple[str, float]:
    """The period containing ``now_s``: its label (``2026-11-22``, ``2026-11-22T15+60``,
    ``2026-W47``, ``2026-11``) and the epoch second at which it ends.

    Hour labels carry the UTC offset in minutes, so the repeated hour at a DST fall-back is two
    distinct buckets, never one bucket that counts twice as long.
    """
    last = _LAST.get((period, zone))
    if last is not None and last[2] <= now_s < last[1]:
        return last[0], last[1]
    label, end_s = _compute_bucket(period, zone, now_s)
    _LAST[(period, zone)] = (label, end_s, now_s)
    return label, end_s


def _compute_bucket(period: CalendarPeriod, zone: ZoneInfo, now_s: float) -> tuple[str, float]:
    if period is CalendarPeriod.HOUR:
        # The local hour, in zones with half- and quarter-hour offsets too. Local wall-clock
        # hours can repeat (fall back): `fromtimestamp` sets `fold` on the second copy, and
        # the label carries the UTC offset, so both copies of 02:00 get their own counter.
        local = datetime.fromtimestamp(now_s, zone)
        start = local.replace(minute=0, second=0, microsecond=0)
        start_s = min(start.timestamp(), now_s)
        offset = local.utcoffset() or timedelta(0)
        label = start.strftime("%Y-%m-%dT%H") + f"{int(offset.total_seconds() // 60):+d}"
        return label, start_s + 3600.0
    local = datetime.fromtimestamp(now_s, zone)
    start = _period_start(period, local)
    end = _next_start(period, start)
    # Wall-clock arithmetic then back to an instant: datetime with a ZoneInfo tzinfo resolves
    # the offset at `end` itself, so a 23- or 25-hour day ends at the right instant.
    end_s = end.replace(tzinfo=None).replace(tzinfo=zone).timestamp()
    if period is CalendarPeriod.DAY:
        label = start.strftime("%Y-%m-%d")
    elif period is CalendarPeriod.WEEK:
        iso = start.isocalendar()
        label = f"{iso.year}-W{iso.week:02d}"
    else:
        label = start.strftime("%Y-%m")
    return label, end_s
