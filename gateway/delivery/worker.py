"""The delivery worker: reads every advertiser's queue, sends through the transport, settles.

One *lane* per advertiser with an endpoint: its own reader, its own long-lived senders and its
own in-flight limit (the endpoint's ``concurrency``), so a CRM that hangs or answers garbage
only ever holds its own lane; a process-wide limit (``worker_concurrency``) bounds the total.
No task is created per delivery (the worker is CPU-bound at a few thousand deliveries a
second: see "Delivery" in BENCHMARKS.md). Beside the lanes:

* the **promoter** moves due retries from the delayed set to the due stream;
* the **reclaimer** takes over leads held by dead workers (idle longer than ``reclaim_idle``),
  dead-letters the ones that keep crashing workers, and keeps this worker's own in-flight
  leads fresh (so a slow but live delivery is never taken over);
* the **reporter** publishes queue depth, oldest undelivered age and dead letters;
* the **retention** loop, at start and then every ``retention_every_s``, removes the dead
  letters past ``dead_letter_retention`` and dead-letters (``expired``) the leads past
  ``max_lead_age`` of every advertiser no lane delivers to (no endpoint, or the endpoint
  disabled): lead bodies never outlive their retention because traffic stopped.

``stop(grace_s)`` stops reading, lets in-flight deliveries finish within ``grace_s``, then
cancels the requests still running: their leads stay pending and are redelivered later (the
same lead id, so the same ``webhook-id``). Settling a lead is one atomic store step, never cut
in half. One JSON log line per attempt, with ids, codes and timings only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import secrets
import socket
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from gateway.config.model import Config
from gateway.delivery import policy
from gateway.delivery.model import AttemptResult, Delivery, DeliveryEvents, Outcome
from gateway.delivery.policy import Action, Step
from gateway.delivery.queue_base import Claimed, Queue, Source
from gateway.errors import StoreError
from gateway.types import AdvertiserId

LOG = logging.getLogger("leadgate.delivery")
#: How long a read waits for new entries; also the longest a stop waits for the readers.
READ_BLOCK_MS = 500
#: How often the queue's state is reported to metrics.
REPORT_EVERY_S = 5.0
#: How long a lane trusts its last look at the endpoint's disabled flag.
DISABLED_CHECK_S = 1.0
#: After a store error, a loop waits this long before trying again.
STORE_BACKOFF_S = 0.5
#: Leads moved from the delayed set per promote call.
PROMOTE_BATCH = 500
#: After the grace period, cancelled deliveries get this long to leave their settle step.
SETTLE_GRACE_S = 5.0
#: How long a stop waits for the readers and loops to see the stop flag: a read blocks at most
#: ``READ_BLOCK_MS``, a store command at most the queue's socket timeout, and a reconnect
#: may add as much again. Past it they are cancelled (a command cut mid-reply only loses its
#: connection: the lead it was about stays pending and is read again).
LOOPS_STOP_S = 30.0
#: The retention loop's period at most (shorter when a retention is: half of it).
RETENTION_EVERY_S = 60.0


class Sender(Protocol):
    """What the worker needs of ``gateway.delivery.transport.EndpointClient`` (which reports
    each attempt to metrics itself)."""

    async def send(self, delivery: Delivery) -> AttemptResult: ...


class Endpoints(Protocol):
    """What the worker needs of ``gateway.delivery.transport.Transport``."""

    def client(self, advertiser: AdvertiserId) -> Sender | None: ...


def consumer_name() -> str:
    """This worker's name in the consumer group: host, pid and a random part (a restarted
    process is a new consumer; what the old one held is reclaimed)."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


class Buffer:
    """Claimed leads not started yet, new leads and due retries in two lines taken in turn:
    neither waits behind the other, however long the other line is."""

    def __init__(self) -> None:
        self._new: deque[Claimed] = deque()
        self._due: deque[Claimed] = deque()
        self._new_next = True

    def __len__(self) -> int:
        return len(self._new) + len(self._due)

    def put(self, claimed: Claimed, *, first: bool = False) -> None:
        """At the end of its line (``first``: at its head)."""
        line = self._new if claimed.source is Source.NEW else self._due
        if first:
            line.appendleft(claimed)
        else:
            line.append(claimed)

    def take(self) -> Claimed:
        """The next lead (IndexError when empty)."""
        new = (self._new_next and bool(self._new)) or not self._due
        self._new_next = not new
        return (self._new if new else self._due).popleft()


