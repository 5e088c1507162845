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

Every caller also has a deadline of its own (``storage.deadline``: its request's, else the
socket timeout from the call): when it passes, the caller gets ``StoreUnavailable`` at once,
whether its commands still wait in the queue behind a Redis that stopped answering (they are
then never sent) or were sent and await their replies. So a frozen Redis costs each request
the socket timeout, not the timeouts of every round trip queued before it plus a reconnect.
A reconnect (handshake included) is bounded by the socket timeout too, and runs the
``on_connect`` check before anything else is sent on the new connection.

Callers may also share one command (``submit`` a ``Deferred``, then ``ride`` it): the store
gathers the single leads of one advertiser that come in while a round trip is under way into
one ``decide.lua`` call, completed by whoever joins before the round trip carrying it is
written, and packed then (``Deferred.freeze``). Each rider keeps its own deadline, as any
caller: one whose deadline passes before the write is left out of the command (never sent),
one whose deadline passes after it is answered ``StoreUnavailable``, outcome unknown.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

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
from gateway.storage.deadline import deadline_for

Connect = Callable[[], AbstractConnection]
#: Told about every round trip: its duration in seconds (write to last reply) and, when it
#: failed, the kind of failure (``timeout`` or ``connection``), else None; and about every
#: caller whose own deadline passed first (``deadline``, 0 seconds). For metrics.
RoundTripHook = Callable[[float, str | None], None]
#: Run on every new connection before anything else is sent on it (a reconnect included);
#: raises ``StoreUnavailable`` to refuse the server (``RedisStore`` checks its settings).
ConnectCheck = Callable[[AbstractConnection], Awaitable[None]]

_TRANSPORT_ERRORS = (RedisConnectionError, RedisTimeoutError, OSError, asyncio.TimeoutError)
#: The event loop's clock resolution (uvloop's is libuv's: a millisecond).
_CLOCK_STEP_S = 0.001
#: Entries the deadline heap may hold before the answered ones are swept out of it.
_HEAP_BOUND = 1024


class Deferred(Protocol):
    """A command still open to other callers while it waits in the queue (``submit``): made
    final when the round trip carrying it is packed, just before it is written."""

    def freeze(self) -> Command: ...


class Answer(Protocol):
    """Who is told a submitted command's outcome: an ``asyncio.Future``, or an object that
    hands each of its riders its part (``done`` once it was told)."""

    def done(self) -> bool: ...

    def set_result(self, result: list[Any], /) -> None: ...

    def set_exception(self, exception: BaseException, /) -> None: ...

    def cancel(self) -> bool: ...


@dataclass(slots=True)
class _Pending:
    commands: Sequence[Command | Deferred]
    future: Answer
    #: Event-loop time after which the caller is answered ``StoreUnavailable`` (for a shared
    #: command, the latest of its riders': ``ride`` moves it later).
    deadline: float
    #: Written to Redis (a failure then leaves the outcome unknown).
    sent: bool = False
    #: A shared command's riders (``ride``): each one's deadline and what it waits on.
    riders: list[tuple[float, asyncio.Future[Any]]] | None = None
    #: The earliest time the deadline heap holds for this entry.
    watched: float = math.inf

    def expire(self) -> None:
        """The caller's deadline passed before its replies were all read."""
        self.expire_riders(self.deadline)
        if not self.future.done():
            self.future.set_exception(self._missed(self.deadline))

    def expire_riders(self, due: float) -> float:
        """A shared command's riders whose own deadline is not after ``due`` answered as any
        caller would be; the earliest deadline of those still waiting (``inf``: none)."""
        following = math.inf
        for deadline, future in self.riders or ():
            if future.done():
                continue
            if deadline <= due:
                future.set_exception(self._missed(deadline))
            elif deadline < following:
                following = deadline
        return following

    def _missed(self, deadline: float) -> StoreUnavailable:
        return StoreUnavailable(
            "redis: no answer within the deadline", outcome_unknown=self.sent, deadline_s=deadline
        )


#: What ``submit`` hands back: the queued command(s), for riders (``ride``).
Submitted = _Pending


