"""The delivery worker: reads every advertiser's queue, sends through the transport, settles.

One *lane* per advertiser with an endpoint: its own reader and its own in-flight limit (the
endpoint's ``concurrency``), so a CRM that hangs or answers garbage only ever holds its own
lane; a process-wide limit (``worker_concurrency``) bounds the total. Beside the lanes:

* the **promoter** moves due retries from the delayed set to the due stream;
* the **reclaimer** takes over leads held by dead workers (idle longer than ``reclaim_idle``),
  dead-letters the ones that keep crashing workers, and keeps this worker's own in-flight
  leads fresh (so a slow but live delivery is never taken over);
* the **reporter** publishes queue depth, oldest undelivered age and dead letters.

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
from collections.abc import Awaitable, Callable, Sequence
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


class Slots:
    """A counter of free places that can be taken several at once without waiting."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.used = 0
        self._freed = asyncio.Event()

    @property
    def free(self) -> int:
        return max(0, self.size - self.used)

    def take(self, wanted: int) -> int:
        n = max(0, min(wanted, self.size - self.used))
        self.used += n
        return n

    def force(self, n: int) -> None:
        self.used += n

    def give(self, n: int = 1) -> None:
        self.used -= n
        self._freed.set()

    async def wait(self, timeout_s: float) -> None:
        self._freed.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._freed.wait(), timeout_s)


