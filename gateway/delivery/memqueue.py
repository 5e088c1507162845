"""The delivery queue over the embedded store, for ``leadgate serve`` without Redis and the demo.

Same contract and semantics as ``delivery.queue`` (the same tests run over both): new leads
are taken from ``MemoryStore.streams`` (where the embedded ``decide`` appends them), and the
due retries, delayed set, pending entries and dead letters live here. One process only; every
method is atomic because none awaits between reading and writing its state.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from gateway.delivery.policy import EXPIRED, INVALID
from gateway.delivery.queue_base import (
    Claimed,
    DeadLetter,
    Delayed,
    Erased,
    LastResponse,
    QueueState,
    Reclaimed,
    Source,
    dead_fields,
    dead_letter_from,
    entry_key,
    new_entry,
    pack,
    packed_record,
    replayed,
    unpack,
)
from gateway.storage import keys
from gateway.storage.memory import MemoryStore
from gateway.types import AdvertiserId

#: How often a read with nothing to return looks again while it blocks.
_POLL_S = 0.01


@dataclass(slots=True)
class _Pending:
    claimed: Claimed
    consumer: str
    since_ms: int
    deliveries: int = 1


@dataclass(slots=True)
class _Queue:
    """One advertiser's due stream, delayed set, pending entries and dead letters."""

    due: list[tuple[str, bytes]] = field(default_factory=list)
    pending: dict[tuple[Source, str], _Pending] = field(default_factory=dict)
    delayed: list[tuple[int, str]] = field(default_factory=list)  # heap of (due ms, lead id)
    waiting: dict[str, tuple[int, bytes]] = field(default_factory=dict)
    age: dict[str, int] = field(default_factory=dict)
    dead: list[tuple[str, dict[bytes, bytes]]] = field(default_factory=list)
    disabled: str | None = None


