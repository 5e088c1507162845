"""The embedded store: the decision contract in-process, for a demo, a laptop and unit tests.

Same semantics as the Lua scripts (the same tests run against both), atomic because nothing in
a method awaits. One process only: its memory dies with the process, so the README says it is
not for production. Expiry is measured against the requests' own clock (``now_ms``).
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from gateway.decision.model import (
    PING_RECORD_USED,
    CampaignReservation,
    CapCheck,
    ClaimResult,
    ClaimStatus,
    Decision,
    DecisionOutcome,
    DecisionRequest,
    DedupCheck,
    Hold,
    HoldMode,
    IdempotencyRef,
    LeadIndexEntry,
    PersonReservation,
    PingStatus,
)
from gateway.storage import keys as storage_keys
from gateway.storage.base import (
    Command,
    FeedbackRef,
    ForcedOutcome,
    LeadProbe,
    ReserveResult,
    SaleClaim,
    SaleClaimed,
    SaleClosing,
    SaleOpened,
    SaleOpening,
    Store,
)
from gateway.types import LeadId

#: Expired entries are swept every this many writes, so memory stays bounded by the windows.
_SWEEP_EVERY = 10_000


@dataclass(slots=True)
class _Entry:
    #: A string, or a hash / sorted set (field -> int score or count; a lead index's text).
    value: str | dict[str, Any]
    expires_at_ms: int


@dataclass(slots=True)
class StreamEntry:
    lead_id: str
    accepted_at_ms: int
    record: bytes


@dataclass
class MemoryStore(Store):
    """Every capability of ``storage.base.Store`` in this process's memory."""

    name: str = "embedded"
    _data: dict[str, _Entry] = field(default_factory=dict)
    streams: dict[str, list[StreamEntry]] = field(default_factory=dict)
    #: Suppression: identity key -> list ids (no expiry, like the Redis sets).
    suppressed: dict[str, set[str]] = field(default_factory=dict)
    _list_sizes: dict[str, int] = field(default_factory=dict)
    _writes: int = 0
    _last_now_ms: int = 0
    #: As ``RedisStore.legacy_seen_until_ms``: an embedded store never held the legacy
    #: layout, but tests set it to check both stores read it alike.
    legacy_seen_until_ms: int = 0

    # -- primitive operations, mirroring the Redis commands the scripts use ------------------

    def _get(self, key: str, now_ms: int) -> _Entry | None:
        entry = self._data.get(key)
        if entry is not None and entry.expires_at_ms <= now_ms:
            del self._data[key]
            return None
        return entry

    def _get_str(self, key: str, now_ms: int) -> str | None:
        entry = self._get(key, now_ms)
        return entry.value if entry is not None and isinstance(entry.value, str) else None

    def _zset(self, key: str, now_ms: int) -> dict[str, Any]:
        entry = self._get(key, now_ms)
        if entry is not None and isinstance(entry.value, dict):
            return entry.value
        return {}

    def _set(self, key: str, value: str | dict[str, Any], now_ms: int, ttl_ms: int) -> None:
        self._data[key] = _Entry(value, now_ms + ttl_ms)
        self._writes += 1
        self._last_now_ms = max(self._last_now_ms, now_ms)
        if self._writes % _SWEEP_EVERY == 0:
            self._sweep()

    def _sweep(self) -> None:
        now = self._last_now_ms
        for key in [k for k, e in self._data.items() if e.expires_at_ms <= now]:
            del self._data[key]

    def keys(self) -> list[str]:
        """Every live key name (tests look for personal data in them)."""
        return list(self._data) + list(self.streams) + list(self.suppressed)

    # -- the contract ------------------------------------------------------------------------

    async def claim(self, refs: Sequence[IdempotencyRef], now_ms: int) -> list[ClaimResult]:
        return [self._claim(ref, now_ms) for ref in refs]

    def _claim(self, ref: IdempotencyRef, now: int) -> ClaimResult:
        held = self._get_str(ref.claim_key, now)
        held_digest, _, held_lead = (held or "").partition("|")
        if held is None:
            self._set(ref.claim_key, f"{ref.body_digest}|{ref.lead_id or ''}", now, ref.ttl_ms)
        elif held_digest != ref.body_digest:
            return ClaimResult(ClaimStatus.CONFLICT)
        stored = self._get_str(ref.answer_key, now)
        if stored is not None:
            digest, answer = DecisionOutcome.decode(stored)
            if digest == ref.body_digest:
                return ClaimResult(ClaimStatus.REPLAY, answer)
            return ClaimResult(ClaimStatus.CONFLICT)
        return ClaimResult(ClaimStatus.NEW, lead_id=LeadId(held_lead) if held_lead else None)

    async def reserve(self, items: Sequence[PersonReservation]) -> list[ReserveResult]:
        return [self._reserve(r) for r in items]

    def _reserve(self, r: PersonReservation) -> ReserveResult:
        now = r.now_ms
        on = self.suppressed.get(r.suppressed_key, set()) if r.suppress else set()
        for list_id, reason in r.suppress:
            if list_id in on:
                return ReserveResult(reason, "")
        previous = ""
        if r.network_window_ms > 0:
            previous = self._get_str(r.seen_key, now) or ""
            if previous.endswith(f"|{r.lead_id}"):
                previous = ""  # this lead's own mark, left by an attempt that crashed
            if previous and now - int(previous.split("|", 1)[0]) < r.network_window_ms:
                return ReserveResult("duplicate.network", "")
        if r.pressure_limit > 0:
            members = self._zset(r.pressure_key, now)
            live = {
                m.split("|", 1)[0] for m, at in members.items() if at > now - r.pressure_window_ms
            }
            if r.unit not in live and len(live) >= r.pressure_limit:
                return ReserveResult("cap.person", "")
        if r.dry_run:
            return ReserveResult("", "")
        if r.network_window_ms > 0:
            self._set(r.seen_key, f"{now}|{r.lead_id}", now, r.network_retention_ms)
        if r.pressure_limit > 0:
            kept = {
                m: at
                for m, at in self._zset(r.pressure_key, now).items()
                if at > now - r.pressure_window_ms
            }
            kept[f"{r.unit}|{r.lead_id}"] = now
            self._set(r.pressure_key, kept, now, r.pressure_window_ms)
        return ReserveResult("", previous)

    async def decide(
        self, items: Sequence[tuple[DecisionRequest, ForcedOutcome | None]]
    ) -> list[DecisionOutcome | None]:
        return [self._decide(request, forced) for request, forced in items]

    def _decide(self, rq: DecisionRequest, forced: ForcedOutcome | None) -> DecisionOutcome | None:
        now = rq.now_ms
        self._last_now_ms = max(self._last_now_ms, now)
        idem = rq.idempotency
        if idem is not None:
            stored = self._get_str(idem.answer_key, now)
            if stored is not None:
                digest, replay = DecisionOutcome.decode(stored)
                return replay if digest == idem.body_digest else None

        hold = rq.hold
        # A post naming a ping: only a live hold is its own (decide.lua's reading).
        own: Hold | None = None
        ping_status = ""
        if hold is not None and hold.mode is HoldMode.COMMIT:
            record = self._get_str(hold.record_key, now)
            if record is None:
                ping_status = PingStatus.UNKNOWN
            elif record == PING_RECORD_USED:
                ping_status = PingStatus.USED
            elif _record_ends_ms(record) > now:
                own = hold
            else:
                ping_status = PingStatus.EXPIRED
                if not rq.dry_run:
                    self._unhold(rq.caps, hold.ping_id, now)

        def answer(decision: Decision, reasons: tuple[str, ...]) -> DecisionOutcome:
            nonlocal ping_status
            if own is not None:
                accepted = decision is Decision.ACCEPTED
                ping_status = PingStatus.COMMITTED if accepted else PingStatus.RELEASED
                if not rq.dry_run:
                    self._unhold(rq.caps, own.ping_id, now)
                    record = self._get(own.record_key, now)
                    if record is not None:
                        record.value = PING_RECORD_USED  # its TTL kept, as SET … KEEPTTL
            outcome = DecisionOutcome(decision, reasons, rq.lead_id, ping_status=ping_status)
            if idem is not None and not rq.dry_run:
                self._set(idem.answer_key, outcome.encode(idem.body_digest), now, idem.ttl_ms)
            return outcome

        if forced is not None:
            return answer(Decision(forced.decision), forced.reasons)

        duplicates = self._duplicates(rq.dedup, now)
        if duplicates:
            return answer(Decision.DUPLICATE, tuple(duplicates))
        capped = self._capped(rq.caps, now, own.ping_id if own is not None else None)
        if capped:
            return answer(Decision.CAPPED, tuple(capped))
        if hold is not None and hold.mode is HoldMode.TAKE:
            ping_status = PingStatus.HELD
            if not rq.dry_run:
                self._hold_all(rq.caps, hold, now)
                self._set(hold.record_key, hold.record, now, max(1, hold.record_ttl_ms))
            return answer(Decision.ACCEPTED, ())
        if rq.dry_run:
            return answer(Decision.ACCEPTED, ())

        for check in rq.dedup:
            if check.remember:
                self._mark(check, now)
        for cap in rq.caps:
            self._count(cap, rq.lead_id, now)
        if rq.index is not None:
            self._index(rq.index, now)
        self.streams.setdefault(rq.stream_key, []).append(StreamEntry(rq.lead_id, now, rq.payload))
        return answer(Decision.ACCEPTED, ())

    def _duplicates(self, checks: Sequence[DedupCheck], now: int) -> list[str]:
        """The scopes in which a mark is younger than its window (each once), in the current
        layout's generations and, for a check that has one (``legacy_head``), the legacy
        layout's that may still hold a mark younger than the window."""
        duplicates: list[str] = []
        until = self.legacy_seen_until_ms
        for check in checks:
            if check.reason in duplicates:
                continue
            hashes = [
                (key, (check.generation - g) * storage_keys.SEEN_GENERATION_MS)
                for g, key in enumerate(check.keys)
            ]
            if check.legacy_head:
                hashes += [
                    (
                        storage_keys.legacy_seen(check.legacy_head, g, check.legacy_bucket),
                        g * storage_keys.LEGACY_SEEN_GENERATION_MS,
                    )
                    for g in storage_keys.legacy_seen_generations(now, check.window_ms, until)
                ]
            for key, began_ms in hashes:
                offset = self._zset(key, now).get(check.field)
                if offset is not None and now - (began_ms + offset) < check.window_ms:
                    duplicates.append(check.reason)
                    break
        return duplicates

    def _capped(self, caps: Sequence[CapCheck], now: int, own_ping: str | None = None) -> list[str]:
        """The caps already at their limit, live holds counted as used (but ``own_ping``'s,
        the hold of the post being decided)."""
        capped: list[str] = []
        for cap in caps:
            if cap.rolling:
                log = self._zset(cap.key, now)
                used = sum(1 for at in log.values() if at > now - cap.span_ms)
            else:
                used = int(self._get_str(cap.key, now) or "0")
            if cap.holds:
                holds = self._zset(cap.holds, now)
                used += sum(1 for ends in holds.values() if ends > now)
                if own_ping is not None and holds.get(own_ping, 0) > now:
                    used -= 1
            if used >= cap.limit:
                capped.append(cap.reason)
        return capped

    def _count(self, cap: CapCheck, lead_id: str, now: int) -> None:
        """Count one lead in a cap: INCR of a calendar counter, ZADD to a rolling log."""
        if cap.rolling:
            log = {m: at for m, at in self._zset(cap.key, now).items() if at > now - cap.span_ms}
            log[lead_id] = now
            self._set(cap.key, log, now, cap.span_ms)
            return
        entry = self._get(cap.key, now)
        if entry is None:
            self._set(cap.key, "1", now, cap.span_ms)
        else:
            entry.value = str(int(str(entry.value)) + 1)

    def _hold(self, key: str, hold: Hold, now: int) -> None:
        """A ping's place in one cap's holds, as ``decide.lua`` takes it: ended holds removed,
        the set's expiry only ever moved later."""
        entry = self._get(key, now)
        held = entry.value if entry is not None and isinstance(entry.value, dict) else {}
        live = {ping: ends for ping, ends in held.items() if ends > now}
        live[hold.ping_id] = hold.expires_ms
        expires_at_ms = max(hold.expires_ms, now + 1)
        if entry is None:
            self._set(key, live, now, expires_at_ms - now)
            return
        entry.value = live
        entry.expires_at_ms = max(entry.expires_at_ms, expires_at_ms)

    def _hold_all(self, caps: Sequence[CapCheck], hold: Hold, now: int) -> None:
        """A ping's place on each cap that has holds."""
        for cap in caps:
            if cap.holds:
                self._hold(cap.holds, hold, now)

    def _unhold(self, caps: Sequence[CapCheck], ping_id: str, now: int) -> None:
        """ZREM of a ping from each cap's holds."""
        self._unhold_keys([cap.holds for cap in caps if cap.holds], ping_id, now)

    def _unhold_keys(self, holds: Sequence[str], ping_id: str, now: int) -> None:
        """ZREM of a ping from each of these holds sets; a set left empty goes, as in Redis."""
        for key in holds:
            held = self._zset(key, now)
            if held.pop(ping_id, None) is not None and not held:
                self._data.pop(key, None)

    def _mark(self, check: DedupCheck, now: int) -> int:
        """HSET of the mark in the current generation's hash, whose expiry only moves later
        (as ``decide.lua`` does); the value written."""
        key = check.keys[0]
        began_ms = check.generation * storage_keys.SEEN_GENERATION_MS
        expires_at_ms = began_ms + storage_keys.SEEN_GENERATION_MS + check.retention_ms
        written = now - began_ms
        entry = self._get(key, now)
        if entry is None or not isinstance(entry.value, dict):
            self._set(key, {check.field: written}, now, expires_at_ms - now)
            return written
        entry.value[check.field] = written
        entry.expires_at_ms = max(entry.expires_at_ms, expires_at_ms)
        return written

    def _index(self, index: LeadIndexEntry, now: int) -> None:
        """The lead index entry, as ``decide.lua`` writes it."""
        code = str(index.code)
        routes = self._get(index.routes, now)
        if routes is None or not isinstance(routes.value, dict):
            routes = self._data[index.routes] = _Entry({}, now)
        registry: dict[str, Any] = routes.value  # type: ignore[assignment]
        registered = code not in registry
        held = registry.setdefault(code, index.route)
        span = storage_keys.LEAD_INDEX_OFFSETS
        offset = now - index.id_ms + span // 2
        value: int | str = f"{index.route}|{now}"
        if held == index.route and 0 <= offset < span:
            value = index.code * span + offset
        bucket = self._get(index.key, now)
        if bucket is None or not isinstance(bucket.value, dict):
            bucket = self._data[index.key] = _Entry({}, now)
        entries: dict[str, Any] = bucket.value  # type: ignore[assignment]
        entries[index.field] = value
        expires_at_ms = max(index.generation_ends_ms, now) + index.feedback_window_ms
        raised = bucket.expires_at_ms < expires_at_ms
        bucket.expires_at_ms = max(bucket.expires_at_ms, expires_at_ms)
        if raised or registered:
            routes.expires_at_ms = max(routes.expires_at_ms, expires_at_ms)

    async def release(self, items: Sequence[tuple[PersonReservation, ReserveResult]]) -> None:
        for r, reserved in items:
            self._release(r, reserved)

    def _release(self, r: PersonReservation, reserved: ReserveResult) -> None:
        now = r.now_ms
        members = self._zset(r.pressure_key, now)
        members.pop(f"{r.unit}|{r.lead_id}", None)
        if r.network_window_ms <= 0:
            return
        current = self._get_str(r.seen_key, now)
        if current is None or not current.endswith(f"|{r.lead_id}"):
            return
        if reserved.previous:
            left = int(reserved.previous.split("|", 1)[0]) + r.network_retention_ms - now
            if left > 0:
                self._set(r.seen_key, reserved.previous, now, left)
                return
        del self._data[r.seen_key]

    # -- sale: a distributed campaign's steps, mirroring campaign_reserve/close.lua -----------

    async def claim_sales(self, items: Sequence[SaleClaim], now_ms: int) -> list[SaleClaimed]:
        claimed: list[SaleClaimed] = []
        for item in items:
            claim = self._claim(item.ref, now_ms)
            lease = self._get(item.lease_key, now_ms)
            leased = lease is None
            if leased:
                self._set(item.lease_key, item.ref.lead_id or "-", now_ms, item.lease_ms)
                lease = self._get(item.lease_key, now_ms)
            left = lease.expires_at_ms - now_ms if lease is not None else 0
            claimed.append(SaleClaimed(claim, leased, left))
        return claimed

    async def open_sales(self, items: Sequence[SaleOpening]) -> list[SaleOpened]:
        opened: list[SaleOpened] = []
        for item in items:
            now = item.reservation.now_ms if item.reservation else self._last_now_ms
            sold = tuple(self._sold(probe, now) for probe in item.probes)
            person = tuple(self._reserve(r) for r in item.person)
            refused = None
            if item.reservation is not None:
                refused = self._campaign_reserve(item.reservation)
            opened.append(SaleOpened(sold, person, refused))
        return opened

    def _sold(self, probe: LeadProbe, now: int) -> bool:
        """``open_sales``' probe: the lead id in the buyer's packed index, or, for an id made
        before the layout (``legacy_seen_until_ms``), the previous layout's key."""
        if probe.index.field in self._zset(probe.index.key, now):
            return True
        legacy = probe.index.id_ms < self.legacy_seen_until_ms
        return legacy and self._get(probe.legacy_index, now) is not None

    def _campaign_reserve(self, rv: CampaignReservation) -> ForcedOutcome | None:
        now = rv.now_ms
        self._last_now_ms = max(self._last_now_ms, now)
        if not rv.dry_run and self._get(rv.key, now) is not None:
            return None  # held by this lead id already
        hold = rv.hold
        commit = hold is not None and hold.mode is HoldMode.COMMIT
        refused = self._campaign_refusal(rv, now, hold.ping_id if commit and hold else None)
        if commit and hold is not None and not rv.dry_run:
            # A post naming a ping uses its hold up whatever the answer (campaign_reserve.lua).
            self._unhold(rv.caps, hold.ping_id, now)
        if refused is not None:
            return refused
        if hold is not None and hold.mode is HoldMode.TAKE:
            if not rv.dry_run:
                self._hold_all(rv.caps, hold, now)
            return None
        if rv.dry_run:
            return None
        taken: list[str] = []
        for check in rv.dedup:
            if check.remember:
                hashed = self._zset(check.keys[0], now)
                previous = hashed.get(check.field)
                written = self._mark(check, now)
                shown = "-" if previous is None else str(previous)
                taken.append(f"m {check.keys[0]} {check.field} {written} {shown}")
        for cap in rv.caps:
            self._count(cap, rv.lead_id, now)
            taken.append(f"{'z' if cap.rolling else 'c'} {cap.key}")
        self._set(rv.key, "\n".join(taken), now, rv.ttl_ms)
        return None

    def _campaign_refusal(
        self, rv: CampaignReservation, now: int, own_ping: str | None
    ) -> ForcedOutcome | None:
        duplicates = self._duplicates(rv.dedup, now)
        if duplicates:
            return ForcedOutcome(Decision.DUPLICATE.value, tuple(duplicates))
        capped = self._capped(rv.caps, now, own_ping)
        if capped:
            return ForcedOutcome(Decision.CAPPED.value, tuple(capped))
        return None

    async def close_sales(self, items: Sequence[SaleClosing]) -> None:
        for item in items:
            rv = item.reservation
            now = rv.now_ms if rv is not None else self._last_now_ms
            self._unhold_keys(item.unhold, item.ping_id, now)
            if item.answer_key:
                self._set(item.answer_key, item.answer, now, item.answer_ttl_ms)
            if rv is not None:
                taken = self._get_str(rv.key, now)
                if taken is not None and not item.sold:
                    self._give_back(taken, rv.lead_id, now)
                self._data.pop(rv.key, None)
            for r, reserved in item.releases:
                self._release(r, reserved)

    def _give_back(self, taken: str, lead_id: str, now: int) -> None:
        """campaign_close.lua's release, in the reverse order of the writes."""
        for line in reversed(taken.split("\n")):
            kind, key, *rest = line.split(" ")
            if kind == "m":
                field_name, written, previous = rest
                hashed = self._zset(key, now)
                if hashed.get(field_name) == int(written):
                    if previous != "-":
                        hashed[field_name] = int(previous)
                        continue
                    del hashed[field_name]
                    if not hashed:  # as Redis drops an emptied hash
                        self._data.pop(key, None)
            elif kind == "c":
                entry = self._get(key, now)
                if entry is not None:
                    entry.value = str(int(str(entry.value)) - 1)
            elif kind == "z":
                self._zset(key, now).pop(lead_id, None)

    async def read_pings(self, keys: Sequence[str], now_ms: int) -> list[str | None]:
        return [self._get_str(key, now_ms) for key in keys]

    async def suppression_change(self, list_id: str, keys: Sequence[str], *, add: bool) -> int:
        changed = 0
        for key in keys:
            lists = self.suppressed.setdefault(key, set())
            if (list_id in lists) != add:
                changed += 1
                if add:
                    lists.add(list_id)
                else:
                    lists.discard(list_id)
            if not lists:
                del self.suppressed[key]
        self._list_sizes[list_id] = self._list_sizes.get(list_id, 0) + (
            changed if add else -changed
        )
        return changed

    async def suppression_size(self, list_id: str) -> int:
        return self._list_sizes.get(list_id, 0)

    async def erase_keys(self, keys: Sequence[str]) -> int:
        """Delete these keys (erasure); how many were held, expired or not."""
        return sum(self._data.pop(key, None) is not None for key in keys)

    async def erase_fields(self, fields: Sequence[tuple[str, str]]) -> int:
        """HDEL of each ``(hash key, field)`` (erasure); how many were held. A hash left empty
        goes, as in Redis."""
        deleted = 0
        for key, name in fields:
            entry = self._data.get(key)
            if entry is not None and isinstance(entry.value, dict):
                deleted += entry.value.pop(name, None) is not None
                if not entry.value:
                    del self._data[key]
        return deleted

    async def suppression_lists(self, keys: Sequence[str]) -> set[str]:
        return {list_id for key in keys for list_id in self.suppressed.get(key, ())}

    async def read_for_metrics(self, commands: Sequence[Command]) -> list[Any]:
        """The read-only commands the caps status sends (``GET``, ``ZCOUNT``, ``ZRANGEBYSCORE
        … WITHSCORES LIMIT 0 1``, ``PING``), answered as Redis would."""
        now = self._last_now_ms or int(time.time() * 1000)
        answers: list[Any] = []
        for command in commands:
            name = str(command[0]).upper()
            if name == "PING":
                answers.append(True)
            elif name == "GET":
                answers.append(self._get_str(str(command[1]), now))
            elif name in ("ZCOUNT", "ZRANGEBYSCORE"):
                low = str(command[2])
                floor = int(low.lstrip("(")) + (1 if low.startswith("(") else 0)
                log = sorted(
                    (at, m) for m, at in self._zset(str(command[1]), now).items() if at >= floor
                )
                if name == "ZCOUNT":
                    answers.append(len(log))
                else:
                    answers.append([log[0][1], log[0][0]] if log else [])
            else:
                raise ValueError(f"the embedded store does not answer {name}")
        return answers

    async def record_feedback(
        self, items: Sequence[FeedbackRef], now_ms: int
    ) -> list[tuple[str, str]]:
        """Mirrors ``feedback.lua``: ``(result, index value)`` per item."""
        return [self._feedback(item, now_ms) for item in items]

    def _feedback(self, item: FeedbackRef, now: int) -> tuple[str, str]:
        index = self._index_value(item, now)
        if index is None:
            return ("unknown", "")
        return_until, feedback_until = index.rsplit("|", 2)[1:]
        if now > int(feedback_until):
            return ("unknown", "")
        if item.status == "returned" and now > int(return_until):
            return ("window", index)
        entry = self._get(item.statuses, now)
        statuses = entry.value if entry is not None and isinstance(entry.value, dict) else {}
        if item.status in statuses:
            return ("repeat", index)
        statuses[item.status] = now
        self._set(item.statuses, statuses, now, int(feedback_until) - now + 1)
        return ("ok", index)

    def _index_value(self, item: FeedbackRef, now: int) -> str | None:
        """The lead's index record in the old text form, from either layout."""
        value = self._zset(item.index.key, now).get(item.index.field)
        if value is None:
            return self._get_str(item.legacy_index, now)
        route: str | None
        if isinstance(value, str):
            route, _, accepted_text = value.rpartition("|")
            accepted = int(accepted_text)
        else:
            span = storage_keys.LEAD_INDEX_OFFSETS
            route = self._zset(item.index.routes, now).get(str(value // span))
            accepted = item.index.id_ms + value % span - span // 2
        if route is None:
            return None
        who, return_ms, feedback_ms = route.rsplit("|", 2)
        return f"{who}|{accepted}|{accepted + int(return_ms)}|{accepted + int(feedback_ms)}"

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def ledger_add(self, increments: Mapping[str, Mapping[str, int]]) -> None:
        """Mirrors ``RedisStore.ledger_add``. The TTL runs from the later of the day's start
        and the newest request time this store has seen (it has no clock of its own)."""
        for day, fields in increments.items():
            key = storage_keys.quality_day(day)
            now = max(self._last_now_ms, _day_start_ms(day))
            entry = self._get(key, now)
            counts = entry.value if entry is not None and isinstance(entry.value, dict) else {}
            for name, n in fields.items():
                if n:
                    counts[name] = counts.get(name, 0) + n
            self._data[key] = _Entry(counts, now + storage_keys.QUALITY_TTL_MS)

    async def ledger_read(self, days: Sequence[str]) -> dict[str, dict[str, int]]:
        """Mirrors ``RedisStore.ledger_read``."""
        found: dict[str, dict[str, int]] = {}
        for day in days:
            entry = self._get(storage_keys.quality_day(day), self._last_now_ms)
            found[day] = dict(entry.value) if entry and isinstance(entry.value, dict) else {}
        return found


def _record_ends_ms(record: str) -> int:
    """When the hold of a ping's record ends: its leading digits, as ``decide.lua`` reads
    them (0 when there are none)."""
    digits = _LEADING_DIGITS.match(record)
    return int(digits.group()) if digits is not None else 0


_LEADING_DIGITS = re.compile(r"[0-9]+")


def _day_start_ms(day: str) -> int:
    return int(datetime.fromisoformat(day).replace(tzinfo=UTC).timestamp() * 1000)
