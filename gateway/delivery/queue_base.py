"""The delivery queue contract, fulfilled by Redis (``delivery.queue``) and by the embedded store
(``delivery.memqueue``); the worker, the CLI and the admin API only see this.

One advertiser's queue has four places a lead can be:

* **new**: the advertiser's delivery stream, where ``decide.lua`` appends accepted leads;
* **due**: a second stream of retries whose time has come (and replayed dead letters);
* **delayed**: leads waiting for their next attempt, by due time; a promoter moves them to *due*;
* **dead**: leads given up on, with their last response, until ops replay them or their
  retention ends.

Workers read *new* and *due* with one consumer group, in the same read, so first attempts are
never stuck behind retries (an advertiser's or anyone else's: each advertiser has its own
streams and its own reader). A read entry stays *pending* (owned by one worker) until it is
settled: delivered (acknowledged and deleted), put back to *delayed*, or dead-lettered, each
in one atomic step. A pending entry whose worker died is reclaimed after an idle time; an entry
reclaimed too many times (it keeps crashing workers) is dead-lettered.

Lead bodies (personal data) never outlive their documented retention, whatever traffic comes
or stops: an undelivered lead is dead-lettered once older than ``max_lead_age`` (by the worker
that reads it, or by ``expire`` where no worker delivers), and a dead letter is removed once
older than ``dead_letter_retention`` (``trim``, on the worker's timer; the dead-letter stream
also expires as a whole when its newest entry does). docs/delivery.md, "Retention", has the
rule of every key.

Every method raises ``StoreError`` (``StoreUnavailable`` when the store cannot be reached).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import orjson

from gateway.delivery.model import AttemptResult, Delivery
from gateway.types import AdvertiserId, LeadId

#: The one consumer group every worker of every process joins.
GROUP = "leadgate"


class Source(enum.StrEnum):
    NEW = "new"
    DUE = "due"


@dataclass(frozen=True, slots=True)
class LastResponse:
    """What the latest attempt got back (kept with a retry and with a dead letter)."""

    status: int | None = None
    detail: str = ""
    excerpt: str = ""

    @classmethod
    def of(cls, result: AttemptResult) -> LastResponse:
        return cls(result.status, result.detail, result.response_excerpt)


@dataclass(frozen=True, slots=True)
class Claimed:
    """A lead read by one worker: pending until settled."""

    delivery: Delivery
    source: Source
    entry_id: str
    last: LastResponse = LastResponse()
    #: How many times the entry was handed to a worker (1 = read once, never reclaimed).
    deliveries: int = 1
    #: When the lead's maximum age starts counting (epoch ms): its acceptance, or its replay.
    age_from_ms: int = 0
    #: The entry could not be read (missing fields, bad JSON): dead-lettered as it is.
    invalid: bool = False

    @property
    def age_base_ms(self) -> int:
        return max(self.age_from_ms, self.delivery.accepted_at_ms)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    entry_id: str
    lead_id: LeadId
    advertiser: AdvertiserId
    accepted_at_ms: int
    dead_at_ms: int
    attempts: int
    reason: str
    last: LastResponse
    #: The accepted lead (JSON), kept so it can be replayed; never printed or logged.
    record: bytes

    def summary(self) -> dict[str, str]:
        """The record's ids (campaign, partner, channel): no personal data."""
        try:
            doc = orjson.loads(self.record)
        except orjson.JSONDecodeError:
            return {}
        if not isinstance(doc, dict):
            return {}
        return {k: str(doc[k]) for k in ("campaign", "partner", "channel") if k in doc}


@dataclass(frozen=True, slots=True)
class QueueState:
    #: Leads not delivered yet: new, due, delayed and in flight.
    depth: int
    #: Epoch ms of the oldest of them; ``None`` when nothing waits.
    oldest_accepted_at_ms: int | None
    delayed: int
    dead_letters: int
    disabled: bool

    def oldest_age_s(self, now_ms: int) -> float:
        if self.oldest_accepted_at_ms is None:
            return 0.0
        return max(0.0, (now_ms - self.oldest_accepted_at_ms) / 1000)


@dataclass(frozen=True, slots=True)
class Delayed:
    """A lead in the delayed set: its next attempt (``claimed.delivery.attempt``) and when."""

    due_ms: int
    claimed: Claimed


@dataclass(frozen=True, slots=True)
class Reclaimed:
    #: Entries now owned by the reclaiming worker, to deliver again.
    claimed: list[Claimed]
    #: Entries handed out more than the allowed number of times: the caller dead-letters them.
    crashing: list[Claimed]


@dataclass(frozen=True, slots=True)
class Erased:
    """How many of one person's leads an erasure removed from a queue (summed over
    advertisers by the caller: ``sum(found, Erased())``)."""

    #: Leads not delivered yet: new, due, delayed, and in flight with a worker.
    undelivered: int = 0
    dead_letters: int = 0

    def __add__(self, other: Erased) -> Erased:
        return Erased(self.undelivered + other.undelivered, self.dead_letters + other.dead_letters)


