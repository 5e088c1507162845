"""Auto-pipelining: concurrent callers share Redis round trips, a lone caller never waits.

Like ioredis' and Lettuce's auto-pipelining. A few dedicated connections each carry one batch
at a time; whatever queues up while they are busy goes out together in the next batch, as one
write. A request arriving on an idle connection is written at once, so pipelining adds no
latency at low load and amortises the per-call cost at high load. The queue (not a connection
pool) absorbs a thousand concurrent publishers: they wait their turn, they never get a
"too many connections" error.

Replies are read in order and each caller is answered as soon as its own replies are in.
Redis error replies are returned in place (never raised), so one bad command does not fail its
neighbours. A transport failure fails the batch with ``StoreUnavailable``, marked
``outcome_unknown`` once the batch may have reached Redis; nothing is retried here, because a
command whose reply was lost may have run.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from hiredis import pack_command
from redis.asyncio import ConnectionPool
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from gateway.errors import StoreUnavailable
from gateway.storage.base import Command

Connect = Callable[[], AbstractConnection]
#: Told about every round trip: its duration in seconds (write to last reply) and, when it
#: failed, the kind of failure (``timeout`` or ``connection``), else None. For metrics.
RoundTripHook = Callable[[float, str | None], None]

_TRANSPORT_ERRORS = (RedisConnectionError, RedisTimeoutError, OSError, asyncio.TimeoutError)


@dataclass(slots=True)
class _Pending:
    commands: Sequence[Command]
    future: asyncio.Future[list[Any]]


class AutoPipeline:
    def __init__(
        self,
        connect: Connect,
        *,
        connections: int = 4,
        max_batch_commands: int = 2048,
        on_round_trip: RoundTripHook | None = None,
    ) -> None:
        self._idle: list[AbstractConnection] = [connect() for _ in range(connections)]
        self._all = list(self._idle)
        self._queue: deque[_Pending] = deque()
        self._max_batch = max_batch_commands
        self._tasks: set[asyncio.Task[None]] = set()
        self.round_trips = 0  # observable by tests and metrics
        self._on_round_trip = on_round_trip

    async def execute(self, commands: Sequence[Command]) -> list[Any]:
        """Send ``commands`` in one round trip (possibly shared); one result per command,
        a ``ResponseError`` in place of a command Redis refused."""
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(commands, future))
        if self._idle:
            task = asyncio.get_running_loop().create_task(self._drain(self._idle.pop()))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return await future

    def _take_batch(self) -> list[_Pending]:
        batch = [self._queue.popleft()]
        size = len(batch[0].commands)
        while self._queue and size + len(self._queue[0].commands) <= self._max_batch:
            item = self._queue.popleft()
            size += len(item.commands)
            batch.append(item)
        return batch

    async def _drain(self, conn: AbstractConnection) -> None:
        try:
            while self._queue:
                await self._round_trip(conn, self._take_batch())
        finally:
            self._idle.append(conn)

    async def _round_trip(self, conn: AbstractConnection, batch: list[_Pending]) -> None:
        answered = 0
        sending = False
        try:
            # hiredis packs in C what redis-py packs in Python: about 7 times cheaper for a
            # decision script's ~100 arguments, the same bytes.
            # (hiredis' stub types the argument as a 1-tuple; any tuple is packed.)
            packed = b"".join(
                [pack_command(c) for item in batch for c in item.commands]  # type: ignore[arg-type]
            )
            self.round_trips += 1
            if not conn.is_connected:
                await conn.connect()  # type: ignore[no-untyped-call]
            # From here on, bytes may reach Redis: a failure no longer proves nothing ran.
            sending = True
            started = time.perf_counter()
            await conn.send_packed_command(packed, check_health=False)
            # One deadline for the replies, not one per reply (a timer each: about three
            # quarters of the CPU of reading a reply). The first reply gets the socket timeout,
            # as before; the deadline is then pushed back as replies come in, whenever a tenth
            # of the timeout has passed since it was last set, so a Redis that stops midway
            # is given up on after 0.9 to 1 times the timeout of silence.
            limit_s = conn.socket_timeout
            loop = asyncio.get_running_loop()
            async with asyncio.timeout(limit_s) as deadline:
                for item in batch:
                    results: list[Any] = []
                    for _ in item.commands:
                        try:
                            results.append(await conn.read_response(timeout=math.inf))
                        except ResponseError as refused:
                            results.append(refused)
                    if not item.future.done():
                        item.future.set_result(results)
                    answered += 1
                    if limit_s is not None and (deadline.when() or 0) - loop.time() < 0.9 * limit_s:
                        deadline.reschedule(loop.time() + limit_s)
            if self._on_round_trip is not None:
                self._on_round_trip(time.perf_counter() - started, None)
        except BaseException as exc:
            # The connection's state is unknown: drop it (it reconnects on next use) and fail
            # every caller of the batch not yet answered.
            await conn.disconnect(nowait=True)
            pending = [item.future for item in batch[answered:] if not item.future.done()]
            if not isinstance(exc, Exception):  # cancelled (shutdown): callers are cancelled too
                for future in pending:
                    future.cancel()
                raise
            error: Exception = exc
            if isinstance(exc, _TRANSPORT_ERRORS):
                error = StoreUnavailable(f"redis: {type(exc).__name__}", outcome_unknown=sending)
                if self._on_round_trip is not None:
                    timed_out = isinstance(exc, RedisTimeoutError | asyncio.TimeoutError)
                    self._on_round_trip(0.0, "timeout" if timed_out else "connection")
            for future in pending:
                future.set_exception(error)

    async def broadcast(self, commands: Sequence[Command]) -> list[list[Any]]:
        """``commands`` on every primary: here, the one Redis (see ``storage.cluster``)."""
        return [await self.execute(commands)]

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for conn in self._all:
            await conn.disconnect()


def connection_factory(url: str, socket_timeout_s: float, *, decode_responses: bool) -> Connect:
    """Connections to the Redis at ``url`` for an ``AutoPipeline``. The redis-py pool only
    parses the URL (host, port, socket path, password, TLS, db) and makes connection objects;
    the auto-pipeline owns the connections it makes. redis-py never retries: a script whose
    reply was lost may have run, and running it again is the caller's decision, not a
    library's."""
    pool = ConnectionPool.from_url(
        url,
        decode_responses=decode_responses,
        socket_timeout=socket_timeout_s,
        socket_connect_timeout=socket_timeout_s,
        retry=Retry(NoBackoff(), 0),
    )

    def connect() -> AbstractConnection:
        conn: AbstractConnection = pool.connection_class(**pool.connection_kwargs)
        return conn

    return connect