@dataclass(eq=False)
class Lane:
    advertiser: AdvertiserId
    client: Sender
    slots: Slots
    #: Read, not started yet (a read takes up to the free room from each stream).
    buffer: deque[Claimed] = field(default_factory=deque)
    #: Everything claimed and not settled (buffered or being delivered), by entry id.
    in_flight: dict[str, Claimed] = field(default_factory=dict)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    #: Deliveries whose request is under way (what a shutdown past its grace cuts).
    sending: set[asyncio.Task[None]] = field(default_factory=set)
    disabled: bool = False
    checked_at: float = -1e9
    paused_until: float = 0.0

    @property
    def batch_floor(self) -> int:
        return max(1, self.slots.size // 4)


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
    ) -> None:
        self.config = config
        self.settings = config.delivery
        self.queue = queue
        self.events = events
        self.consumer = consumer or consumer_name()
        self._rng = rng or random.Random()
        self._on_close = on_close
        self._block_ms = read_block_ms
        self._global = Slots(self.settings.worker_concurrency)
        self.lanes: dict[AdvertiserId, Lane] = {}
        for advertiser in config.advertisers:
            client = endpoints.client(advertiser)
            if client is None:
                continue
            endpoint = config.advertisers[advertiser].endpoint
            limit = endpoint.concurrency if endpoint is not None else 16
            self.lanes[advertiser] = Lane(
                advertiser, client, Slots(min(limit, self.settings.worker_concurrency))
            )
        self._stopping = asyncio.Event()
        self._readers: list[asyncio.Task[None]] = []
        self._loops: list[asyncio.Task[None]] = []
        positive = [s for s in self.settings.retry_schedule_s if s > 0]
        #: The promoter's tick: fine enough for the shortest wait of the schedule.
        self.tick_s = min(1.0, max(0.02, min(positive, default=2.0) / 4))
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
                    "advertiser without a delivery endpoint: its accepted leads stay queued",
                    extra={"fields": {"advertiser": advertiser}},
                )
        for lane in self.lanes.values():
            self._readers.append(asyncio.create_task(self._read_loop(lane)))
        self._loops = [
            asyncio.create_task(self._promote_loop()),
            asyncio.create_task(self._reclaim_loop()),
            asyncio.create_task(self._report_loop()),
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
        return sum(len(lane.tasks) for lane in self.lanes.values())

    async def stop(self, grace_s: float | None = None) -> None:
        """Stop claiming; give in-flight deliveries ``grace_s`` (default: the configured
        ``shutdown_grace``) to finish; cancel the rest, whose leads stay pending."""
        grace = self.settings.shutdown_grace_s if grace_s is None else grace_s
        self._stopping.set()
        # Readers and loops see the flag within one read block or one step; nothing is
        # cancelled mid-command (that would drop a Redis connection mid-reply).
        await asyncio.gather(*self._readers, *self._loops, return_exceptions=True)
        for lane in self.lanes.values():
            # Claimed but not started: delivered within the grace like the ones in flight
            # (past it, they are held back to the queue or stay pending for a reclaim).
            self._dispatch_buffered(lane, force=True)
        tasks = [t for lane in self.lanes.values() for t in lane.tasks]
        LOG.info("delivery worker stopping", extra={"fields": {"in_flight": len(tasks)}})
        if tasks:
            _, running = await asyncio.wait(tasks, timeout=max(0.0, grace))
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
        if not lane.buffer:
            room = min(lane.slots.free, self._global.free, self.settings.read_count)
            # Under load, wait until a quarter of the lane is free, so reads come in batches
            # rather than one entry per finished delivery.
            if room == 0 or (lane.tasks and room < lane.batch_floor):
                await (lane.slots if lane.slots.free < lane.batch_floor else self._global).wait(
                    self._block_ms / 1000
                )
                return
            # The same count from each stream: new leads and due retries both progress. What
            # exceeds the room waits in the lane's buffer (pending, touched like in-flight).
            claimed = await self.queue.read(lane.advertiser, self.consumer, room, self._block_ms)
            lane.buffer.extend(_interleaved(claimed))
            for one in claimed:
                lane.in_flight[one.entry_id] = one
        if lane.buffer and self._dispatch_buffered(lane) == 0:
            await (lane.slots if lane.slots.free == 0 else self._global).wait(self._block_ms / 1000)

    def _dispatch_buffered(self, lane: Lane, *, force: bool = False) -> int:
        """Start deliveries from the buffer, as many as there are free slots (all: ``force``)."""
        wanted = len(lane.buffer)
        if force:
            n = wanted
            lane.slots.force(n)
            self._global.force(n)
        else:
            taken = lane.slots.take(wanted)
            n = self._global.take(taken)
            if taken > n:
                lane.slots.give(taken - n)
        for _ in range(n):
            self._dispatch(lane, lane.buffer.popleft())
        return n

    def _dispatch(self, lane: Lane, claimed: Claimed) -> None:
        lane.in_flight[claimed.entry_id] = claimed
        task = asyncio.create_task(self._deliver(lane, claimed))
        lane.tasks.add(task)
        task.add_done_callback(lane.tasks.discard)

    # --- one delivery ---------------------------------------------------------------------------

    async def _deliver(self, lane: Lane, claimed: Claimed) -> None:
        released = False
        try:
            now_ms = _now_ms()
            action = policy.before_attempt(claimed, self.settings, now_ms)
            if action is None and lane.disabled:
                # Read just before the endpoint was disabled: wait with the others.
                action = Action(Step.LATER, claimed.last, now_ms, claimed.delivery.attempt)
            if action is None:
                task = asyncio.current_task()
                assert task is not None
                started = time.monotonic()
                lane.sending.add(task)
                try:
                    result = await lane.client.send(claimed.delivery)
                finally:
                    lane.sending.discard(task)
                    # The slot bounds requests to the CRM: free it now, not after the settle's
                    # round trip to Redis (which would halve throughput under load).
                    released = True
                    lane.slots.give()
                    self._global.give()
                action = policy.after_attempt(claimed, result, self.settings, _now_ms(), self._rng)
                if LOG.isEnabledFor(logging.INFO):
                    _log_attempt(claimed, result, action, time.monotonic() - started)
                if result.outcome is Outcome.HELD:
                    # The endpoint cannot take more now: read nothing more until it can.
                    lane.paused_until = max(
                        lane.paused_until, time.monotonic() + (result.retry_after_s or 1.0)
                    )
            # Settling is one atomic step, and a shutdown only ever cuts requests (the tasks
            # in `lane.sending`), never a settle.
            await self._settle(lane, claimed, action)
        except StoreError as error:
            # Not settled: the lead stays pending and is reclaimed after the idle time.
            LOG.warning(
                "could not settle a delivery",
                extra={"fields": {"advertiser": lane.advertiser, "detail": str(error)}},
            )
        except Exception:
            # A bug, not an outcome: the lead stays pending; if it keeps failing like this it
            # is dead-lettered after max_deliveries reclaims.
            LOG.exception(
                "delivery failed unexpectedly",
                extra={
                    "fields": {"advertiser": lane.advertiser, "lead_id": claimed.delivery.lead_id}
                },
            )
        finally:
            lane.in_flight.pop(claimed.entry_id, None)
            if not released:
                lane.slots.give()
                self._global.give()

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
                for claimed in found.claimed:
                    if claimed.entry_id in lane.in_flight:
                        continue  # ours, still running (a touch failed while Redis was away)
                    # Over the lane's limit if need be: these were due long ago.
                    lane.slots.force(1)
                    self._global.force(1)
                    self._dispatch(lane, claimed)
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


def _interleaved(claimed: Sequence[Claimed]) -> list[Claimed]:
    """New leads and due retries taken in turn, so neither waits behind the other."""
    new = [c for c in claimed if c.source is Source.NEW]
    due = [c for c in claimed if c.source is not Source.NEW]
    mixed: list[Claimed] = []
    for i in range(max(len(new), len(due))):
        mixed += new[i : i + 1] + due[i : i + 1]
    return mixed


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
