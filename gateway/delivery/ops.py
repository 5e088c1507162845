"""What ops do with the delivery queue, shared by ``leadgate deliveries`` and the admin API:
list dead letters and waiting retries, replay dead letters, re-enable an endpoint.

Rows hold ids, codes, counts and times only: never a lead's personal fields, never a
response body (the CRM may echo the lead back in it).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime

from gateway.config.durations import parse_duration_s
from gateway.delivery.queue_base import DeadLetter, Delayed, Queue
from gateway.types import AdvertiserId, LeadId

#: Dead letters read (and replayed) per round trip.
PAGE = 500


def now_ms() -> int:
    return int(time.time() * 1000)


def parse_since(text: str, now: int | None = None) -> int:
    """``--since`` as epoch ms: a duration back from now (``30m``, ``2h``, ``1d``), an ISO 8601
    instant with its offset (``2026-11-22T10:00:00+01:00``), or epoch milliseconds.
    Raises ``ValueError`` with a message for people."""
    text = text.strip()
    now = now_ms() if now is None else now
    if text.isdigit():
        return int(text)
    try:
        return now - parse_duration_s(text) * 1000
    except ValueError:
        pass
    try:
        instant = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"{text!r} is not a time: give a duration back from now (30m, 2h, 1d), an ISO 8601 "
            "instant with offset (2026-11-22T10:00:00+01:00) or epoch milliseconds"
        ) from None
    if instant.tzinfo is None:
        raise ValueError(f"{text!r} has no UTC offset: add one (Z, +01:00)")
    return int(instant.timestamp() * 1000)


def _age(ms: int, now: int) -> str:
    """``45s``, ``12m``, ``3h``, ``2d``: how long ago ``ms`` was, in its largest unit."""
    seconds = max(0, (now - ms) // 1000)
    for unit, size in (("d", 86_400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def dead_row(entry: DeadLetter, now: int) -> dict[str, object]:
    ids = entry.summary()
    return {
        "lead_id": entry.lead_id,
        "advertiser": entry.advertiser,
        "campaign": ids.get("campaign", ""),
        "partner": ids.get("partner", ""),
        "age": _age(entry.accepted_at_ms, now),
        "accepted_at_ms": entry.accepted_at_ms,
        "dead_at_ms": entry.dead_at_ms,
        "attempts": entry.attempts,
        "reason": entry.reason,
        "status": entry.last.status,
        "detail": entry.last.detail,
    }


def delayed_row(entry: Delayed, now: int) -> dict[str, object]:
    c = entry.claimed
    ids = DeadLetter("", c.delivery.lead_id, c.delivery.advertiser, 0, 0, 0, "", c.last,
                     c.delivery.record).summary()  # fmt: skip
    return {
        "lead_id": c.delivery.lead_id,
        "advertiser": c.delivery.advertiser,
        "campaign": ids.get("campaign", ""),
        "partner": ids.get("partner", ""),
        "age": _age(c.delivery.accepted_at_ms, now),
        "accepted_at_ms": c.delivery.accepted_at_ms,
        "attempts": c.delivery.attempt - 1,
        "next_attempt_in_s": round(max(0, entry.due_ms - now) / 1000, 1),
        "status": c.last.status,
        "detail": c.last.detail,
    }


async def dead_letters(
    queue: Queue, advertiser: AdvertiserId, since_ms: int = 0, limit: int | None = None
) -> list[DeadLetter]:
    """Every dead letter since ``since_ms`` (or the first ``limit``), page by page."""
    found: list[DeadLetter] = []
    after: str | None = None
    while limit is None or len(found) < limit:
        page = await queue.dead_letters(advertiser, since_ms, PAGE, after)
        found += page
        if len(page) < PAGE:
            break
        after = page[-1].entry_id
    return found if limit is None else found[:limit]


async def find_dead(
    queue: Queue, advertisers: Sequence[AdvertiserId], lead_id: LeadId
) -> DeadLetter | None:
    for advertiser in advertisers:
        after: str | None = None
        while True:
            page = await queue.dead_letters(advertiser, 0, PAGE, after)
            for entry in page:
                if entry.lead_id == lead_id:
                    return entry
            if len(page) < PAGE:
                break
            after = page[-1].entry_id
    return None


async def replay_since(queue: Queue, advertiser: AdvertiserId, since_ms: int) -> int:
    """Replay every dead letter of ``advertiser`` dead-lettered since ``since_ms``."""
    moved = 0
    after: str | None = None
    stop_at = now_ms()  # not the ones that die again while this runs
    while True:
        page = await queue.dead_letters(advertiser, since_ms, PAGE, after)
        page = [e for e in page if e.dead_at_ms <= stop_at]
        if not page:
            return moved
        moved += await queue.replay(advertiser, page, now_ms())
        after = page[-1].entry_id