def packed_record(packed: bytes) -> bytes:
    """The accepted-lead record inside a packed entry (``pack``); the packed bytes themselves
    when they cannot be read, so an erasure still sees whatever the entry holds."""
    try:
        doc = orjson.loads(packed)
        return str(doc["record"]).encode("utf-8")
    except (ValueError, KeyError, TypeError):  # orjson.JSONDecodeError is a ValueError
        return packed


def pack(delivery: Delivery, attempt: int, last: LastResponse, age_from_ms: int = 0) -> bytes:
    """A lead between attempts, as one value (the *delayed* hash and the *due* stream)."""
    d = delivery
    return orjson.dumps(
        {
            "lead_id": d.lead_id,
            "accepted_at_ms": d.accepted_at_ms,
            "age_from_ms": age_from_ms,
            "attempt": attempt,
            "status": last.status,
            "detail": last.detail,
            "excerpt": last.excerpt,
            "record": d.record.decode("utf-8", "replace"),
        }
    )


def unpack(advertiser: AdvertiserId, entry_id: str, packed: bytes, deliveries: int = 1) -> Claimed:
    doc = orjson.loads(packed)
    delivery = Delivery(
        lead_id=LeadId(doc["lead_id"]),
        advertiser=advertiser,
        accepted_at_ms=int(doc["accepted_at_ms"]),
        attempt=int(doc["attempt"]),
        record=str(doc["record"]).encode("utf-8"),
    )
    last = LastResponse(doc.get("status"), doc.get("detail", ""), doc.get("excerpt", ""))
    return Claimed(delivery, Source.DUE, entry_id, last, deliveries, int(doc.get("age_from_ms", 0)))


#: The ``last`` of a lead never attempted (shared: it is immutable, and one per read entry
#: would cost as much as the rest of the entry).
NO_RESPONSE = LastResponse()


def invalid_entry(advertiser: AdvertiserId, source: Source, entry_id: str, raw: bytes) -> Claimed:
    """A stream entry that is not a lead the queue wrote: kept (as ``record``) for ops."""
    delivery = Delivery(LeadId(f"invalid-{entry_id}"), advertiser, 0, 1, raw)
    return Claimed(delivery, source, entry_id, NO_RESPONSE, invalid=True)


def new_entry(
    advertiser: AdvertiserId,
    entry_id: str,
    lead_id: str,
    accepted_at_ms: int,
    record: bytes,
    deliveries: int = 1,
) -> Claimed:
    # Called once per read entry: positional arguments, no per-entry defaults built.
    return Claimed(
        Delivery(LeadId(lead_id), advertiser, accepted_at_ms, 1, record),
        Source.NEW,
        entry_id,
        NO_RESPONSE,
        deliveries,
    )


def dead_fields(
    claimed: Claimed, reason: str, last: LastResponse, dead_at_ms: int
) -> dict[str, str | bytes]:
    """The fields of a dead-letter stream entry."""
    d = claimed.delivery
    # A lead that was never attempted (held, then expired) counts attempt - 1.
    return {
        "lead_id": d.lead_id,
        "accepted_at_ms": str(d.accepted_at_ms),
        "dead_at_ms": str(dead_at_ms),
        "attempts": str(d.attempt),
        "reason": reason,
        "status": "" if last.status is None else str(last.status),
        "detail": last.detail,
        "excerpt": last.excerpt,
        "record": d.record,
    }


def entry_key(entry_id: str) -> tuple[int, int]:
    """A stream entry id as a sortable pair (``"1700000000000-3"`` -> ``(1700000000000, 3)``)."""
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def replayed(entry: DeadLetter, now_ms: int) -> bytes:
    """The packed first attempt a replayed dead letter becomes."""
    delivery = Delivery(entry.lead_id, entry.advertiser, entry.accepted_at_ms, 1, entry.record)
    return pack(delivery, 1, entry.last, now_ms)


def dead_letter_from(
    advertiser: AdvertiserId, entry_id: str, fields: dict[bytes, bytes]
) -> DeadLetter:
    def text(name: str) -> str:
        return fields.get(name.encode(), b"").decode("utf-8", "replace")

    status = text("status")
    return DeadLetter(
        entry_id=entry_id,
        lead_id=LeadId(text("lead_id")),
        advertiser=advertiser,
        accepted_at_ms=int(text("accepted_at_ms") or 0),
        dead_at_ms=int(text("dead_at_ms") or entry_id.split("-")[0]),
        attempts=int(text("attempts") or 0),
        reason=text("reason"),
        last=LastResponse(int(status) if status else None, text("detail"), text("excerpt")),
        record=fields.get(b"record", b""),
    )


