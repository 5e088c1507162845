"""The Redis store: the decision contract as Lua scripts over auto-pipelined connections.

Redis errors are translated here and nowhere else: transport failures become
``StoreUnavailable``, anything else Redis refuses becomes ``StoreError``.
"""

from __future__ import annotations

import asyncio
import logging
import re
import struct
import time
from collections.abc import Mapping, Sequence
from typing import Any

from redis.asyncio.connection import AbstractConnection
from redis.exceptions import (
    ClusterDownError,
    NoScriptError,
    OutOfMemoryError,
    ReadOnlyError,
    ResponseError,
    TryAgainError,
)

from gateway.decision.model import (
    CampaignReservation,
    ClaimResult,
    ClaimStatus,
    Decision,
    DecisionOutcome,
    DecisionRequest,
    HoldMode,
    IdempotencyRef,
    LeadIndexEntry,
    PersonReservation,
)
from gateway.errors import StoreError, StoreUnavailable
from gateway.storage import keys as storage_keys
from gateway.storage import scripts
from gateway.storage.base import (
    Command,
    FeedbackRef,
    ForcedOutcome,
    ReserveResult,
    SaleClaim,
    SaleClaimed,
    SaleClosing,
    SaleOpened,
    SaleOpening,
    Store,
)
from gateway.storage.cluster import open_pipeline
from gateway.storage.deadline import deadline_for
from gateway.storage.pipeline import AutoPipeline, RoundTripHook, Submitted
from gateway.types import LeadId

LOG = logging.getLogger("leadgate.redis")