@dataclass(eq=False)
class Lane:
    """One advertiser's share of the worker: a reader keeping a buffer of claimed leads, and
    ``2 * size`` long-lived senders delivering from it. A sender takes a slot (at most ``size``)
    before a lead and gives it back when the CRM answers, so while some senders settle in the
    store the others keep every slot busy, and leads wait in the buffer, not in senders."""

    advertiser: AdvertiserId
    client: Sender
    size: int
    #: Requests under way to this endpoint (at most ``size``).
    slots: asyncio.Semaphore = field(init=False)
    #: Read, not started yet.
    buffer: Buffer = field(default_factory=Buffer)
    #: Everything claimed and not settled (buffered or being delivered), by entry id.
    in_flight: dict[str, Claimed] = field(default_factory=dict)
    #: Senders with nothing to do, each waiting on its future for a lead (None: stop).
    idle: deque[asyncio.Future[Claimed | None]] = field(default_factory=deque)
    #: Set by the senders when the buffer runs low: the reader reads again.
    wanted: asyncio.Event = field(default_factory=asyncio.Event)
    senders: list[asyncio.Task[None]] = field(default_factory=list)
    #: Senders with a request under way, or holding a lead while they wait for the
    #: worker-wide limit (what a shutdown past its grace cuts; never a settle).
    sending: set[asyncio.Task[None]] = field(default_factory=set)
    #: Senders holding a lead (from taking it to its settle).
    busy: int = 0
    disabled: bool = False
    checked_at: float = -1e9
    paused_until: float = 0.0

    def __post_init__(self) -> None:
        self.slots = asyncio.Semaphore(self.size)

    @property
    def low(self) -> int:
        """Below this many buffered leads the reader reads, up to twice as many: reads come in
        batches of about ``size`` (a read costs far more than an entry), and a lead waits
        about ``size`` deliveries to be read, then only behind its own line."""
        return self.size