class MemoryQueue:
    name = "embedded"

    def __init__(
        self,
        store: MemoryStore,
        *,
        dead_letter_retention_s: float = 30 * 86_400.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._queues: dict[AdvertiserId, _Queue] = {}
        self._ids = itertools.count(1)
        self._retention_ms = int(dead_letter_retention_s * 1000)
        self._clock = clock

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    def _id(self) -> str:
        return f"{self._now_ms()}-{next(self._ids)}"

    def _q(self, advertiser: AdvertiserId) -> _Queue:
        return self._queues.setdefault(advertiser, _Queue())

    async def prepare(self, advertisers: Sequence[AdvertiserId]) -> None:
        for advertiser in advertisers:
            self._q(advertiser)

    def _take(self, advertiser: AdvertiserId, consumer: str, count: int) -> list[Claimed]:
        q = self._q(advertiser)
        now = self._now_ms()
        taken: list[Claimed] = []
        new = self._store.streams.setdefault(keys.deliveries(advertiser), [])
        batch = new[:count]
        del new[:count]
        for entry in batch:
            c = new_entry(advertiser, self._id(), entry.lead_id, entry.accepted_at_ms, entry.record)
            taken.append(c)
        due = q.due[:count]
        del q.due[:count]
        taken += [unpack(advertiser, entry_id, packed) for entry_id, packed in due]
        for c in taken:
            q.pending[(c.source, c.entry_id)] = _Pending(c, consumer, now)
        return taken

    async def read(
        self, advertiser: AdvertiserId, consumer: str, count: int, block_ms: int
    ) -> list[Claimed]:
        deadline = time.monotonic() + block_ms / 1000
        while True:
            taken = self._take(advertiser, consumer, count)
            if taken or time.monotonic() >= deadline:
                return taken
            await asyncio.sleep(min(_POLL_S, max(0.0, deadline - time.monotonic())))

    def _ack(self, claimed: Claimed) -> _Queue | None:
        q = self._q(claimed.delivery.advertiser)
        if q.pending.pop((claimed.source, claimed.entry_id), None) is None:
            return None
        return q

    async def delivered(self, claimed: Claimed) -> bool:
        q = self._ack(claimed)
        if q is None:
            return False
        q.age.pop(claimed.delivery.lead_id, None)
        return True

    async def later(self, claimed: Claimed, due_ms: int, attempt: int, last: LastResponse) -> bool:
        q = self._ack(claimed)
        if q is None:
            return False
        lead = claimed.delivery.lead_id
        q.waiting[lead] = (due_ms, pack(claimed.delivery, attempt, last, claimed.age_from_ms))
        heapq.heappush(q.delayed, (due_ms, lead))
        q.age[lead] = claimed.delivery.accepted_at_ms
        return True

    async def dead(self, claimed: Claimed, reason: str, last: LastResponse, now_ms: int) -> bool:
        q = self._ack(claimed)
        if q is None:
            return False
        self._bury(q, claimed, reason, last, now_ms)
        return True

    def _bury(
        self, q: _Queue, claimed: Claimed, reason: str, last: LastResponse, now_ms: int
    ) -> None:
        """Append a dead letter (the lead leaves the age index) and trim past the retention."""
        q.age.pop(claimed.delivery.lead_id, None)
        fields = {
            k.encode(): v if isinstance(v, bytes) else v.encode()
            for k, v in dead_fields(claimed, reason, last, now_ms).items()
        }
        q.dead.append((f"{now_ms}-{next(self._ids)}", fields))
        self._trim(q, now_ms)

    def _trim(self, q: _Queue, now_ms: int) -> int:
        keep_from = now_ms - self._retention_ms
        kept = [(i, f) for i, f in q.dead if entry_key(i)[0] >= keep_from]
        removed = len(q.dead) - len(kept)
        q.dead = kept
        return removed

    async def trim(self, advertiser: AdvertiserId, now_ms: int) -> int:
        return self._trim(self._q(advertiser), now_ms)

    async def expire(self, advertiser: AdvertiserId, max_age_ms: int, now_ms: int) -> int:
        q = self._q(advertiser)

        def old(claimed: Claimed) -> bool:
            return claimed.invalid or now_ms - claimed.age_base_ms > max_age_ms

        doomed: list[Claimed] = []
        new = self._store.streams.get(keys.deliveries(advertiser), [])
        kept_new = []
        for entry in new:
            claimed = new_entry(
                advertiser, self._id(), entry.lead_id, entry.accepted_at_ms, entry.record
            )
            if old(claimed):
                doomed.append(claimed)
            else:
                kept_new.append(entry)
        new[:] = kept_new
        kept_due: list[tuple[str, bytes]] = []
        for entry_id, packed in q.due:
            claimed = unpack(advertiser, entry_id, packed)
            if old(claimed):
                doomed.append(claimed)
            else:
                kept_due.append((entry_id, packed))
        q.due = kept_due
        for key, pending in list(q.pending.items()):
            if old(pending.claimed):
                del q.pending[key]  # its worker's settle finds it no longer pending
                doomed.append(pending.claimed)
        for lead, (_, packed) in list(q.waiting.items()):
            claimed = unpack(advertiser, "", packed)
            if old(claimed):
                del q.waiting[lead]  # its heap entry is skipped by promote
                doomed.append(claimed)
        for claimed in doomed:
            reason = INVALID if claimed.invalid else EXPIRED
            self._bury(q, claimed, reason, claimed.last, now_ms)
        return len(doomed)

    async def promote(self, advertiser: AdvertiserId, now_ms: int, limit: int) -> int:
        q = self._q(advertiser)
        moved = 0
        while q.delayed and q.delayed[0][0] <= now_ms and moved < limit:
            due_ms, lead = heapq.heappop(q.delayed)
            held = q.waiting.get(lead)
            if held is None or held[0] != due_ms:
                continue  # superseded by a later entry for the same lead
            del q.waiting[lead]
            q.due.append((self._id(), held[1]))
            moved += 1
        return moved

    async def reclaim(
        self, advertiser: AdvertiserId, consumer: str, min_idle_ms: int, max_deliveries: int
    ) -> Reclaimed:
        q = self._q(advertiser)
        now = self._now_ms()
        taken: list[Claimed] = []
        crashing: list[Claimed] = []
        for p in q.pending.values():
            if now - p.since_ms < min_idle_ms:
                continue
            p.consumer, p.since_ms, p.deliveries = consumer, now, p.deliveries + 1
            c = p.claimed
            again = Claimed(
                c.delivery, c.source, c.entry_id, c.last, p.deliveries, c.age_from_ms, c.invalid
            )
            (crashing if p.deliveries > max_deliveries else taken).append(again)
        return Reclaimed(taken, crashing)

    async def touch(
        self, advertiser: AdvertiserId, consumer: str, claimed: Sequence[Claimed]
    ) -> None:
        q = self._q(advertiser)
        now = self._now_ms()
        for c in claimed:
            p = q.pending.get((c.source, c.entry_id))
            if p is not None:
                p.consumer, p.since_ms = consumer, now

    async def state(self, advertiser: AdvertiserId) -> QueueState:
        q = self._q(advertiser)
        new = self._store.streams.get(keys.deliveries(advertiser), [])
        candidates = [new[0].accepted_at_ms] if new else []
        candidates += [p.claimed.delivery.accepted_at_ms for p in q.pending.values()]
        if q.age:
            candidates.append(min(q.age.values()))
        return QueueState(
            depth=len(new) + len(q.due) + len(q.waiting) + len(q.pending),
            oldest_accepted_at_ms=min(candidates) if candidates else None,
            delayed=len(q.waiting),
            dead_letters=len(q.dead),
            disabled=q.disabled is not None,
        )

    async def dead_letters(
        self,
        advertiser: AdvertiserId,
        since_ms: int = 0,
        limit: int = 1000,
        after: str | None = None,
    ) -> list[DeadLetter]:
        q = self._q(advertiser)
        floor = entry_key(after) if after is not None else (-1, -1)
        found = [
            dead_letter_from(advertiser, entry_id, fields)
            for entry_id, fields in q.dead
            if entry_key(entry_id) >= (since_ms, 0) and entry_key(entry_id) > floor
        ]
        return found[:limit]

    async def delayed_leads(self, advertiser: AdvertiserId, limit: int = 1000) -> list[Delayed]:
        q = self._q(advertiser)
        soonest = sorted(q.waiting.items(), key=lambda item: item[1][0])[:limit]
        return [Delayed(due, unpack(advertiser, "", packed)) for _, (due, packed) in soonest]

    async def replay(
        self, advertiser: AdvertiserId, entries: Sequence[DeadLetter], now_ms: int
    ) -> int:
        q = self._q(advertiser)
        wanted = {e.entry_id: e for e in entries}
        kept: list[tuple[str, dict[bytes, bytes]]] = []
        moved = 0
        for entry_id, fields in q.dead:
            entry = wanted.get(entry_id)
            if entry is None:
                kept.append((entry_id, fields))
                continue
            q.due.append((self._id(), replayed(entry, now_ms)))
            q.age[entry.lead_id] = entry.accepted_at_ms
            moved += 1
        q.dead = kept
        return moved

    async def erase(self, advertiser: AdvertiserId, matches: Callable[[bytes], bool]) -> Erased:
        """One pass is enough: nothing awaits here, so no lead moves while we look."""
        q = self._q(advertiser)
        stream = self._store.streams.get(keys.deliveries(advertiser), [])
        kept_new = [entry for entry in stream if not matches(entry.record)]
        undelivered = len(stream) - len(kept_new)
        stream[:] = kept_new
        # Leads between attempts (due, in flight, waiting) also leave the age index.
        gone = _erase_due(q, advertiser, matches)
        for key, p in list(q.pending.items()):
            if matches(p.claimed.delivery.record):
                # Its worker's settle finds it no longer pending: it cannot come back.
                del q.pending[key]
                gone.append(p.claimed.delivery.lead_id)
        for lead, (_, packed) in list(q.waiting.items()):
            if matches(packed_record(packed)):
                del q.waiting[lead]
                gone.append(lead)
        undelivered += len(gone)
        if gone:
            erased = set(gone)
            q.delayed = [(due, lead) for due, lead in q.delayed if lead not in erased]
            heapq.heapify(q.delayed)
            for lead in erased:
                q.age.pop(lead, None)
        kept_dead = [(i, f) for i, f in q.dead if not matches(f.get(b"record", b""))]
        dead = len(q.dead) - len(kept_dead)
        q.dead = kept_dead
        return Erased(undelivered, dead)

    async def disable(self, advertiser: AdvertiserId, detail: str, now_ms: int) -> None:
        self._q(advertiser).disabled = f"{now_ms}|{detail}"

    async def enable(self, advertiser: AdvertiserId) -> bool:
        q = self._q(advertiser)
        was, q.disabled = q.disabled is not None, None
        return was

    async def disabled(self, advertiser: AdvertiserId) -> bool:
        return self._q(advertiser).disabled is not None

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        return None


def _erase_due(q: _Queue, advertiser: AdvertiserId, matches: Callable[[bytes], bool]) -> list[str]:
    """Drop the matching due entries not read yet; their lead ids."""
    kept: list[tuple[str, bytes]] = []
    gone: list[str] = []
    for entry_id, packed in q.due:
        if not matches(packed_record(packed)):
            kept.append((entry_id, packed))
            continue
        try:
            gone.append(unpack(advertiser, entry_id, packed).delivery.lead_id)
        except (ValueError, KeyError, TypeError):  # only this queue writes them: defensive
            gone.append("")
    q.due = kept
    return gone