class RedisStore(Store):
    """Every capability of ``storage.base.Store`` over Redis or a Redis Cluster."""

    name = "redis"

    def __init__(
        self,
        url: str,
        *,
        connections: int = 4,
        socket_timeout_s: float = 2.0,
        allow_eviction: bool = False,
        on_round_trip: RoundTripHook | None = None,
    ) -> None:
        self._pipe = open_pipeline(
            url,
            socket_timeout_s,
            decode_responses=True,
            connections=connections,
            on_round_trip=on_round_trip,
            on_connect=self._check_connection,
        )
        self._allow_eviction = allow_eviction
        self._timeout_s = socket_timeout_s
        #: Why the last connection opened was refused (None: it was not).
        self._refusal: str | None = None
        #: Legacy dedup marks and lead index keys (``keys.LEGACY_SEEN_*``,
        #: ``keys.legacy_lead_index``) can only have been written before this (epoch ms):
        #: learnt from the server (``_learn_layout``) once a new connection passed
        #: ``_check_connection``, before the next decision.
        self.legacy_seen_until_ms = 0
        #: Connections opened and accepted so far (``_check_connection``), and how many of
        #: them the last learning of the layout covered: when they differ, the server behind
        #: a new connection may be another one (a restart, a failover) and it is learnt again.
        self._connections = 0
        self._layout_covers = -1
        self._layout_lock = asyncio.Lock()
        #: Per advertiser (its stream key), the call of single leads still open to more and
        #: its place in the queue (``_decide_shared``).
        self._calls: dict[str, tuple[_DecideCall, Submitted]] = {}
        self._last_warning_s = -60.0
        #: Why a server met was refused as too old (``MIN_REDIS_VERSION``), else None; kept
        #: once set (one old primary of a cluster is enough): no setting overrides it, and
        #: ``App.open_store`` refuses to start on it.
        self.too_old: str | None = None

    @property
    def round_trips(self) -> int:
        return self._pipe.round_trips

    async def _run(self, commands: Sequence[Command]) -> list[Any]:
        """Run commands in one (shared) round trip; reload scripts if Redis lost them (a
        restart, a failover), then re-send only the refused commands: NOSCRIPT means they did
        not run; up to ``scripts.RELOADS`` times. The dedup layout is learnt first when a new
        connection was opened since it last was (``_layout``)."""
        if self._connections != self._layout_covers:
            await self._layout()
        results = await self._pipe.execute(commands)
        for result in results:
            if isinstance(result, ResponseError):  # NoScriptError is one
                break
        else:
            return results  # the common case: every command ran
        for _ in range(scripts.RELOADS):
            missing = [i for i, r in enumerate(results) if isinstance(r, NoScriptError)]
            if not missing:
                break
            await self.load_scripts()
            again = await self._pipe.execute([commands[i] for i in missing])
            for i, result in zip(missing, again, strict=True):
                results[i] = result
        for result in results:
            if isinstance(result, ResponseError):
                raise refusal(result)
        return results

    async def _check_connection(self, conn: AbstractConnection) -> None:
        """Refuse to decide on a Redis older than 7.0 (``version_problem``) or one that may
        evict, on every connection before it carries anything else: a gateway started before
        its Redis, or whose Redis was replaced behind it (a failover, a restart with another
        config), must not use such a one silently. Raises ``StoreUnavailable`` (nothing was
        sent: the callers get a 503).

        A connection that passes has the dedup layout learnt again before the next command
        (``_layout``): never before this check, so nothing is learnt from a refused Redis."""
        await conn.send_command("CONFIG", "GET", "maxmemory-policy")
        await conn.send_command("INFO", "server")
        replies: list[Any] = []
        for _ in range(2):
            try:
                replies.append(await conn.read_response())
            except ResponseError as refused:
                replies.append(refused)
        reply, info = replies
        too_old = version_problem(info)
        if too_old is not None:
            self.too_old = self._refusal = too_old
            self._warn(too_old)
            raise StoreUnavailable(too_old)
        problem = policy_problem(reply)
        self._refusal = None if self._allow_eviction else problem
        if problem is None or self._allow_eviction:
            self._connections += 1
            return
        self._warn(problem)
        raise StoreUnavailable("redis settings put decisions at risk: " + problem)

    def _warn(self, problem: str) -> None:
        """``problem`` logged, at most once a minute (every new connection meets it)."""
        now_s = time.monotonic()
        if now_s - self._last_warning_s >= 60:
            self._last_warning_s = now_s
            LOG.error(problem)

    async def _layout(self) -> int:
        """``legacy_seen_until_ms``, learnt again first when a connection was opened since it
        was last learnt. The learning's own commands travel on connections that passed
        ``_check_connection``: an evicting Redis is refused before anything is read from it.
        Concurrent callers wait for one learning (none decides with what a previous server
        said, nor with nothing at start), each within its own request's deadline (started
        here if this is its first store call), so a hung Redis does not queue them here one
        behind the other."""
        if self._connections != self._layout_covers:
            deadline = deadline_for(asyncio.get_running_loop().time(), self._timeout_s)
            try:
                async with asyncio.timeout_at(deadline), self._layout_lock:
                    if self._connections != self._layout_covers:
                        await self._learn_layout()
            except TimeoutError:
                raise StoreUnavailable(
                    "redis: no answer within the deadline", deadline_s=deadline
                ) from None
        return self.legacy_seen_until_ms

    async def _learn_layout(self) -> None:
        """When this Redis first served this dedup layout (set now if never): the legacy
        layout's marks were written before then, or during the rolling upgrade after it. An
        empty Redis (every primary) holds no legacy mark: its time is 0, nothing legacy is
        ever read."""
        sizes = await self._pipe.broadcast([("DBSIZE",)])
        empty = all(isinstance(n, int) and n == 0 for (n,) in sizes)
        now_ms = 0 if empty else int(time.time() * 1000)
        key, ttl_ms = storage_keys.SEEN_LAYOUT_SINCE, storage_keys.SEEN_LAYOUT_TTL_MS
        held, _ = await self._pipe.execute(
            [("SET", key, now_ms, "NX", "GET", "PX", ttl_ms), ("PEXPIRE", key, ttl_ms)]
        )
        if isinstance(held, ResponseError):
            raise refusal(held)
        since_ms = int(held) if held is not None else now_ms
        self.legacy_seen_until_ms = since_ms + storage_keys.LEGACY_SEEN_GRACE_MS
        # The connections opened until now are covered, the learning's own among them (it
        # answered: the server it reached is the one they reach; a learning that met a server
        # going away fails, and runs again).
        self._layout_covers = self._connections

    async def load_scripts(self) -> None:
        """Load every script on every primary (a cluster's too)."""
        loads = [("SCRIPT", "LOAD", s.source) for s in scripts.ALL]
        for results in await self._pipe.broadcast(loads):
            for script, sha in zip(scripts.ALL, results, strict=True):
                if isinstance(sha, ResponseError) or sha != script.sha:
                    raise StoreError(f"could not load script {script.name}: {sha}")

    async def server_checks(self) -> list[str]:
        """Problems with the server's settings that put decisions at risk, as log lines."""
        # Every primary of a cluster: one evicting shard loses its advertisers' memory.
        try:
            replies = await self._pipe.broadcast([("CONFIG", "GET", "maxmemory-policy")])
        except StoreUnavailable:
            # The connection itself was refused for these settings (``_check_connection``).
            if self._refusal is not None:
                return [self._refusal]
            raise
        problems = [policy_problem(reply) for (reply,) in replies]
        return list(dict.fromkeys(p for p in problems if p is not None))

    async def claim(self, refs: Sequence[IdempotencyRef], now_ms: int) -> list[ClaimResult]:
        commands: list[Command] = []
        for ref in refs:
            claim = f"{ref.body_digest}|{ref.lead_id or ''}"
            commands.append(("SET", ref.claim_key, claim, "NX", "GET", "PX", ref.ttl_ms))
            commands.append(("GET", ref.answer_key))
        results = await self._run(commands)
        return [_claimed(ref, results[2 * i], results[2 * i + 1]) for i, ref in enumerate(refs)]

    async def reserve(self, items: Sequence[PersonReservation]) -> list[ReserveResult]:
        commands = [_reserve_command(r) for r in items]
        return [ReserveResult(reason, previous) for reason, previous in await self._run(commands)]

    async def decide(
        self, items: Sequence[tuple[DecisionRequest, ForcedOutcome | None]]
    ) -> list[DecisionOutcome | None]:
        # The layout learnt again only after a new connection (``_layout``, not awaited
        # otherwise: a coroutine less for every call).
        if self._connections != self._layout_covers:
            await self._layout()
        until_ms = self.legacy_seen_until_ms
        if len(items) == 1:  # a single post: without the grouping below
            rq, forced = items[0]
            parts = _decide_parts(rq, forced, until_ms)
            pipe = self._pipe
            if isinstance(pipe, AutoPipeline):
                reply = await self._decide_shared(pipe, rq.stream_key, parts)
            else:  # a cluster's pipeline routes and redirects each command itself
                ((reply,),) = await self._run([_decide_command([parts])])
            return [_outcome(rq, reply)]
        # One script call per advertiser (its leads in their order), at most
        # DECIDE_LEADS_PER_CALL leads each: a batch costs a few commands, not one per lead.
        groups: dict[str, list[int]] = {}
        for i, (rq, _) in enumerate(items):
            groups.setdefault(rq.stream_key, []).append(i)
        calls = [
            indexes[start : start + DECIDE_LEADS_PER_CALL]
            for indexes in groups.values()
            for start in range(0, len(indexes), DECIDE_LEADS_PER_CALL)
        ]
        commands = [
            _decide_command([_decide_parts(*items[i], until_ms) for i in call]) for call in calls
        ]
        replies: list[Any] = [None] * len(items)
        for call, group_replies in zip(calls, await self._run(commands), strict=True):
            for i, reply in zip(call, group_replies, strict=True):
                replies[i] = reply
        return [_outcome(rq, reply) for (rq, _), reply in zip(items, replies, strict=True)]

    async def _decide_shared(self, pipe: AutoPipeline, advertiser: str, parts: _DecideParts) -> Any:
        """A single lead's reply from a ``decide.lua`` call shared with the advertiser's other
        single leads that come while it waits for a connection (``_DecideCall``): under load,
        one call of many leads instead of one each, which costs Redis a script call a lead
        less and the gateway a command's packing and reply. Nothing waits to be shared: the
        call is queued at once, as a lone lead's own command was, and leads join it until its
        round trip is written. A Redis that lost the script (``NOSCRIPT``: nothing ran) has
        the lead sent again on its own, through ``_run``, which loads it."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        held = self._calls.get(advertiser)
        if held is None or not held[0].open or len(held[0].futures) >= DECIDE_LEADS_PER_CALL:
            call = _DecideCall()
            held = self._calls[advertiser] = (call, pipe.submit([call], call))
        call, submitted = held
        call.leads.append(parts)
        call.futures.append(future)
        reply = await pipe.ride(submitted, future)
        if isinstance(reply, ResponseError):
            if not isinstance(reply, NoScriptError):
                raise refusal(reply)
            ((reply,),) = await self._run([_decide_command([parts])])
        return reply

    async def release(self, items: Sequence[tuple[PersonReservation, ReserveResult]]) -> None:
        await self._run([_release_command(r, reserved) for r, reserved in items])

    async def read_pings(self, keys: Sequence[str], now_ms: int) -> list[str | None]:
        """GET of each ping record, in one round trip (``now_ms``: Redis expires them by
        its own clock)."""
        if not keys:
            return []
        return [None if v is None else str(v) for v in await self._run([("GET", k) for k in keys])]

    async def suppression_change(self, list_id: str, keys: Sequence[str], *, add: bool) -> int:
        sha = scripts.SUPPRESS_CHANGE.sha
        results = await self._run([("EVALSHA", sha, 1, key, list_id, int(add)) for key in keys])
        changed = sum(int(r) for r in results)
        if changed:
            # The size lives in the list's own slot, so it is kept beside, not with, the
            # members: a crash between the two round trips leaves it off by one batch.
            by = changed if add else -changed
            await self._run([("INCRBY", storage_keys.suppression_size(list_id), by)])
        return changed

    async def suppression_size(self, list_id: str) -> int:
        (size,) = await self._run([("GET", storage_keys.suppression_size(list_id))])
        return max(0, int(size or 0))

    async def erase_keys(self, keys: Sequence[str]) -> int:
        """UNLINK each key (one command a key: on Redis Cluster they live in many slots), in
        one round trip; how many existed."""
        if not keys:
            return 0
        return sum(int(n) for n in await self._run([("UNLINK", key) for key in keys]))

    async def erase_fields(self, fields: Sequence[tuple[str, str]]) -> int:
        """HDEL each ``(hash key, field)`` in one round trip; how many existed."""
        if not fields:
            return 0
        return sum(int(n) for n in await self._run([("HDEL", k, f) for k, f in fields]))

    async def suppression_lists(self, keys: Sequence[str]) -> set[str]:
        held = await self._run([("GET", key) for key in keys]) if keys else []
        return {list_id for value in held if value for list_id in value.split(",") if list_id}

    async def record_feedback(
        self, items: Sequence[FeedbackRef], now_ms: int
    ) -> list[tuple[str, str]]:
        """``feedback.lua`` for each item, in one round trip: ``(result, index value)`` each."""
        sha = scripts.FEEDBACK.sha
        commands: list[Command] = [
            (
                "EVALSHA", sha, 4, i.index.key, i.index.routes, i.legacy_index, i.statuses,
                now_ms, i.status, i.index.field, i.index.id_ms,
            )
            for i in items
        ]  # fmt: skip
        return [(str(result), str(index)) for result, index in await self._run(commands)]

    async def ping(self) -> None:
        await self._run([("PING",)])

    async def connect_all(self) -> None:
        """Open every connection to Redis now and learn the dedup layout once for them all
        (``App.open_store``, before serving): opened lazily under a first burst of traffic,
        each new connection would have every request in flight wait for a learning of its
        own. Raises ``StoreUnavailable``."""
        await self._pipe.connect_all()
        await self._layout()

    async def read_for_metrics(self, commands: Sequence[Command]) -> list[Any]:
        """Read-only commands for the metrics scrape (cap counters), in one round trip;
        a Redis error reply stays in place of its result."""
        return await self._pipe.execute(commands)

    async def close(self) -> None:
        await self._pipe.close()

    async def ledger_add(self, increments: Mapping[str, Mapping[str, int]]) -> None:
        """Add ``day -> field -> n`` to the quality ledger (``keys.quality_day``) in one round
        trip, refreshing each day's TTL. Not idempotent: a batch whose reply was lost and is
        sent again counts twice."""
        commands: list[Command] = []
        for day, fields in increments.items():
            key = storage_keys.quality_day(day)
            commands += [("HINCRBY", key, name, n) for name, n in fields.items() if n]
            commands.append(("PEXPIRE", key, storage_keys.QUALITY_TTL_MS))
        if commands:
            await self._run(commands)

    async def ledger_read(self, days: Sequence[str]) -> dict[str, dict[str, int]]:
        """The ledger's ``field -> count`` of each day (``{}`` for a day without data), in
        one round trip."""
        if not days:
            return {}
        replies = await self._run([("HGETALL", storage_keys.quality_day(d)) for d in days])
        return {day: _hash_counts(reply) for day, reply in zip(days, replies, strict=True)}

    # --- sale: a distributed campaign's steps (decision.waterfall) -------------------------

    async def claim_sales(self, items: Sequence[SaleClaim], now_ms: int) -> list[SaleClaimed]:
        commands: list[Command] = []
        for item in items:
            ref = item.ref
            commands += [
                ("SET", ref.claim_key, f"{ref.body_digest}|{ref.lead_id or ''}", "NX", "GET",
                 "PX", ref.ttl_ms),
                ("GET", ref.answer_key),
                ("SET", item.lease_key, ref.lead_id or "-", "NX", "PX", item.lease_ms),
                ("PTTL", item.lease_key),
            ]  # fmt: skip
        results = await self._run(commands)
        claimed: list[SaleClaimed] = []
        for i, item in enumerate(items):
            held, stored, leased, left = results[4 * i : 4 * i + 4]
            claim = _claimed(item.ref, held, stored)
            claimed.append(SaleClaimed(claim, leased is not None, max(0, int(left))))
        return claimed

    async def open_sales(self, items: Sequence[SaleOpening]) -> list[SaleOpened]:
        until_ms = await self._layout() if any(item.probes for item in items) else 0
        commands: list[Command] = []
        for item in items:
            for probe in item.probes:
                commands.append(("HEXISTS", probe.index.key, probe.index.field))
                if probe.index.id_ms < until_ms:
                    commands.append(("EXISTS", probe.legacy_index))
            commands += [_reserve_command(r) for r in item.person]
            if item.reservation is not None:
                commands.append(_campaign_reserve_command(item.reservation))
        results = iter(await self._run(commands))
        opened: list[SaleOpened] = []
        for item in items:
            found: list[bool] = []
            for probe in item.probes:
                packed = bool(next(results))
                legacy = probe.index.id_ms < until_ms and bool(next(results))
                found.append(packed or legacy)
            sold = tuple(found)
            person = tuple(ReserveResult(*next(results)) for _ in item.person)
            refused = None
            if item.reservation is not None:
                decision, reasons = next(results)
                if decision:
                    refused = ForcedOutcome(decision, tuple(reasons.split(",")))
            opened.append(SaleOpened(sold, person, refused))
        return opened

    async def close_sales(self, items: Sequence[SaleClosing]) -> None:
        commands: list[Command] = []
        for item in items:
            if item.reservation is not None or item.answer_key or item.unhold:
                commands.append(
                    (
                        "EVALSHA", scripts.CAMPAIGN_CLOSE.sha, 2 + len(item.unhold),
                        item.reservation.key if item.reservation is not None else item.anchor,
                        item.answer_key or item.anchor,
                        *item.unhold,
                        int(item.sold), item.answer_ttl_ms if item.answer_key else 0,
                        item.answer,
                        item.reservation.lead_id if item.reservation is not None else "",
                        *((item.ping_id,) if item.unhold else ()),
                    )
                )  # fmt: skip
            commands += [_release_command(r, reserved) for r, reserved in item.releases]
        if commands:
            await self._run(commands)


def _outcome(rq: DecisionRequest, reply: Any) -> DecisionOutcome | None:
    """What ``decide.lua`` answered for ``rq``: its outcome, a replayed one, or None for a
    conflict."""
    status = reply[0]
    if status == "ok":
        # The script joins reason codes (never empty ones) with commas, "" for none.
        reasons = tuple(reply[2].split(",")) if reply[2] else ()
        ping_status = reply[3] if len(reply) > 3 else ""
        return DecisionOutcome(_DECISIONS[reply[1]], reasons, rq.lead_id, ping_status=ping_status)
    if status == "replay":
        return DecisionOutcome.decode(reply[1])[1]
    return None


#: One lead's KEYS and ARGV for ``decide.lua`` (``_decide_parts``).
_DecideParts = tuple[list[str | int], list[str | bytes | int]]


_FUTURE_DONE = asyncio.Future.done


class _DecideCall:
    """Single leads of one advertiser decided in one ``decide.lua`` call, in the order they
    joined it (as a batch's leads are: each as if alone, the next one seeing what the one
    before committed). The auto-pipeline's ``Deferred`` (packed when its round trip is
    written, ``freeze``) and the ``Answer`` that hands each lead its own reply.

    A lead whose caller stopped waiting before the write (its deadline passed, its request
    was cancelled) is left out: it is never sent, as a caller's own command is not. Once
    packed, failed or dropped, the call keeps no lead's arguments (they hold the lead's
    record)."""

    __slots__ = ("answered", "futures", "leads", "open")

    def __init__(self) -> None:
        self.leads: list[_DecideParts] = []
        self.futures: list[asyncio.Future[Any]] = []
        #: Open to more leads: until packed or answered.
        self.open = True
        self.answered = False

    def freeze(self) -> Command:
        self.open = False
        leads, futures = self.leads, self.futures
        if any(map(_FUTURE_DONE, futures)):
            kept = [i for i, future in enumerate(futures) if not future.done()]
            leads, self.futures = [leads[i] for i in kept], [futures[i] for i in kept]
        self.leads = []
        return _decide_command(leads)

    def done(self) -> bool:
        return self.answered

    def set_result(self, result: list[Any], /) -> None:
        self.open, self.answered = False, True
        (replies,) = result
        if isinstance(replies, ResponseError):
            # Refused as a whole (NOSCRIPT: nothing ran): each lead's reply, for its caller
            # to act on (``RedisStore._decide_shared``); a result, not an exception, whose
            # traceback would tie the call and its callers' frames in a reference cycle.
            replies = [replies] * len(self.futures)
        for future, reply in zip(self.futures, replies, strict=True):
            if not future.done():
                future.set_result(reply)

    def set_exception(self, exception: BaseException, /) -> None:
        self.open, self.answered = False, True
        self.leads = []  # failed or dropped before it was packed: kept no longer either
        for future in self.futures:
            if not future.done():
                future.set_exception(exception)

    def cancel(self) -> bool:
        self.open, self.answered = False, True
        self.leads = []
        for future in self.futures:
            future.cancel()
        return True


def _claimed(ref: IdempotencyRef, held: str | None, stored: str | None) -> ClaimResult:
    """What a claim (``SET NX GET`` of the claim, ``GET`` of the answer) found."""
    held_digest, _, held_lead = (held or "").partition("|")
    if held is not None and held_digest != ref.body_digest:
        return ClaimResult(ClaimStatus.CONFLICT)
    if stored is not None:
        digest, answer = DecisionOutcome.decode(stored)
        if digest == ref.body_digest:
            return ClaimResult(ClaimStatus.REPLAY, answer)
        return ClaimResult(ClaimStatus.CONFLICT)
    return ClaimResult(ClaimStatus.NEW, lead_id=LeadId(held_lead) if held_lead else None)


def _reserve_command(r: PersonReservation) -> Command:
    return (
        "EVALSHA", scripts.PERSON_RESERVE.sha, 3, r.seen_key, r.pressure_key,
        r.suppressed_key or r.seen_key, r.now_ms, r.lead_id, int(r.dry_run),
        r.network_window_ms, r.network_retention_ms, r.pressure_limit,
        r.pressure_window_ms, r.unit, len(r.suppress),
        *(part for pair in r.suppress for part in pair),
    )  # fmt: skip


def _release_command(r: PersonReservation, reserved: ReserveResult) -> Command:
    return (
        "EVALSHA", scripts.PERSON_RELEASE.sha, 2, r.seen_key, r.pressure_key,
        r.now_ms, r.lead_id, r.unit, reserved.previous,
        r.network_retention_ms if r.network_window_ms > 0 else 0,
    )  # fmt: skip


def _campaign_reserve_command(rv: CampaignReservation) -> Command:
    keys: list[str] = [rv.key]
    args: list[str | int] = [
        rv.now_ms, rv.lead_id, int(rv.dry_run), rv.ttl_ms, len(rv.dedup), len(rv.caps),
        storage_keys.SEEN_GENERATION_MS, rv.dedup[0].generation if rv.dedup else 0,
    ]  # fmt: skip
    for check in rv.dedup:
        keys += check.keys
        args += (check.reason, check.window_ms, check.retention_ms, int(check.remember),
                 check.field, len(check.keys))  # fmt: skip
    for cap in rv.caps:
        keys.append(cap.key)
        args += (cap.reason, cap.limit, int(cap.rolling), cap.span_ms)
    hold = rv.hold
    held = [j for j, cap in enumerate(rv.caps, 1) if cap.holds]
    if held or hold is not None:
        # As decide.lua's holds: nothing of this for a campaign without pings.
        args[2] = f"{int(rv.dry_run)}{_HOLD_LETTERS[hold.mode] if hold is not None else 'p'}"
        keys += [rv.caps[j - 1].holds for j in held]
        args += held
        if hold is not None:
            args += (hold.ping_id, hold.expires_ms, max(1, hold.expires_ms - rv.now_ms))
        args.append(len(held))
    return ("EVALSHA", scripts.CAMPAIGN_RESERVE.sha, len(keys), *keys, *args)


_GENERATION_MS = storage_keys.SEEN_GENERATION_MS
_LEGACY_GENERATION_MS = storage_keys.LEGACY_SEEN_GENERATION_MS

#: Leads decided by one call of decide.lua at most: a call runs alone in Redis (nothing else
#: is served meanwhile), about 3-4 ms for 100 bench leads on this project's machines.
DECIDE_LEADS_PER_CALL = 100


def _decide_command(leads: Sequence[_DecideParts]) -> Command:
    """One ``decide.lua`` call deciding ``leads`` (their ``_decide_parts``) in order."""
    keys: list[str | int] = []
    args: list[str | bytes | int] = [len(leads)]
    for lead_keys, lead_args in leads:
        keys += lead_keys
        args += (len(lead_keys), len(lead_args), *lead_args)
    return ("EVALSHA", scripts.DECIDE.sha, len(keys), *keys, *args)


def _pack_numbers(numbers: Sequence[int]) -> bytes:
    """``decide.lua``'s NUM: little-endian doubles, exact for integers below 2^53 (epoch ms,
    TTLs and counts are far below)."""
    return struct.pack(f"<{len(numbers)}d", *numbers)


def _decide_parts(
    rq: DecisionRequest, forced: ForcedOutcome | None, legacy_until_ms: int
) -> _DecideParts:
    """One lead's KEYS and ARGV for ``decide.lua``. Built for every lead: the common one (no
    holds, no Idempotency-Key, no legacy marks) takes the fewest steps (``python -m
    bench.intake_count`` counts them)."""
    idem = rq.idempotency
    keys: list[str | int] = [
        idem.answer_key if idem is not None else rq.slot_anchor,
        rq.stream_key,
    ]
    now_ms = rq.now_ms
    dedup, caps = rq.dedup, rq.caps
    generation = dedup[0].generation if dedup else 0
    # The lead's numbers go packed in one argument (decide.lua's NUM): Redis then makes no
    # Lua string of each, nor parses it back with strtod.
    numbers: list[int] = [
        len(dedup),
        len(caps),
        _GENERATION_MS,
        generation,
        _LEGACY_GENERATION_MS,
        min(now_ms, legacy_until_ms) // _LEGACY_GENERATION_MS,
        0,  # n_strings, below
    ]
    # The checks' reasons and marks, each once, numbered from 1 (decide.lua's strings).
    strings: dict[str, int] = {}
    for check in dedup:
        keys += check.keys
        window_ms = check.window_ms
        n_legacy = 0
        if check.legacy_head and now_ms - window_ms < legacy_until_ms:
            legacy = storage_keys.legacy_seen_generations(now_ms, window_ms, legacy_until_ms)
            keys += [
                storage_keys.legacy_seen(check.legacy_head, g, check.legacy_bucket) for g in legacy
            ]
            n_legacy = len(legacy)
        numbers += (
            window_ms,
            (check.generation + 1) * _GENERATION_MS + check.retention_ms - now_ms,
            len(check.keys),
            n_legacy,
            check.remember,
            strings.setdefault(check.reason, len(strings) + 1),
            strings.setdefault(check.field, len(strings) + 1),
        )
    numbers[6] = len(strings)
    # The arguments after NUM (the strings, the caps', index's and holds'), in order.
    args: list[str | bytes | int] = [*strings]
    held: list[int] = []
    for j, cap in enumerate(caps, 1):
        keys.append(cap.key)
        numbers += (cap.limit, cap.span_ms, cap.rolling)
        args.append(cap.reason)
        if cap.holds:
            held.append(j)
    index = rq.index
    if index is not None:
        keys += (index.key, index.routes)
        ttl_ms, index_args = index_arguments(index, now_ms)
        numbers.append(ttl_ms)
        args += index_args
    hold = rq.hold
    mode: str | int = int(rq.dry_run)
    if held or hold is not None:
        mode = f"{mode}{_HOLD_LETTERS[hold.mode] if hold is not None else 'p'}"
        keys += [caps[j - 1].holds for j in held]
        args += held
        if hold is not None:
            keys.append(hold.record_key)
            args += (
                hold.ping_id,
                hold.expires_ms,
                max(1, hold.expires_ms - now_ms),
                hold.record,
                max(1, hold.record_ttl_ms),
            )
        args.append(len(held))
    return keys, [
        now_ms,
        rq.lead_id,
        mode,
        idem.ttl_ms if idem is not None else 0,
        idem.body_digest if idem is not None else "",
        f"{forced.decision}|{','.join(forced.reasons)}" if forced is not None else "",
        rq.payload,
        now_ms - generation * _GENERATION_MS,
        _pack_numbers(numbers),
        *args,
    ]


def index_arguments(index: LeadIndexEntry, now_ms: int) -> tuple[int, tuple[str | int, ...]]:
    """What ``decide.lua`` is told of a lead's index entry: the TTL its hash needs (ms, one of
    NUM), and its arguments: the field, the packed value ("" when the offset does not fit),
    the route's code and text."""
    span = storage_keys.LEAD_INDEX_OFFSETS
    offset = now_ms - index.id_ms + span // 2
    ttl_ms = max(index.generation_ends_ms, now_ms) + index.feedback_window_ms - now_ms
    packed: str | int = index.code * span + offset if 0 <= offset < span else ""
    return ttl_ms, (index.field, packed, index.code, index.route)