class Queue(Protocol):
    """One consumer group over every advertiser's delivery streams."""

    name: str

    async def prepare(self, advertisers: Sequence[AdvertiserId]) -> None:
        """Create the consumer groups (from the start of each stream, so nothing accepted
        before the first worker started is skipped). Idempotent."""
        ...

    async def read(
        self, advertiser: AdvertiserId, consumer: str, count: int, block_ms: int
    ) -> list[Claimed]:
        """Up to ``count`` new leads and up to ``count`` due retries, waiting at most
        ``block_ms`` when there is none. They are pending for ``consumer`` until settled."""
        ...

    async def delivered(self, claimed: Claimed) -> bool:
        """Acknowledge and delete: the lead is gone from the store. ``False`` when the entry
        was no longer pending (another worker settled it): nothing changed."""
        ...

    async def later(self, claimed: Claimed, due_ms: int, attempt: int, last: LastResponse) -> bool:
        """Settle into *delayed*: the lead's next attempt (number ``attempt``) is due at
        ``due_ms``. ``False`` when the entry was no longer pending."""
        ...

    async def dead(self, claimed: Claimed, reason: str, last: LastResponse, now_ms: int) -> bool:
        """Settle into *dead* with its last response. ``False`` when no longer pending."""
        ...

    async def promote(self, advertiser: AdvertiserId, now_ms: int, limit: int) -> int:
        """Move up to ``limit`` delayed leads whose time has come to *due*; how many moved."""
        ...

    async def reclaim(
        self, advertiser: AdvertiserId, consumer: str, min_idle_ms: int, max_deliveries: int
    ) -> Reclaimed:
        """Take over entries pending for longer than ``min_idle_ms`` (their worker died)."""
        ...

    async def touch(
        self, advertiser: AdvertiserId, consumer: str, claimed: Sequence[Claimed]
    ) -> None:
        """Reset the idle time of entries still in flight here, so no one reclaims them."""
        ...

    async def state(self, advertiser: AdvertiserId) -> QueueState: ...

    async def dead_letters(
        self,
        advertiser: AdvertiserId,
        since_ms: int = 0,
        limit: int = 1000,
        after: str | None = None,
    ) -> list[DeadLetter]:
        """Up to ``limit`` dead letters dead-lettered at or after ``since_ms``, oldest first;
        with ``after`` (an ``entry_id``), only those after it (to page through them)."""
        ...

    async def delayed_leads(self, advertiser: AdvertiserId, limit: int = 1000) -> list[Delayed]:
        """Leads waiting for their next attempt, soonest first."""
        ...

    async def replay(
        self, advertiser: AdvertiserId, entries: Sequence[DeadLetter], now_ms: int
    ) -> int:
        """Move these dead letters back to *due* as first attempts (same lead id, so the same
        ``webhook-id``), their maximum age counted from ``now_ms``; how many moved (a dead
        letter replayed twice at once moves once)."""
        ...

    async def erase(self, advertiser: AdvertiserId, matches: Callable[[bytes], bool]) -> Erased:
        """Remove every lead of this advertiser's queue whose record ``matches``: new, due,
        delayed (waiting) and pending ones (even in flight with a worker) and dead letters.

        ``matches`` gets the accepted-lead record (JSON bytes, as ``Delivery.record``), or
        for an unreadable entry whatever bytes it holds (maybe ``b""``). A worker holding an
        erased lead cannot settle it any more: ``delivered``/``later``/``dead`` return
        ``False`` and change nothing, so the lead never comes back."""
        ...

    async def trim(self, advertiser: AdvertiserId, now_ms: int) -> int:
        """Remove this advertiser's dead letters dead-lettered more than the retention before
        ``now_ms``; how many. The worker runs it on a timer and at start, so a dead letter is
        gone at most one timer period after its retention, newer dead letters or not."""
        ...

    async def expire(self, advertiser: AdvertiserId, max_age_ms: int, now_ms: int) -> int:
        """Dead-letter every undelivered lead of this advertiser (new, due, delayed, and
        pending with a worker) older than ``max_age_ms`` at ``now_ms``, as ``expired`` (an
        unreadable entry as ``invalid_record``); how many. For advertisers no worker delivers
        to (no endpoint, or the endpoint disabled), whose leads no read would ever age out."""
        ...

    async def disable(self, advertiser: AdvertiserId, detail: str, now_ms: int) -> None: ...

    async def enable(self, advertiser: AdvertiserId) -> bool:
        """Re-enable the endpoint; ``False`` when it was not disabled."""
        ...

    async def disabled(self, advertiser: AdvertiserId) -> bool: ...

    async def ping(self) -> None:
        """Raise ``StoreUnavailable`` unless the store answers now."""
        ...

    async def close(self) -> None: ...
