"""The delivery queue on Redis: consumer groups over each advertiser's streams, a delayed set
for retries, reclaim of dead workers' leads, dead letters (contract in ``queue_base``).

Every key of one advertiser's queue carries the advertiser's hash tag (``storage.keys``), so
each script and each multi-stream read stays in one slot (Redis Cluster). The worker uses its
own connections (a blocking read holds one), apart from the decision store's auto-pipeline.
Redis errors are translated here: unreachable -> ``StoreUnavailable``, refused -> ``StoreError``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

import orjson
import redis.asyncio
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from gateway.delivery.model import Delivery
from gateway.delivery.policy import EXPIRED, INVALID
from gateway.delivery.queue_base import (
    GROUP,
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
    invalid_entry,
    new_entry,
    pack,
    packed_record,
    replayed,
    unpack,
)
from gateway.errors import StoreError, StoreUnavailable
from gateway.storage import keys, scripts
from gateway.storage.base import Command
from gateway.storage.cluster import is_cluster_url, node_url, open_pipeline
from gateway.storage.redis import policy_problem, version_problem
from gateway.types import AdvertiserId, LeadId

#: Entries taken over per XAUTOCLAIM call, and per reclaim pass of one stream.
_RECLAIM_BATCH = 100
_RECLAIM_PASS = 1000
#: Entries acknowledged per ``ack.lua`` call at most (a script holds Redis while it runs).
_ACK_BATCH = 500
#: A blocking read is given this much more than its BLOCK time before the socket times out.
_SOCKET_MARGIN_S = 10.0


SETTLE = scripts.load("settle", "gateway.delivery")
ACK = scripts.load("ack", "gateway.delivery")
PROMOTE = scripts.load("promote", "gateway.delivery")
REPLAY = scripts.load("replay", "gateway.delivery")
ERASE = scripts.load("erase", "gateway.delivery")
TRIM = scripts.load("trim", "gateway.delivery")
EXPIRE = scripts.load("expire", "gateway.delivery")
SCRIPTS = (SETTLE, ACK, PROMOTE, REPLAY, ERASE, TRIM, EXPIRE)

#: Stream entries (XRANGE COUNT) and hash fields (HSCAN COUNT) an erasure reads at a time.
_ERASE_CHUNK = 1000
#: An erasure repeats its pass while the last one found something (a lead may have moved
#: from one place to another under it), at most this many times.
_ERASE_PASSES = 4


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


@contextlib.asynccontextmanager
async def _translated() -> AsyncIterator[None]:
    try:
        yield
    except (RedisConnectionError, RedisTimeoutError, OSError) as error:
        raise StoreUnavailable(f"redis unreachable: {error}") from error
    except RedisError as error:
        raise StoreError(f"redis refused a delivery-queue command: {error}") from error


def _seed(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or 6379


def _streams(advertiser: AdvertiserId) -> dict[Source, str]:
    return {Source.NEW: keys.deliveries(advertiser), Source.DUE: keys.delivery_retries(advertiser)}


def _every_key(advertiser: AdvertiserId) -> list[str]:
    """Every key of an advertiser's queue, in the order expire.lua and erase.lua take them:
    the new and due streams, dead letters, delayed, waiting, retrying."""
    return [
        keys.deliveries(advertiser),
        keys.delivery_retries(advertiser),
        keys.delivery_dead(advertiser),
        keys.delivery_delayed(advertiser),
        keys.delivery_waiting(advertiser),
        keys.delivery_retrying(advertiser),
    ]


class RedisQueue:
    name = "redis"

    def __init__(
        self,
        url: str,
        *,
        dead_letter_retention_s: float = 30 * 86_400.0,
        socket_timeout_s: float = 5.0,
    ) -> None:
        # On a cluster, redis-py's cluster client routes each command (one advertiser's keys
        # share a slot, so a two-stream read is one node's); the scripts go through the
        # slot-routed auto-pipeline.
        self._client: Any
        if is_cluster_url(url):
            self._client = RedisCluster.from_url(
                node_url(url, _seed(url)),
                socket_timeout=socket_timeout_s + _SOCKET_MARGIN_S,
                socket_connect_timeout=socket_timeout_s,
            )
        else:
            self._client = redis.asyncio.Redis.from_url(
                url,
                socket_timeout=socket_timeout_s + _SOCKET_MARGIN_S,
                socket_connect_timeout=socket_timeout_s,
            )
        # Settling (one script per delivery) goes through shared round trips: many
        # deliveries finishing together cost one write and one read.
        self._pipe = open_pipeline(url, socket_timeout_s, decode_responses=False, connections=2)
        self._retention_ms = int(dead_letter_retention_s * 1000)
        self._prepared: set[AdvertiserId] = set()
        #: Deliveries finished while the previous acknowledgement was on its way, by stream:
        #: acknowledged together as soon as it is back (see ``delivered``).
        self._acks: dict[tuple[AdvertiserId, Source], list[tuple[Claimed, asyncio.Future[bool]]]]
        self._acks = {}
        #: The task sending them (None when nothing waits to be acknowledged).
        self._acker: asyncio.Task[None] | None = None

    async def _eval(self, script: scripts.Script, keys_: Sequence[str], args: Sequence[Any]) -> Any:
        """Run one script through the auto-pipeline; load the scripts if Redis lost them
        (NOSCRIPT means it did not run), up to ``scripts.RELOADS`` times."""
        command: Command = ("EVALSHA", script.sha, len(keys_), *keys_, *args)
        (result,) = await self._pipe.execute([command])
        for _ in range(scripts.RELOADS):
            if not isinstance(result, NoScriptError):
                break
            loads = [("SCRIPT", "LOAD", s.source) for s in SCRIPTS]
            for loaded in await self._pipe.broadcast(loads):
                for answer in loaded:
                    if isinstance(answer, ResponseError):
                        raise StoreError(f"could not load a delivery script: {answer}")
            (result,) = await self._pipe.execute([command])
        if isinstance(result, ResponseError):
            raise StoreError(f"redis refused a delivery-queue script ({script.name}): {result}")
        return result

    async def prepare(self, advertisers: Sequence[AdvertiserId]) -> None:
        async with _translated():
            for advertiser in advertisers:
                for stream in _streams(advertiser).values():
                    try:
                        # From id 0: leads accepted before any worker existed are read too.
                        await self._client.xgroup_create(stream, GROUP, id="0", mkstream=True)
                    except ResponseError as error:
                        if "BUSYGROUP" not in str(error):
                            raise
                self._prepared.add(advertiser)

    async def read(
        self, advertiser: AdvertiserId, consumer: str, count: int, block_ms: int
    ) -> list[Claimed]:
        streams = _streams(advertiser)
        try:
            async with _translated():
                reply: Any = await self._client.xreadgroup(
                    GROUP,
                    consumer,
                    {streams[Source.NEW]: ">", streams[Source.DUE]: ">"},
                    count=count,
                    # BLOCK 0 would wait forever: 0 here means do not wait.
                    block=block_ms if block_ms > 0 else None,
                )
        except StoreError as error:
            if "NOGROUP" not in str(error):
                raise
            # The stream was deleted (by hand, or an erasure emptied it): recreate the group.
            await self.prepare([advertiser])
            return []
        claimed: list[Claimed] = []
        for name, entries in reply or []:
            source = Source.NEW if _text(name) == streams[Source.NEW] else Source.DUE
            claimed.extend(_claimed(advertiser, source, _text(i), f) for i, f in entries if f)
        return claimed

    async def _settle_one(self, claimed: Claimed, args: list[Any]) -> bool:
        advertiser = claimed.delivery.advertiser
        stream = _streams(advertiser)[claimed.source]
        keys_ = [
            stream,
            keys.delivery_delayed(advertiser),
            keys.delivery_waiting(advertiser),
            keys.delivery_retrying(advertiser),
            keys.delivery_dead(advertiser),
        ]
        head = [GROUP, claimed.entry_id, claimed.delivery.lead_id]
        return bool(await self._eval(SETTLE, keys_, head + args))

    async def delivered(self, claimed: Claimed) -> bool:
        """Acknowledged in batches: at most one ``ack.lua`` round trip of this queue is under
        way at a time, and the deliveries that finish meanwhile go together in the next one
        (one call per stream). Each caller is answered when its own batch is back, so a lead
        counts as delivered only once it is acknowledged and deleted; a crash before that
        means a redelivery, with the same lead id."""
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        key = (claimed.delivery.advertiser, claimed.source)
        waiting = self._acks.get(key)
        if waiting is None:
            self._acks[key] = [(claimed, future)]
        else:
            waiting.append((claimed, future))
        if self._acker is None:
            self._acker = asyncio.get_running_loop().create_task(self._ack_loop())
        return await future

    async def _ack_loop(self) -> None:
        """Send what waits to be acknowledged, round trip after round trip, until nothing
        does (started again by the next ``delivered``)."""
        groups: dict[tuple[AdvertiserId, Source], list[tuple[Claimed, asyncio.Future[bool]]]]
        groups = {}
        try:
            while self._acks:
                groups, self._acks = self._acks, {}
                if len(groups) == 1:
                    ((key, items),) = groups.items()
                    await self._ack_group(*key, items)
                else:  # several streams: their calls share one round trip
                    await asyncio.gather(*(self._ack_group(*k, v) for k, v in groups.items()))
        except BaseException:  # cancelled (the loop is closing): so are the callers' waits
            for items in (*groups.values(), *self._acks.values()):
                for _, future in items:
                    future.cancel()
            self._acks = {}
            raise
        finally:
            self._acker = None

    async def _ack_group(
        self,
        advertiser: AdvertiserId,
        source: Source,
        items: list[tuple[Claimed, asyncio.Future[bool]]],
    ) -> None:
        """One ``ack.lua`` call per ``_ACK_BATCH`` entries of one stream; each caller gets its
        entry's answer, or the call's ``StoreError`` (then its lead stays pending)."""
        keys_ = [_streams(advertiser)[source], keys.delivery_retrying(advertiser)]
        for start in range(0, len(items), _ACK_BATCH):
            chunk = items[start : start + _ACK_BATCH]
            args: list[Any] = [GROUP]
            for claimed, _ in chunk:
                args += (claimed.entry_id, claimed.delivery.lead_id)
            try:
                answers = await self._eval(ACK, keys_, args)
            except Exception as error:  # a StoreError, or a bug: never leave a caller waiting
                for _, future in chunk:
                    if not future.done():
                        future.set_exception(error)
                continue
            for (_, future), answer in zip(chunk, answers, strict=True):
                if not future.done():
                    future.set_result(bool(answer))

    async def later(self, claimed: Claimed, due_ms: int, attempt: int, last: LastResponse) -> bool:
        packed = pack(claimed.delivery, attempt, last, claimed.age_from_ms)
        args = ["later", due_ms, claimed.delivery.accepted_at_ms, packed]
        return await self._settle_one(claimed, args)

    async def dead(self, claimed: Claimed, reason: str, last: LastResponse, now_ms: int) -> bool:
        flat: list[Any] = []
        for name, value in dead_fields(claimed, reason, last, now_ms).items():
            flat += (name, value)
        keep_from = f"{max(0, now_ms - self._retention_ms)}-0"
        return await self._settle_one(claimed, ["dead", keep_from, self._retention_ms, *flat])

    async def trim(self, advertiser: AdvertiserId, now_ms: int) -> int:
        keep_from = f"{max(0, now_ms - self._retention_ms)}-0"
        args = [keep_from, now_ms, self._retention_ms]
        return int(await self._eval(TRIM, [keys.delivery_dead(advertiser)], args))

    async def expire(self, advertiser: AdvertiserId, max_age_ms: int, now_ms: int) -> int:
        """Scan the streams and the waiting hash in chunks; each chunk's expired leads move in
        one ``expire.lua``. The new-leads stream is in acceptance order (its ids are the
        decision's time): only the part older than the maximum age is read."""
        cutoff = now_ms - max_age_ms
        moved = 0
        for source, stream in _streams(advertiser).items():
            after: str | None = None
            while True:
                start = "-" if after is None else f"({after}"
                end = f"{cutoff}-0" if source is Source.NEW else "+"
                async with _translated():
                    entries: Any = await self._client.xrange(stream, start, end, count=_ERASE_CHUNK)
                if not entries:
                    break
                after = _text(entries[-1][0])
                doomed: list[Claimed] = []
                for entry_id, fields in entries:
                    claimed = _claimed(advertiser, source, _text(entry_id), fields)
                    if claimed.invalid or now_ms - claimed.age_base_ms > max_age_ms:
                        doomed.append(claimed)
                moved += await self._expire(advertiser, doomed, now_ms)
                if len(entries) < _ERASE_CHUNK:
                    break
        cursor = 0
        while True:
            async with _translated():
                reply: Any = await self._client.hscan(
                    keys.delivery_waiting(advertiser), cursor, count=_ERASE_CHUNK
                )
            cursor = int(reply[0])
            doomed = []
            for lead, packed in reply[1].items():
                try:
                    claimed = unpack(advertiser, "", packed)
                except (ValueError, KeyError, TypeError):  # only this queue writes them
                    delivery = Delivery(LeadId(_text(lead)), advertiser, 0, 1, packed)
                    claimed = Claimed(delivery, Source.DUE, "", invalid=True)
                if claimed.invalid or now_ms - claimed.age_base_ms > max_age_ms:
                    doomed.append(claimed)
            moved += await self._expire(advertiser, doomed, now_ms, waiting=True)
            if cursor == 0:
                return moved

    async def _expire(
        self,
        advertiser: AdvertiserId,
        doomed: Sequence[Claimed],
        now_ms: int,
        *,
        waiting: bool = False,
    ) -> int:
        if not doomed:
            return 0
        args: list[Any] = [
            GROUP,
            f"{max(0, now_ms - self._retention_ms)}-0",
            self._retention_ms,
        ]
        for claimed in doomed:
            place = "waiting" if waiting else claimed.source.value
            args += (place, "" if waiting else claimed.entry_id, claimed.delivery.lead_id)
            reason = INVALID if claimed.invalid else EXPIRED
            for name, value in dead_fields(claimed, reason, claimed.last, now_ms).items():
                args += (name, value)
        return int(await self._eval(EXPIRE, _every_key(advertiser), args))

    async def promote(self, advertiser: AdvertiserId, now_ms: int, limit: int) -> int:
        keys_ = [
            keys.delivery_delayed(advertiser),
            keys.delivery_waiting(advertiser),
            keys.delivery_retries(advertiser),
        ]
        return int(await self._eval(PROMOTE, keys_, [now_ms, limit]))

    async def reclaim(
        self, advertiser: AdvertiserId, consumer: str, min_idle_ms: int, max_deliveries: int
    ) -> Reclaimed:
        taken: list[Claimed] = []
        crashing: list[Claimed] = []
        for source, stream in _streams(advertiser).items():
            entries: list[tuple[str, dict[bytes, bytes]]] = []
            cursor = "0-0"
            async with _translated():
                while len(entries) < _RECLAIM_PASS:
                    claimed_now: Any = await self._client.xautoclaim(
                        stream, GROUP, consumer, min_idle_ms, cursor, count=_RECLAIM_BATCH
                    )
                    cursor = _text(claimed_now[0])
                    entries += [(_text(i), f) for i, f in claimed_now[1] if f]
                    if cursor == "0-0":
                        break
                if not entries:
                    continue
                pending: Any = await self._client.xpending_range(
                    stream, GROUP, entries[0][0], entries[-1][0], len(entries) + 1000, consumer
                )
            counts = {_text(p["message_id"]): int(p["times_delivered"]) for p in pending}
            for entry_id, fields in entries:
                claimed = _claimed(advertiser, source, entry_id, fields, counts.get(entry_id, 1))
                (crashing if claimed.deliveries > max_deliveries else taken).append(claimed)
        return Reclaimed(taken, crashing)

    async def touch(
        self, advertiser: AdvertiserId, consumer: str, claimed: Sequence[Claimed]
    ) -> None:
        streams = _streams(advertiser)
        async with _translated():
            for source, stream in streams.items():
                ids: list[Any] = [c.entry_id for c in claimed if c.source is source]
                if ids:
                    # JUSTID: resets the idle time without counting a delivery.
                    await self._client.xclaim(stream, GROUP, consumer, 0, ids, justid=True)

    async def state(self, advertiser: AdvertiserId) -> QueueState:
        new, due = keys.deliveries(advertiser), keys.delivery_retries(advertiser)
        async with _translated(), self._client.pipeline(transaction=False) as pipe:
            pipe.xlen(new)
            pipe.xlen(due)
            pipe.zcard(keys.delivery_delayed(advertiser))
            pipe.xlen(keys.delivery_dead(advertiser))
            pipe.xrange(new, "-", "+", count=1)
            pipe.zrange(keys.delivery_retrying(advertiser), 0, 0, withscores=True)
            pipe.exists(keys.delivery_disabled(advertiser))
            n_new, n_due, n_delayed, n_dead, first, oldest, disabled = await pipe.execute()
        candidates: list[int] = []
        if first:
            candidates.append(int(first[0][1].get(b"accepted_at_ms", b"0")))
        if oldest:
            candidates.append(int(oldest[0][1]))
        return QueueState(
            depth=int(n_new) + int(n_due) + int(n_delayed),
            oldest_accepted_at_ms=min(candidates) if candidates else None,
            delayed=int(n_delayed),
            dead_letters=int(n_dead),
            disabled=bool(disabled),
        )

    async def dead_letters(
        self,
        advertiser: AdvertiserId,
        since_ms: int = 0,
        limit: int = 1000,
        after: str | None = None,
    ) -> list[DeadLetter]:
        start = f"{max(0, since_ms)}-0"
        if after is not None and entry_key(after) >= entry_key(start):
            start = f"({after}"  # exclusive
        async with _translated():
            entries: Any = await self._client.xrange(
                keys.delivery_dead(advertiser), start, "+", count=limit
            )
        return [dead_letter_from(advertiser, _text(i), f) for i, f in entries if f]

    async def delayed_leads(self, advertiser: AdvertiserId, limit: int = 1000) -> list[Delayed]:
        async with _translated():
            due: Any = await self._client.zrange(
                keys.delivery_delayed(advertiser), 0, limit - 1, withscores=True
            )
            if not due:
                return []
            packed: Any = await self._client.hmget(
                keys.delivery_waiting(advertiser), [lead for lead, _ in due]
            )
        return [
            Delayed(int(score), unpack(advertiser, "", value))
            for (_, score), value in zip(due, packed, strict=True)
            if value is not None
        ]

    async def replay(
        self, advertiser: AdvertiserId, entries: Sequence[DeadLetter], now_ms: int
    ) -> int:
        if not entries:
            return 0
        args: list[Any] = []
        for entry in entries:
            args += (entry.entry_id, entry.lead_id, entry.accepted_at_ms, replayed(entry, now_ms))
        keys_ = [
            keys.delivery_dead(advertiser),
            keys.delivery_retries(advertiser),
            keys.delivery_retrying(advertiser),
        ]
        return int(await self._eval(REPLAY, keys_, args))

    async def erase(self, advertiser: AdvertiserId, matches: Callable[[bytes], bool]) -> Erased:
        """Scan every place in chunks and remove each chunk's finds in one ``erase.lua``.

        Leads move while we scan (a worker settles new -> waiting or dead, the promoter moves
        waiting -> due, a replay dead -> due), so the pass is repeated until one finds
        nothing. Every move into a stream is an XADD, after the entries already there: a
        later pass reads each stream only past the last entry the previous one read, and
        rescans the waiting hash (HSCAN may miss a field added during the scan).
        """
        marks: dict[str, str] = {}
        total = Erased()
        for _ in range(_ERASE_PASSES):
            found = 0
            for place, stream in (
                ("new", keys.deliveries(advertiser)),
                ("due", keys.delivery_retries(advertiser)),
                ("dead", keys.delivery_dead(advertiser)),
            ):
                seen, erased = await self._erase_stream(advertiser, place, stream, marks, matches)
                found, total = found + seen, total + erased
            seen, erased = await self._erase_waiting(advertiser, matches)
            found, total = found + seen, total + erased
            if not found:
                break
        return total

    async def _erase_stream(
        self,
        advertiser: AdvertiserId,
        place: str,
        stream: str,
        marks: dict[str, str],
        matches: Callable[[bytes], bool],
    ) -> tuple[int, Erased]:
        """Scan one stream from past ``marks[stream]`` to its end (and move the mark there):
        how many entries matched, and what removing them erased."""
        found, erased = 0, Erased()
        fetching = asyncio.ensure_future(self._erase_chunk(stream, marks.get(stream)))
        try:
            while True:
                entries = await fetching
                if not entries:
                    return found, erased
                marks[stream] = _text(entries[-1][0])
                more = len(entries) == _ERASE_CHUNK
                if more:
                    # Redis reads and sends the next chunk while we look at this one.
                    fetching = asyncio.ensure_future(self._erase_chunk(stream, marks[stream]))
                    await asyncio.sleep(0)  # let it send its command now
                doomed: list[Any] = []
                for entry_id, fields in entries:
                    if matches(_record_of(place, fields)):
                        doomed += (place, _text(entry_id), _lead_of(place, fields))
                if doomed:
                    found += len(doomed) // 3
                    erased += await self._erase(advertiser, doomed)
                if not more:
                    return found, erased
        finally:
            fetching.cancel()  # only still running when we leave on an error

    async def _erase_chunk(self, stream: str, after: str | None) -> Any:
        """Up to ``_ERASE_CHUNK`` entries of ``stream`` after entry id ``after`` (exclusive)."""
        start = "-" if after is None else f"({after}"
        async with _translated():
            return await self._client.xrange(stream, start, "+", count=_ERASE_CHUNK)

    async def _erase_waiting(
        self, advertiser: AdvertiserId, matches: Callable[[bytes], bool]
    ) -> tuple[int, Erased]:
        """Scan the waiting hash (the delayed leads): how many matched, what removing erased."""
        found, erased = 0, Erased()
        cursor = 0
        while True:
            async with _translated():
                reply: Any = await self._client.hscan(
                    keys.delivery_waiting(advertiser), cursor, count=_ERASE_CHUNK
                )
            cursor, fields = int(reply[0]), reply[1]
            doomed: list[Any] = []
            for lead, packed in fields.items():
                if matches(packed_record(packed)):
                    doomed += ("waiting", "", _text(lead))
            if doomed:
                found += len(doomed) // 3
                erased += await self._erase(advertiser, doomed)
            if cursor == 0:
                return found, erased

    async def _erase(self, advertiser: AdvertiserId, doomed: Sequence[Any]) -> Erased:
        undelivered, dead = await self._eval(ERASE, _every_key(advertiser), [GROUP, *doomed])
        return Erased(int(undelivered), int(dead))

    async def disable(self, advertiser: AdvertiserId, detail: str, now_ms: int) -> None:
        async with _translated():
            await self._client.set(keys.delivery_disabled(advertiser), f"{now_ms}|{detail}")

    async def enable(self, advertiser: AdvertiserId) -> bool:
        async with _translated():
            return bool(await self._client.delete(keys.delivery_disabled(advertiser)))

    async def disabled(self, advertiser: AdvertiserId) -> bool:
        async with _translated():
            return bool(await self._client.exists(keys.delivery_disabled(advertiser)))

    async def server_checks(self) -> tuple[str | None, list[str]]:
        """What the gateway's store refuses, read from every primary: why the server is too
        old (``storage.redis.version_problem``), else None; and its settings' problems
        (``policy_problem``: an evicting Redis drops queued leads), as log lines."""
        async with _translated():
            replies = await self._pipe.broadcast(
                [("CONFIG", "GET", "maxmemory-policy"), ("INFO", "server")]
            )
        too_old: str | None = None
        problems: list[str] = []
        for policy, info in replies:
            too_old = too_old or version_problem(info)
            # This pipeline keeps bytes; a map (RESP3) or a flat list (RESP2) of them.
            if isinstance(policy, dict):
                policy = {_text(k): _text(v) for k, v in policy.items()}
            elif isinstance(policy, list):
                policy = [_text(x) for x in policy]
            problem = policy_problem(policy)
            if problem is not None and problem not in problems:
                problems.append(problem)
        return too_old, problems

    async def ping(self) -> None:
        async with _translated():
            await self._client.ping()

    async def close(self) -> None:
        if self._acker is not None:  # acknowledgements on their way: let them land
            await asyncio.wait([self._acker], timeout=5)
        await self._pipe.close()
        await self._client.aclose()


def _claimed(
    advertiser: AdvertiserId,
    source: Source,
    entry_id: str,
    fields: dict[bytes, bytes],
    deliveries: int = 1,
) -> Claimed:
    try:
        if source is Source.DUE:
            return unpack(advertiser, entry_id, fields[b"p"], deliveries)
        return new_entry(
            advertiser,
            entry_id,
            fields[b"lead_id"].decode(),
            int(fields[b"accepted_at_ms"]),
            fields[b"record"],
            deliveries,
        )
    except (KeyError, ValueError, TypeError):  # orjson.JSONDecodeError is a ValueError
        return invalid_entry(advertiser, source, entry_id, fields.get(b"record", b""))


def _record_of(place: str, fields: dict[bytes, bytes]) -> bytes:
    """What ``matches`` looks at: the record of a new lead or a dead letter, the record packed
    in a due entry's ``p``; for an unreadable entry whatever it holds (maybe ``b""``)."""
    if place == "due":
        return packed_record(fields.get(b"p", b""))
    return fields.get(b"record", b"")


def _lead_of(place: str, fields: dict[bytes, bytes]) -> str:
    """The entry's lead id (``""`` when unreadable): a due one leaves the age index by it."""
    if place != "due":
        return fields.get(b"lead_id", b"").decode("utf-8", "replace")
    try:
        return str(orjson.loads(fields.get(b"p", b""))["lead_id"])
    except (ValueError, KeyError, TypeError):  # orjson.JSONDecodeError is a ValueError
        return ""