class AutoPipeline:
    def __init__(
        self,
        connect: Connect,
        *,
        connections: int = 4,
        max_batch_commands: int = 2048,
        on_round_trip: RoundTripHook | None = None,
        timeout_s: float | None = None,
        on_connect: ConnectCheck | None = None,
    ) -> None:
        self._idle: list[AbstractConnection] = [connect() for _ in range(connections)]
        self._all = list(self._idle)
        self._queue: deque[_Pending] = deque()
        self._max_batch = max_batch_commands
        self._tasks: set[asyncio.Task[None]] = set()
        self.round_trips = 0  # observable by tests and metrics
        self._on_round_trip = on_round_trip
        # A caller's deadline without a request's: the connections' socket timeout.
        given = self._all[0].socket_timeout if self._all else None
        self._timeout_s = timeout_s if timeout_s is not None else (given or 2.0)
        # The socket timeout bounds each round trip here, the write and the replies under
        # one deadline (``_round_trip``), not in redis-py: there it would wrap every write in
        # ``asyncio.wait_for``, a task and a timer per round trip. A reconnect's handshake is
        # bounded by ``_connect``.
        self._round_trip_s = given
        for conn in self._all:
            conn.socket_timeout = None
        self._on_connect = on_connect
        #: Every caller not yet answered, by deadline (with a tie-breaking number): one timer
        #: watches the earliest (``_watch``) instead of a timer per call, which cost about as
        #: much as the rest of ``execute`` (1.5-2.4 µs for a timer made and cancelled under
        #: uvloop). Callers answered are dropped from the top as new ones come in: in order
        #: of arrival, which is nearly the order of their deadlines, so the heap holds about
        #: the callers in flight.
        self._deadlines: list[tuple[float, int, _Pending]] = []
        self._numbers = itertools.count()
        self._heap_bound = _HEAP_BOUND
        #: The watch and the deadline it is set for (uvloop gives a past deadline's callback a
        #: plain ``Handle``, which has no ``when()``).
        self._watch: asyncio.Handle | None = None
        self._watch_at = math.inf

    @property
    def timeout_s(self) -> float:
        """How long a caller waits at most (from its request's first store call)."""
        return self._timeout_s

    async def execute(self, commands: Sequence[Command]) -> list[Any]:
        """Send ``commands`` in one round trip (possibly shared); one result per command,
        a ``ResponseError`` in place of a command Redis refused. Raises ``StoreUnavailable``
        on a transport failure or once the caller's deadline has passed."""
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        self.submit(commands, future)
        try:
            return await future
        except StoreUnavailable as failed:
            self._missed(failed)
            raise

    def submit(self, commands: Sequence[Command | Deferred], answer: Answer) -> Submitted:
        """``execute`` without waiting: ``commands`` queued (under the caller's deadline),
        ``answer`` told their results or the failure ``execute`` would raise. A ``Deferred``
        stays open to riders (``ride``) until its round trip is packed."""
        loop = asyncio.get_running_loop()
        pending = _Pending(commands, answer, deadline_for(loop.time(), self._timeout_s))
        self._watch_deadline(loop, pending)
        self._queue.append(pending)
        if self._idle:
            task = loop.create_task(self._drain(self._idle.pop()))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return pending

    async def ride(self, submitted: Submitted, future: asyncio.Future[Any]) -> Any:
        """Wait for ``future``, this caller's part of ``submitted`` (a shared command its
        ``Answer`` sets), within the caller's own deadline: ``StoreUnavailable`` once it
        passes (outcome unknown if ``submitted`` was written by then); ``submitted`` stays
        queued at least as long."""
        loop = asyncio.get_running_loop()
        deadline = deadline_for(loop.time(), self._timeout_s)
        riders = submitted.riders
        if riders is None:
            riders = submitted.riders = []
        riders.append((deadline, future))
        if deadline > submitted.deadline:
            submitted.deadline = deadline  # the heap's entry for it stays: see _expire_due
        elif deadline < submitted.watched:
            self._watch_deadline(loop, submitted, deadline)
        try:
            return await future
        except StoreUnavailable as failed:
            self._missed(failed)
            raise

    def _missed(self, failed: StoreUnavailable) -> None:
        """A caller answered ``failed``: counted for metrics when its own deadline ended it."""
        if failed.deadline_s is not None and self._on_round_trip is not None:
            self._on_round_trip(0.0, "deadline")

    def _watch_deadline(
        self, loop: asyncio.AbstractEventLoop, pending: _Pending, at: float | None = None
    ) -> None:
        """``pending`` answered ``StoreUnavailable`` once its deadline passes, if it is still
        waiting then. An earlier round trip of the same request may have used its whole
        budget: the watch then fires at once, and the commands are never sent
        (``_take_batch``)."""
        heap = self._deadlines
        while heap and heap[0][2].future.done():
            heapq.heappop(heap)
        if len(heap) > self._heap_bound:
            # Answered callers behind a slow one at the top: dropped all at once, so the heap
            # never holds more than about twice the callers still waiting.
            heap[:] = [entry for entry in heap if not entry[2].future.done()]
            heapq.heapify(heap)
            self._heap_bound = max(_HEAP_BOUND, 2 * len(heap))
        deadline = pending.deadline if at is None else at
        heapq.heappush(heap, (deadline, next(self._numbers), pending))
        pending.watched = min(pending.watched, deadline)
        if deadline < self._watch_at:
            if self._watch is not None:
                self._watch.cancel()
            self._watch = loop.call_at(deadline, self._expire_due, loop, deadline)
            self._watch_at = deadline

    def _expire_due(self, loop: asyncio.AbstractEventLoop, due: float) -> None:
        """The watch fired for deadline ``due``: every caller whose deadline is not later is
        answered (as its own timer would have been), the watch set for the next deadline."""
        self._watch, self._watch_at = None, math.inf
        heap = self._deadlines
        following: list[_Pending] = []
        while heap and (heap[0][0] <= due or heap[0][2].future.done()):
            pending = heapq.heappop(heap)[2]
            pending.watched = math.inf
            if pending.deadline <= due:
                pending.expire()
            elif pending.riders is not None and not pending.future.done():
                # A shared command whose latest rider's deadline is later: those due are told,
                # and it is watched again for the next one.
                next_due = pending.expire_riders(due)
                if next_due < math.inf:
                    following.append(pending)
                    pending.watched = next_due
        for pending in following:
            heapq.heappush(heap, (pending.watched, next(self._numbers), pending))
        if heap:
            deadline = heap[0][0]
            self._watch = loop.call_at(deadline, self._expire_due, loop, deadline)
            self._watch_at = deadline

    def _take_batch(self) -> list[_Pending]:
        """The next batch: queued callers still waiting (one whose deadline passed, or who
        went away, is dropped unsent), up to ``max_batch_commands`` commands."""
        batch: list[_Pending] = []
        size = 0
        queue = self._queue
        now = asyncio.get_running_loop().time()
        while queue:
            item = queue[0]
            if item.future.done() or item.deadline <= now:
                queue.popleft()
                item.expire()
                continue
            if batch and size + len(item.commands) > self._max_batch:
                break
            queue.popleft()
            size += len(item.commands)
            batch.append(item)
        return batch

    async def _drain(self, conn: AbstractConnection) -> None:
        try:
            while self._queue:
                batch = self._take_batch()
                if batch:
                    await self._round_trip(conn, batch)
        finally:
            self._idle.append(conn)

    async def connect_all(self) -> None:
        """Open every connection not open yet (each through ``on_connect``) now, rather than
        when load first needs it: a process about to serve opens them before its first
        client, so nothing a connection's opening sets off (``RedisStore`` learns the dedup
        layout again) lands in the middle of a burst. Raises ``StoreUnavailable`` (nothing
        sent); connections that could not open are opened on their first use, as always."""
        closed = [conn for conn in self._idle if not conn.is_connected]
        for conn in closed:
            self._idle.remove(conn)
        try:
            outcomes = await asyncio.gather(
                *(self._connect(conn) for conn in closed), return_exceptions=True
            )
            failures = [o for o in outcomes if isinstance(o, BaseException)]
            if failures:
                # None is kept half-checked: each opens (and is checked) again on first use.
                for conn in closed:
                    await conn.disconnect(nowait=True)
        finally:
            self._idle.extend(closed)
        if failures:
            if isinstance(failures[0], _TRANSPORT_ERRORS):
                raise StoreUnavailable(f"redis: {type(failures[0]).__name__}")
            raise failures[0]

    async def _connect(self, conn: AbstractConnection) -> None:
        # The TCP connect and the handshake together, within one socket timeout (a frozen
        # Redis accepts the connection and never answers the handshake).
        async with asyncio.timeout(self._timeout_s):
            await conn.connect()  # type: ignore[no-untyped-call]
            if self._on_connect is not None:
                await self._on_connect(conn)

    async def _round_trip(self, conn: AbstractConnection, batch: list[_Pending]) -> None:
        answered = 0
        sending = False
        try:
            self.round_trips += 1
            if not conn.is_connected:
                await self._connect(conn)
                # Callers told meanwhile that their commands were not sent must stay right.
                batch = [item for item in batch if not item.future.done()]
            # hiredis packs in C what redis-py packs in Python: about 7 times cheaper for a
            # decision script's ~100 arguments, the same bytes.
            # (hiredis' stub types the argument as a 1-tuple; any tuple is packed.)
            packed = b"".join(
                [
                    pack_command(c if isinstance(c, tuple) else c.freeze())  # type: ignore[arg-type]
                    for item in batch
                    for c in item.commands
                ]
            )
            # From here on, bytes may reach Redis: a failure no longer proves nothing ran.
            sending = True
            for item in batch:
                item.sent = True
            started = time.perf_counter()
            # One deadline for the write and the replies, not one per reply (a timer each:
            # about three quarters of the CPU of reading a reply). The write and the first
            # reply get the socket timeout; the deadline is then pushed back as replies come
            # in, whenever a tenth of the timeout has passed since it was last set, so a Redis
            # that stops midway is given up on after 0.9 to 1 times the timeout of silence.
            limit_s = self._round_trip_s
            loop = asyncio.get_running_loop()
            async with asyncio.timeout(limit_s) as deadline:
                await conn.send_packed_command(packed, check_health=False)
                for item in batch:
                    results: list[Any] = []
                    for _ in item.commands:
                        try:
                            results.append(await conn.read_response(timeout=math.inf))
                        except ResponseError as refused:
                            # A reply, not an error of ours: without the traceback, which
                            # holds this frame (and so the batch) in a reference cycle.
                            results.append(refused.with_traceback(None))
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
            pending = [item for item in batch[answered:] if not item.future.done()]
            if not isinstance(exc, Exception):  # cancelled (shutdown): callers are cancelled too
                for item in pending:
                    item.future.cancel()
                raise
            error: Exception = exc
            if isinstance(exc, _TRANSPORT_ERRORS):
                error = StoreUnavailable(f"redis: {type(exc).__name__}", outcome_unknown=sending)
                if self._on_round_trip is not None:
                    timed_out = isinstance(exc, RedisTimeoutError | asyncio.TimeoutError)
                    self._on_round_trip(0.0, "timeout" if timed_out else "connection")
            # A caller whose own deadline has come is told so, whichever timer the loop ran
            # first: a round trip's deadline is never earlier than those of the callers it
            # carries, and the event loop's clock moves by the millisecond.
            due = asyncio.get_running_loop().time() + _CLOCK_STEP_S
            for item in pending:
                if item.deadline <= due:
                    item.expire()
                else:
                    item.expire_riders(due)
                    item.future.set_exception(error)

    async def broadcast(self, commands: Sequence[Command]) -> list[list[Any]]:
        """``commands`` on every primary: here, the one Redis (see ``storage.cluster``)."""
        return [await self.execute(commands)]

    async def close(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            self._watch, self._watch_at = None, math.inf
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