class Worker:
    def __init__(
        self,
        config: Config,
        queue: Queue,
        endpoints: Endpoints,
        events: DeliveryEvents,
        *,
        consumer: str | None = None,
        rng: random.Random | None = None,
        on_close: Callable[[], Awaitable[None]] | None = None,
        read_block_ms: int = READ_BLOCK_MS,
        loops_stop_s: float = LOOPS_STOP_S,
    ) -> None:
        self.config = config
        self.settings = config.delivery
        self.queue = queue
        self.events = events
        self.consumer = consumer or consumer_name()
        self._rng = rng or random.Random()
        self._on_close = on_close
        self._block_ms = read_block_ms
        self._loops_stop_s = loops_stop_s
        self.lanes: dict[AdvertiserId, Lane] = {}
        for advertiser in config.advertisers:
            client = endpoints.client(advertiser)
            if client is None:
                continue
            endpoint = config.advertisers[advertiser].endpoint
            limit = endpoint.concurrency if endpoint is not None else 16
            self.lanes[advertiser] = Lane(
                advertiser, client, min(limit, self.settings.worker_concurrency)
            )
        #: Requests under way in the whole process (``worker_concurrency``); None when the
        #: lanes' own limits add up to no more than that (then it could never make one wait).
        limit = self.settings.worker_concurrency
        self._global: asyncio.Semaphore | None = (
            None if sum(lane.size for lane in self.lanes.values()) <= limit
            else asyncio.Semaphore(limit)
        )  # fmt: skip
        self._stopping = asyncio.Event()
        #: Set once the readers are stopped: senders leave when the buffer is empty.
        self._draining = False
        #: Set when the shutdown grace is over: senders take no more leads.
        self._cut = False
        self._readers: list[asyncio.Task[None]] = []
        self._loops: list[asyncio.Task[None]] = []
        positive = [s for s in self.settings.retry_schedule_s if s > 0]
        #: The promoter's tick: fine enough for the shortest wait of the schedule.
        self.tick_s = min(1.0, max(0.02, min(positive, default=2.0) / 4))
        #: How often retention is enforced: what a dead letter or an undelivered lead may
        #: outlive its retention by, at most.
        shortest = min(self.settings.dead_letter_retention_s, self.settings.max_lead_age_s)
        self.retention_every_s = min(RETENTION_EVERY_S, max(0.05, shortest / 2))
        self.started = False

    # --- life ---------------------------------------------------------------------------------

    async def start(self) -> None:
        """Create the consumer groups (retrying while the store is unreachable is the loops'
        job: a worker started before its Redis still starts) and start every loop."""
        with contextlib.suppress(StoreError):
            await self.queue.prepare(list(self.lanes))
        for advertiser in self.config.advertisers:
            if advertiser not in self.lanes:
                LOG.warning(
                    "advertiser without a delivery endpoint: its accepted leads stay queued "
                    "until max_lead_age, then become dead letters (expired)",
                    extra={"fields": {"advertiser": advertiser}},
                )
        for lane in self.lanes.values():
            # Twice the lane's slots: while half settle, the other half keep the slots busy.
            lane.senders = [
                asyncio.create_task(self._send_loop(lane)) for _ in range(2 * lane.size)
            ]
            self._readers.append(asyncio.create_task(self._read_loop(lane)))
        self._loops = [
            asyncio.create_task(self._promote_loop()),
            asyncio.create_task(self._reclaim_loop()),
            asyncio.create_task(self._report_loop()),
            asyncio.create_task(self._retention_loop()),
        ]
        self.started = True
        LOG.info(
            "delivery worker started",
            extra={
                "fields": {
                    "consumer": self.consumer,
                    "advertisers": sorted(self.lanes),
                    "queue": self.queue.name,
                }
            },
        )

    @property
    def in_flight(self) -> int:
        """Deliveries under way (taken from a buffer, not settled yet)."""
        return sum(lane.busy for lane in self.lanes.values())

    async def stop(self, grace_s: float | None = None) -> None:
        """Stop claiming; give in-flight deliveries ``grace_s`` (default: the configured
        ``shutdown_grace``) to finish; cancel the rest, whose leads stay pending."""
        grace = self.settings.shutdown_grace_s if grace_s is None else grace_s
        self._stopping.set()
        # Readers and loops see the flag within one read block or one step; nothing is
        # cancelled mid-command (that would drop a Redis connection mid-reply) unless a
        # command hangs past every timeout: a stop must end whatever the store does.
        loops = [*self._readers, *self._loops]
        if loops:
            _, stuck = await asyncio.wait(loops, timeout=self._loops_stop_s)
            if stuck:
                LOG.warning(
                    "delivery queue did not answer: its readers are cancelled",
                    extra={"fields": {"stuck": len(stuck)}},
                )
                for task in stuck:
                    task.cancel()
                await asyncio.wait(stuck, timeout=SETTLE_GRACE_S)
        # Claimed but not started: delivered within the grace like the ones in flight (past
        # it, they stay pending for a reclaim). Idle senders are told to leave.
        self._draining = True
        for lane in self.lanes.values():
            _dismiss_idle(lane)
        senders = [t for lane in self.lanes.values() for t in lane.senders]
        LOG.info("delivery worker stopping", extra={"fields": {"in_flight": self.in_flight}})
        if senders:
            _, running = await asyncio.wait(senders, timeout=max(0.0, grace))
            self._cut = True
            cut = [t for lane in self.lanes.values() for t in lane.sending if t in running]
            for task in cut:
                task.cancel()
            if running:
                LOG.warning(
                    "shutdown grace over: interrupted deliveries stay queued",
                    extra={"fields": {"interrupted": len(cut)}},
                )
                await asyncio.wait(running, timeout=SETTLE_GRACE_S)
        if self._on_close is not None:
            await self._on_close()
        LOG.info("delivery worker stopped", extra={"fields": {"consumer": self.consumer}})

    # --- reading --------------------------------------------------------------------------------

    async def _is_disabled(self, lane: Lane) -> bool:
        now = time.monotonic()
        if now - lane.checked_at >= DISABLED_CHECK_S:
            was = lane.disabled
            lane.disabled = await self.queue.disabled(lane.advertiser)
            lane.checked_at = now
            if was != lane.disabled:
                self.events.breaker_state(
                    lane.advertiser, "disabled" if lane.disabled else "closed"
                )
        return lane.disabled

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), max(0.0, seconds))

    async def _read_loop(self, lane: Lane) -> None:
        while not self._stopping.is_set():
            try:
                await self._read_once(lane)
            except StoreError as error:
                LOG.warning(
                    "delivery queue unavailable",
                    extra={"fields": {"advertiser": lane.advertiser, "detail": str(error)}},
                )
                await self._pause(STORE_BACKOFF_S)

    async def _read_once(self, lane: Lane) -> None:
        wait_s = lane.paused_until - time.monotonic()
        if wait_s > 0:
            await self._pause(wait_s)
            return
        if await self._is_disabled(lane):
            await self._pause(DISABLED_CHECK_S)
            return
        buffered = len(lane.buffer)
        if buffered >= lane.low:
            # Enough to do: wait until the senders have drawn the buffer down (a timeout,
            # so pauses, the disabled flag and a stop are still looked at).
            lane.wanted.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._block_ms / 1000):
                    await lane.wanted.wait()
            return
        # The same count from each stream: new leads and due retries both progress.
        room = min(self.settings.read_count, 2 * lane.low - buffered)
        claimed = await self.queue.read(lane.advertiser, self.consumer, room, self._block_ms)
        for one in claimed:
            lane.in_flight[one.entry_id] = one
            _hand_out(lane, one)

    # --- sending --------------------------------------------------------------------------------

    async def _send_loop(self, lane: Lane) -> None:
        """One sender: takes leads from the lane's buffer and delivers them one at a time, until
        the worker stops (a cancel past the shutdown grace ends it mid-request).

        The lane's slot is taken *before* a lead, so leads wait in the buffer (in their read
        order), not in senders; it is freed when the CRM answers, before the settle."""
        me = asyncio.current_task()
        assert me is not None
        while True:
            async with lane.slots:
                claimed = await self._next(lane)
                if claimed is None:
                    return
                lane.busy += 1
                try:
                    action = await self._attempt(lane, claimed, me)
                except BaseException:
                    self._done(lane, claimed)
                    raise
            try:
                if action is not None:
                    await self._settle_guarded(lane, claimed, action)
            finally:
                self._done(lane, claimed)

    async def _next(self, lane: Lane) -> Claimed | None:
        """The next lead to deliver, waiting for one if need be (None: the sender leaves)."""
        if self._cut:
            return None
        if lane.buffer:
            claimed = lane.buffer.take()
            if len(lane.buffer) < lane.low:
                lane.wanted.set()
            return claimed
        if self._draining:
            return None
        waiter: asyncio.Future[Claimed | None] = asyncio.get_running_loop().create_future()
        lane.idle.append(waiter)
        lane.wanted.set()
        return await waiter

    def _done(self, lane: Lane, claimed: Claimed) -> None:
        lane.busy -= 1
        lane.in_flight.pop(claimed.entry_id, None)
        if len(lane.buffer) < lane.low:
            lane.wanted.set()  # room to claim more

    # --- one delivery ---------------------------------------------------------------------------

    async def _attempt(
        self, lane: Lane, claimed: Claimed, sender: asyncio.Task[None]
    ) -> Action | None:
        """What to do with the lead: at once (unreadable, expired, endpoint disabled), or after
        one attempt. None: an unexpected error, logged; the lead stays pending (if it keeps
        failing like this it is dead-lettered after ``max_deliveries`` reclaims)."""
        try:
            now_ms = _now_ms()
            action = policy.before_attempt(claimed, self.settings, now_ms)
            if action is None and lane.disabled:
                # Read just before the endpoint was disabled: wait with the others.
                action = Action(Step.LATER, claimed.last, now_ms, claimed.delivery.attempt)
            if action is not None:
                return action
            lane.sending.add(sender)
            try:
                started = time.monotonic()
                if self._global is None:
                    result = await lane.client.send(claimed.delivery)
                else:
                    async with self._global:
                        result = await lane.client.send(claimed.delivery)
            finally:
                lane.sending.discard(sender)
            action = policy.after_attempt(claimed, result, self.settings, _now_ms(), self._rng)
            if LOG.isEnabledFor(logging.INFO):
                _log_attempt(claimed, result, action, time.monotonic() - started)
            if result.outcome is Outcome.HELD:
                # The endpoint cannot take more now: read nothing more until it can.
                lane.paused_until = max(
                    lane.paused_until, time.monotonic() + (result.retry_after_s or 1.0)
                )
            return action
        except Exception:
            _log_unexpected(lane, claimed)
            return None

    async def _settle_guarded(self, lane: Lane, claimed: Claimed, action: Action) -> None:
        """Settle; a store error or a bug leaves the lead pending (reclaimed after the idle
        time). A shutdown only ever cuts requests (senders in ``lane.sending``), never this."""
        try:
            await self._settle(lane, claimed, action)
        except StoreError as error:
            LOG.warning(
                "could not settle a delivery",
                extra={"fields": {"advertiser": lane.advertiser, "detail": str(error)}},
            )
        except Exception:
            _log_unexpected(lane, claimed)

    async def _settle(self, lane: Lane, claimed: Claimed, action: Action) -> None:
        queue = self.queue
        step = action.step
        if step is Step.ACK:
            await queue.delivered(claimed)
        elif step is Step.DEAD:
            if await queue.dead(claimed, action.reason, action.last, _now_ms()):
                self.events.dead_lettered(lane.advertiser, action.reason)
                LOG.warning(
                    "dead letter",
                    extra={
                        "fields": {
                            "lead_id": claimed.delivery.lead_id,
                            "advertiser": lane.advertiser,
                            "reason": action.reason,
                            "attempt": claimed.delivery.attempt,
                            "status": action.last.status,
                            "detail": action.last.detail,
                        }
                    },
                )
        else:
            if step is Step.DISABLE:
                await queue.disable(lane.advertiser, action.last.detail, _now_ms())
                lane.disabled, lane.checked_at = True, time.monotonic()
                self.events.breaker_state(lane.advertiser, "disabled")
                LOG.error(
                    "endpoint disabled (410 Gone): leads wait until it is re-enabled",
                    extra={"fields": {"advertiser": lane.advertiser}},
                )
            await queue.later(claimed, action.due_ms, action.attempt, action.last)

    # --- background loops -----------------------------------------------------------------------

    async def _every(self, period_s: float, step: Callable[[], Awaitable[None]]) -> None:
        while not self._stopping.is_set():
            try:
                await step()
            except StoreError as error:
                LOG.warning("delivery queue unavailable", extra={"fields": {"detail": str(error)}})
            await self._pause(period_s)

    async def _promote_loop(self) -> None:
        async def step() -> None:
            now = _now_ms()
            for advertiser in self.lanes:
                while await self.queue.promote(advertiser, now, PROMOTE_BATCH) == PROMOTE_BATCH:
                    pass

        await self._every(self.tick_s, step)

    async def _reclaim_loop(self) -> None:
        idle_ms = int(self.settings.reclaim_idle_s * 1000)

        async def step() -> None:
            for lane in self.lanes.values():
                if lane.in_flight:
                    await self.queue.touch(
                        lane.advertiser, self.consumer, list(lane.in_flight.values())
                    )
                if lane.disabled:
                    continue
                found = await self.queue.reclaim(
                    lane.advertiser, self.consumer, idle_ms, self.settings.max_deliveries
                )
                for claimed in found.crashing:
                    action = Action(Step.DEAD, claimed.last, reason=policy.CRASHING)
                    await self._settle(lane, claimed, action)
                for claimed in reversed(found.claimed):
                    if claimed.entry_id in lane.in_flight:
                        continue  # ours, still running (a touch failed while Redis was away)
                    # First in line: these were due long ago.
                    lane.in_flight[claimed.entry_id] = claimed
                    _hand_out(lane, claimed, first=True)
                if found.claimed or found.crashing:
                    LOG.warning(
                        "reclaimed leads of a stopped worker",
                        extra={
                            "fields": {
                                "advertiser": lane.advertiser,
                                "reclaimed": len(found.claimed),
                                "dead_lettered": len(found.crashing),
                            }
                        },
                    )

        # A third of the idle time: an in-flight lead is touched well before it could be
        # taken over, and a dead worker's leads wait at most 4/3 of the idle time.
        await self._every(self.settings.reclaim_idle_s / 3, step)

    async def _retention_loop(self) -> None:
        async def step() -> None:
            await self.enforce_retention()

        await self._every(self.retention_every_s, step)

    async def enforce_retention(self) -> None:
        """Now, for every configured advertiser: trim its dead letters past the retention,
        and expire its undelivered leads past ``max_lead_age`` when no lane delivers them."""
        now = _now_ms()
        max_age_ms = int(self.settings.max_lead_age_s * 1000)
        for advertiser in self.config.advertisers:
            trimmed = await self.queue.trim(advertiser, now)
            expired = 0
            if advertiser not in self.lanes or await self.queue.disabled(advertiser):
                expired = await self.queue.expire(advertiser, max_age_ms, now)
                for _ in range(expired):
                    self.events.dead_lettered(advertiser, policy.EXPIRED)
            if trimmed or expired:
                LOG.info(
                    "retention enforced",
                    extra={
                        "fields": {
                            "advertiser": advertiser,
                            "dead_letters_removed": trimmed,
                            "expired_to_dead_letters": expired,
                        }
                    },
                )

    async def _report_loop(self) -> None:
        async def step() -> None:
            await self.report()

        await self._every(REPORT_EVERY_S, step)

    async def report(self) -> None:
        """Publish every lane's queue state to metrics now."""
        now = _now_ms()
        for advertiser in self.lanes:
            state = await self.queue.state(advertiser)
            self.events.queue_state(
                advertiser, state.depth, state.oldest_age_s(now), state.dead_letters
            )