#: A decision by the word ``decide.lua`` answers (a dict lookup: ``Decision(word)`` goes
#: through the enum's metaclass, ten times dearer, for every lead).
_DECISIONS = {decision.value: decision for decision in Decision}

#: ``decide.lua``'s letter of each hold mode (its ARGV[3]; "p": a plain post counting holds).
_HOLD_LETTERS = {HoldMode.TAKE: "t", HoldMode.COMMIT: "c"}


#: Refusals that mean "not now", with nothing run: a script running too long (``BUSY``), a
#: server demoted to a replica by a failover (``READONLY``, at a script's first write, before
#: which it only reads), a replica cut from its primary, a cluster changing hands, a Redis full
#: until keys expire (``OOM``, likewise at the first write). redis-py names most by class; BUSY
#: only by its message.
_NOT_NOW = (ReadOnlyError, ClusterDownError, TryAgainError, OutOfMemoryError)


def refusal(refused: ResponseError) -> StoreError:
    """What a command Redis refused means for its caller: ``StoreUnavailable`` (503, retry
    later: the lead was not accepted) for a refusal that says "not now" (``_NOT_NOW``),
    ``StoreError`` (500) for any other, which a retry will not fix."""
    busy = str(refused).startswith("BUSY ")
    if busy or isinstance(refused, _NOT_NOW):
        name = "BUSY" if busy else type(refused).__name__
        return StoreUnavailable(f"redis refused a command for now ({name})")
    return StoreError(f"redis refused a command: {refused}")


