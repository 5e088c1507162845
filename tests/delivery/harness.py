"""Queue test helpers: a delivery queue over either store, fed by the real decision path.

``Harness.accept`` runs real decisions (``DecisionEngine`` over the store), so the entries the
queue reads are the ones ``decide.lua`` / the embedded ``decide`` write in production.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from support import ADVERTISER, decide_one, request

from delivery.records import record
from gateway.decision.engine import DecisionEngine
from gateway.delivery.memqueue import MemoryQueue
from gateway.delivery.queue import RedisQueue
from gateway.delivery.queue_base import Queue
from gateway.storage.base import Store
from gateway.storage.memory import MemoryStore
from gateway.storage.redis import RedisStore
from gateway.types import AdvertiserId, LeadId

OTHER = AdvertiserId("novabank")


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class Harness:
    kind: str
    store: Store
    queue: Queue
    redis_url: str | None

    async def accept(self, n: int = 1, advertiser: AdvertiserId = ADVERTISER) -> list[LeadId]:
        """``n`` leads accepted for ``advertiser`` (in its delivery stream), in order."""
        engine = DecisionEngine(self.store)
        ids: list[LeadId] = []
        for _ in range(n):
            rq = request(now_ms(), advertiser=advertiser)
            # A realistic record (what ``decision.plan`` builds), so adapters can render it.
            rq = dataclasses.replace(rq, payload=record(rq.lead_id))
            outcome = await decide_one(engine, rq)
            assert outcome.decision == "accepted"
            ids.append(outcome.lead_id)
        return ids


class Harnesses:
    """Makes harnesses of one kind (``embedded``, ``redis`` or ``cluster``: a real 3-primary
    Redis Cluster) and closes them all."""

    def __init__(self, kind: str, request: pytest.FixtureRequest) -> None:
        self.kind = kind
        self._request = request
        self._made: list[Harness] = []

    async def make(self, retention_s: float = 30 * 86_400.0) -> Harness:
        store: Store
        queue: Queue
        url: str | None = None
        if self.kind == "embedded":
            memory = MemoryStore()
            store, queue = memory, MemoryQueue(memory, dead_letter_retention_s=retention_s)
        else:
            fixture = "cluster_url" if self.kind == "cluster" else "redis_url"
            url = self._request.getfixturevalue(fixture)
            store = RedisStore(url)
            queue = RedisQueue(url, dead_letter_retention_s=retention_s)
        made = Harness(self.kind, store, queue, url)
        self._made.append(made)
        return made

    async def close(self) -> None:
        for made in self._made:
            await made.queue.close()
            await made.store.close()


async def harnesses(kind: str, request: pytest.FixtureRequest) -> AsyncIterator[Harnesses]:
    made = Harnesses(kind, request)
    try:
        yield made
    finally:
        await made.close()