def _hand_out(lane: Lane, claimed: Claimed, *, first: bool = False) -> None:
    """Give a lead to an idle sender, or buffer it (``first``: at the head of the line)."""
    while lane.idle:
        waiter = lane.idle.popleft()
        if not waiter.done():
            waiter.set_result(claimed)
            return
    lane.buffer.put(claimed, first=first)


def _dismiss_idle(lane: Lane) -> None:
    """Tell every idle sender to leave (its wait answers None)."""
    while lane.idle:
        waiter = lane.idle.popleft()
        if not waiter.done():
            waiter.set_result(None)


def _log_unexpected(lane: Lane, claimed: Claimed) -> None:
    # A bug, not an outcome: the lead stays pending.
    LOG.exception(
        "delivery failed unexpectedly",
        extra={"fields": {"advertiser": lane.advertiser, "lead_id": claimed.delivery.lead_id}},
    )


def _now_ms() -> int:
    return int(time.time() * 1000)


def _log_attempt(claimed: Claimed, result: AttemptResult, action: Action, took_s: float) -> None:
    fields: dict[str, object] = {
        "lead_id": claimed.delivery.lead_id,
        "advertiser": claimed.delivery.advertiser,
        "attempt": claimed.delivery.attempt,
        "outcome": result.outcome.value,
        "status": result.status,
        "detail": result.detail,
        "duration_ms": round(result.duration_s * 1000 or took_s * 1000, 1),
        "next": action.step.value,
    }
    if action.step is Step.LATER:
        fields["retry_in_s"] = round(max(0, action.due_ms - _now_ms()) / 1000, 3)
        fields["next_attempt"] = action.attempt
    elif action.step is Step.DEAD:
        fields["reason"] = action.reason
    level = logging.INFO if result.outcome is Outcome.DELIVERED else logging.WARNING
    LOG.log(level, "delivery attempt", extra={"fields": fields})