#: The oldest Redis leadgate runs on: ``SET`` with both ``NX`` and ``GET`` (idempotency claims,
#: the dedup layout's start) is Redis 7.0's. An older one answered every such command with a
#: syntax error, so every keyed lead failed; it is refused on connecting, by name.
MIN_REDIS_VERSION = (7, 0)
_REDIS_VERSION = re.compile(r"^redis_version:(\S+)", re.MULTILINE)


def parse_version(text: str) -> tuple[int, ...]:
    """A Redis version's numbers (``"7.0.15"`` -> ``(7, 0, 15)``)."""
    return tuple(int(part) for part in text.split(".") if part.isdigit())


def version_problem(info: Any) -> str | None:
    """Why the server whose ``INFO server`` reply is ``info`` is too old, as a log line; None
    when it is recent enough, or says no version (``INFO`` refused by an ACL, a server that
    names none): nothing is refused on a guess."""
    if isinstance(info, bytes):
        info = info.decode(errors="replace")
    found = _REDIS_VERSION.search(info) if isinstance(info, str) else None
    if found is None:
        return None
    version = parse_version(found.group(1))
    if len(version) < 2 or version >= MIN_REDIS_VERSION:
        return None
    wanted = ".".join(map(str, MIN_REDIS_VERSION))
    return (
        f"redis {found.group(1)} is older than {wanted}, which leadgate needs "
        f"(SET with NX and GET): upgrade Redis"
    )


def policy_problem(reply: Any) -> str | None:
    """What is wrong with a ``CONFIG GET maxmemory-policy`` reply, as a log line; None if
    the policy is ``noeviction``."""
    if isinstance(reply, ResponseError):
        # Some managed services refuse CONFIG: say so, do not guess.
        return f"could not read maxmemory-policy ({reply}); make it noeviction"
    # RESP3 answers a map, RESP2 a flat [name, value] list.
    policy = reply.get("maxmemory-policy") if isinstance(reply, dict) else reply[1]
    if policy == "noeviction":
        return None
    return (
        f"maxmemory-policy is {policy}: Redis may evict dedup memory, caps and queued leads "
        "under memory pressure; set it to noeviction"
    )


def _hash_counts(reply: Any) -> dict[str, int]:
    """An HGETALL reply of counters: a map in RESP3, a flat ``[name, value, ...]`` in RESP2."""
    pairs = reply.items() if isinstance(reply, dict) else zip(reply[::2], reply[1::2], strict=True)
    return {str(name): int(n) for name, n in pairs}
