"""A primary of a real 3-primary Redis Cluster fails over (``CLUSTER FAILOVER`` on its replica)
while leads are being decided: no accepted lead is lost, none is accepted twice.

Each person is posted twice to one advertiser, each post with its own Idempotency-Key and
retried with it until it gets an answer, as a publisher does after a 503. Afterwards: exactly
one of the two posts of every person is accepted, asking again with each key replays the same
answer, and every advertiser's delivery stream holds exactly the accepted leads, once each.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import pytest
from cluster_support import RedisCluster
from support import (
    DAY_MS,
    dedup,
    idempotency,
    plain_client,
    request,
    reservation,
)

from gateway.config.model import DedupScope
from gateway.decision.engine import DecisionEngine
from gateway.decision.model import DecisionOutcome, DecisionRequest
from gateway.errors import StoreUnavailable
from gateway.storage import keys
from gateway.storage.redis import RedisStore
from gateway.types import AdvertiserId, PartnerId

ADVERTISERS = [AdvertiserId(f"adv{n}") for n in range(8)]
#: People per wave (each posted twice, at once).
WAVE = 40
#: A publisher's patience: retries of one post, 50 ms apart (a failover takes a few seconds).
RETRIES = 400


def post(person: int, copy: str, now_ms: int) -> DecisionRequest:
    advertiser = ADVERTISERS[person % len(ADVERTISERS)]
    who = f"person-{person}"
    return request(
        now_ms,
        advertiser=advertiser,
        dedup=[dedup(who, DedupScope.ADVERTISER, advertiser=advertiser)],
        person=[reservation(who, advertiser, pressure_limit=2, pressure_window_ms=DAY_MS)],
        idempotency=idempotency(
            f"{who}-{copy}", f"body-{who}-{copy}", advertiser=advertiser, partner=PartnerId("p")
        ),
    )


async def decide_until_answered(engine: DecisionEngine, rq: DecisionRequest) -> DecisionOutcome:
    for _ in range(RETRIES):
        try:
            (outcome,) = await engine.run([rq])
        except StoreUnavailable:
            await asyncio.sleep(0.05)
            continue
        assert outcome is not None, "the same key and body never conflict"
        return outcome
    pytest.fail("a post got no answer through the failover")


async def test_no_accepted_lead_is_lost_or_accepted_twice_across_a_failover(
    cluster_url: str, redis_cluster: RedisCluster
) -> None:
    store = RedisStore(cluster_url, socket_timeout_s=1.0)
    engine = DecisionEngine(store)
    now_ms = int(time.time() * 1000)
    # The primary holding the first advertiser's slot is the one to fail over.
    victim = redis_cluster.primary_for(keys.deliveries(ADVERTISERS[0]))
    posts: list[DecisionRequest] = []
    answers: list[DecisionOutcome] = []
    waves_after = 0
    try:
        failover = asyncio.create_task(asyncio.to_thread(redis_cluster.failover, victim))
        deadline = time.monotonic() + 60
        # Waves of posts until the failover is over, and two more waves after it.
        while waves_after < 2 and time.monotonic() < deadline:
            waves_after += failover.done()
            start = len(posts) // 2
            wave = [post(p, copy, now_ms) for p in range(start, start + WAVE) for copy in "ab"]
            posts += wave
            answers += await asyncio.gather(*(decide_until_answered(engine, rq) for rq in wave))
        await failover
        assert waves_after == 2, "the failover did not finish within 60 s"
        assert len(posts) > 4 * WAVE, "the failover ended before a load was running"
        assert redis_cluster.primary_for(keys.deliveries(ADVERTISERS[0])) != victim

        accepted: Counter[str] = Counter()
        for rq, outcome in zip(posts, answers, strict=True):
            if outcome.decision == "accepted":
                accepted[rq.person[0].seen_key] += 1
        assert len(accepted) == len(posts) // 2, "someone was never accepted"
        assert set(accepted.values()) == {1}, "someone was accepted twice"
        # Asking again with each key replays the answer it got.
        again = await asyncio.gather(*(decide_until_answered(engine, rq) for rq in posts))
        assert [(a.decision, a.lead_id) for a in again] == [
            (a.decision, a.lead_id) for a in answers
        ]
    finally:
        await store.close()

    client = plain_client(cluster_url)
    try:
        queued: list[str] = []
        for advertiser in ADVERTISERS:
            entries = await client.xrange(keys.deliveries(advertiser))
            queued += [fields[b"lead_id"].decode() for _, fields in entries]
    finally:
        await client.aclose()
    accepted_ids = sorted(a.lead_id for a in answers if a.decision == "accepted")
    assert sorted(queued) == accepted_ids  # every accepted lead queued, once
