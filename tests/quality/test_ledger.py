"""The quality ledger: what a real intake and feedback desk count, on which day, and how the
counts reach the embedded store and a real Redis (one round trip, kept through an outage,
bounded, ids only)."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
import redis
from support import RedisServer

from gateway.app.root import App
from gateway.app.settings import Settings
from gateway.config.environment import Environment
from gateway.config.load import parse_config
from gateway.config.model import Partner
from gateway.decision.answer import Answer
from gateway.quality.feedback import FeedbackItem, Recorded
from gateway.quality.ledger import QualityLedger, day_of
from gateway.storage import keys
from gateway.storage.base import Store
from gateway.storage.memory import MemoryStore
from gateway.storage.redis import RedisStore
from gateway.types import AdvertiserId, FingerprintKey, PartnerId

#: Friday 2026-11-20 10:00 UTC.
T0 = datetime(2026, 11, 20, 10, 0, tzinfo=UTC).timestamp()
DAY_S = 86_400.0
FRIDAY, MONDAY = "2026-11-20", "2026-11-23"
EMAIL, PHONE = "ledger.canary@example.com", "+33 6 12 34 56 78"


def sha(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def config_data() -> dict[str, Any]:
    return {
        "channels": [{"id": "email"}, {"id": "coreg"}],
        "advertisers": [{"id": "acme", "api_keys": [sha("acme-feedback-key")]}],
        "campaigns": [
            {
                "id": "acme-on",
                "advertiser": "acme",
                "kind": "always_on",
                "identity": ["email"],
                "cpl": 10,
                "dedup": [{"scope": "campaign", "window": "30d"}],
                "caps": [{"subject": "campaign", "window": "day", "limit": 3}],
            },
            {
                "id": "acme-summer",
                "advertiser": "acme",
                "kind": "peak",
                "identity": ["email"],
                "start": "2026-06-01",
                "end": "2026-08-31",
            },
        ],
        "partners": [
            {
                "id": pid,
                "api_keys": [sha(f"{pid}-key")],
                "channels": ["email"],
                "campaigns": ["acme-on", "acme-summer"],
            }
            for pid in ("p1", "p2")
        ],
    }


class Clock:
    def __init__(self, now_s: float) -> None:
        self.now_s = now_s

    def __call__(self) -> float:
        return self.now_s


def make_app(store: Store, clock: Clock) -> App:
    """The composition root over ``store``: its intake counts into its ledger."""
    environment = Environment(
        fingerprint_keys=(FingerprintKey("t1", b"ledger-tests-fingerprint-key-01"),)
    )
    return App(Settings.of(parse_config(config_data()), environment), store=store, clock=clock)


def partner(app: App, pid: str) -> Partner:
    return app.config.partners[PartnerId(pid)]


def lead(n: int, **extra: object) -> dict[str, object]:
    return {"campaign": "acme-on", "email": f"person{n}@example.com", **extra}


async def test_decisions_are_counted_per_day_partner_campaign_without_tests_or_replays(
    store: Store,
) -> None:
    clock = Clock(T0)
    app = make_app(store, clock)
    intake = app.intake
    p1, p2 = partner(app, "p1"), partner(app, "p2")
    assert (await intake.submit(p1, lead(1))).decision.value == "accepted"
    assert (await intake.submit(p2, lead(1))).decision.value == "duplicate"
    assert (await intake.submit(p1, lead(2, test=True))).test  # not counted
    first = await intake.submit(p1, lead(3), idempotency_key="k-1", body=b"one")
    again = await intake.submit(p1, lead(3), idempotency_key="k-1", body=b"one")
    assert (first.decision.value, again.replayed) == ("accepted", True)  # the replay: not counted
    assert (await intake.submit(p2, lead(4, campaign="acme-summer"))).decision.value == "rejected"
    batch = await intake.submit_batch(p2, [lead(5), lead(6), {"campaign": "acme-on"}])
    assert [a.decision.value if isinstance(a, Answer) else "refused" for a in batch] == [
        "accepted",
        "capped",  # the day's cap of 3 is reached
        "refused",  # no identity: a 422 item, not a decision
    ]
    clock.now_s += 3 * DAY_S
    assert (await intake.submit(p1, lead(7))).decision.value == "accepted"

    assert await app.ledger.read([FRIDAY, MONDAY, "2026-11-21"]) == {
        FRIDAY: {
            "p1|acme-on|posted": 2,
            "p1|acme-on|accepted": 2,
            "p2|acme-on|posted": 3,
            "p2|acme-on|duplicate": 1,
            "p2|acme-on|accepted": 1,
            "p2|acme-on|capped": 1,
            "p2|acme-summer|posted": 1,
            "p2|acme-summer|rejected": 1,
        },
        MONDAY: {"p1|acme-on|posted": 1, "p1|acme-on|accepted": 1},
        "2026-11-21": {},
    }
    assert app.ledger.pending_fields == 0


async def test_feedback_counts_on_the_acceptance_day_once(store: Store) -> None:
    clock = Clock(T0)
    app = make_app(store, clock)
    intake = app.intake
    desk = app.feedback_desk
    p1 = partner(app, "p1")
    ids = [(await intake.submit(p1, lead(n))).lead_id for n in (1, 2, 3)]
    clock.now_s += 3 * DAY_S  # the advertiser reports on Monday
    items = [
        FeedbackItem(ids[0], "converted"),
        FeedbackItem(ids[1], "returned", "fake"),
        FeedbackItem(ids[2], "rejected"),
        FeedbackItem(ids[0], "converted"),  # a repeat counts nothing
    ]
    answers = await desk.record(AdvertiserId("acme"), items)
    assert [a.result for a in answers if isinstance(a, Recorded)] == [
        "recorded",
        "recorded",
        "recorded",
        "already_recorded",
    ]
    counts = await app.ledger.read([FRIDAY, MONDAY])
    assert counts[MONDAY] == {}
    friday = counts[FRIDAY]
    assert {k: v for k, v in friday.items() if k.split("|")[2] in ("converted", "returned")} == {
        "p1|acme-on|converted": 1,
        "p1|acme-on|returned": 1,
    }
    assert friday["p1|acme-on|adv_rejected"] == 1
    assert friday["p1|acme-on|accepted"] == 3


async def test_a_flush_is_one_round_trip_to_a_day_hash_with_a_ttl_and_ids_only(
    redis_url: str,
) -> None:
    store = RedisStore(redis_url)
    try:
        app = make_app(store, Clock(T0))
        intake = app.intake
        p1 = partner(app, "p1")
        for n in range(5):
            await intake.submit(p1, {"campaign": "acme-on", "email": f"x{n}.{EMAIL}"})
        await intake.submit(p1, {"campaign": "acme-summer", "email": EMAIL, "phone": PHONE})
        before = store.round_trips
        before_ms = time.time_ns() // 1_000_000
        assert await app.ledger.flush()
        after_ms = time.time_ns() // 1_000_000
        assert store.round_trips - before == 1
    finally:
        await store.close()
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        key = keys.quality_day(FRIDAY)
        assert key == "lg:{r:2026-11-20}:quality"
        assert [str(k) for k in client.scan_iter(match="lg:{r:*")] == [key]
        stored: dict[str, str] = client.hgetall(key)  # type: ignore[assignment]
        expire_at_ms = int(client.pexpiretime(key))
    finally:
        client.close()
    assert stored == {
        "p1|acme-on|posted": "5",
        "p1|acme-on|accepted": "3",
        "p1|acme-on|capped": "2",
        "p1|acme-summer|posted": "1",
        "p1|acme-summer|rejected": "1",
    }
    # Kept 400 days from the flush.
    kept_ms = 400 * 86_400_000
    assert before_ms + kept_ms <= expire_at_ms <= after_ms + kept_ms
    dump = " ".join(f"{name}={n}" for name, n in stored.items())
    for canary in ("canary", "@", "example", "612345678", "+33"):
        assert canary not in dump


async def test_the_embedded_store_keeps_only_ids_too() -> None:
    store = MemoryStore()
    app = make_app(store, Clock(T0))
    intake = app.intake
    await intake.submit(partner(app, "p2"), {"campaign": "acme-on", "email": EMAIL})
    counts = await app.ledger.read([FRIDAY])
    assert counts == {FRIDAY: {"p2|acme-on|posted": 1, "p2|acme-on|accepted": 1}}
    names = store.keys()
    assert keys.quality_day(FRIDAY) in names
    assert "canary" not in repr(counts) + " ".join(names)


async def test_increments_survive_an_outage_and_are_sent_once_it_ends(
    spare_redis: Callable[[], RedisServer], caplog: pytest.LogCaptureFixture
) -> None:
    server = spare_redis()
    server.start()
    store = RedisStore(server.url, socket_timeout_s=2.0)
    ledger = QualityLedger(store)
    try:
        ledger.feedback("p1", "acme-on", "converted", int(T0 * 1000))
        assert await ledger.flush()
        server.kill()
        ledger.feedback("p1", "acme-on", "converted", int(T0 * 1000))
        ledger.feedback("p2", "acme-on", "returned", int((T0 + DAY_S) * 1000))
        with caplog.at_level(logging.WARNING, logger="leadgate.ledger"):
            assert not await ledger.flush()
            assert not await ledger.flush()  # still down: kept, logged once
        assert len([r for r in caplog.records if r.name == "leadgate.ledger"]) == 1
        assert ledger.pending_fields == 2
        ledger.feedback("p1", "acme-on", "converted", int(T0 * 1000))  # made during the outage
        server.start()  # an empty Redis: the first count died with the old one
        assert await ledger.flush()
        assert ledger.pending_fields == 0
        assert await store.ledger_read([FRIDAY, "2026-11-21"]) == {
            FRIDAY: {"p1|acme-on|converted": 2},
            "2026-11-21": {"p2|acme-on|returned": 1},
        }
    finally:
        await store.close()


async def test_pending_counts_are_bounded_dropping_the_oldest_days(
    spare_redis: Callable[[], RedisServer], caplog: pytest.LogCaptureFixture
) -> None:
    server = spare_redis()  # never started: every flush fails
    store = RedisStore(server.url, socket_timeout_s=2.0)
    ledger = QualityLedger(store, max_pending_fields=4)
    try:
        for day in range(6):  # 6 days x 1 field, oldest first
            ledger.feedback("p1", "acme-on", "returned", int((T0 + day * DAY_S) * 1000))
        with caplog.at_level(logging.ERROR, logger="leadgate.ledger"):
            assert not await ledger.flush()
        assert ledger.pending_fields == 4
        assert "oldest pending days dropped" in caplog.text
        server.start()
        assert await ledger.flush()
        days = [day_of(int((T0 + d * DAY_S) * 1000)) for d in range(6)]
        counts = await store.ledger_read(days)
    finally:
        await store.close()
    assert [len(counts[d]) for d in days] == [0, 0, 1, 1, 1, 1]


async def test_run_flushes_periodically_and_close_flushes_the_rest() -> None:
    store = MemoryStore()
    ledger = QualityLedger(store)
    task = asyncio.create_task(ledger.run(every_s=0.01))
    try:
        ledger.feedback("p1", "acme-on", "converted", int(T0 * 1000))
        for _ in range(200):  # bounded: 2 s at most
            if (await store.ledger_read([FRIDAY]))[FRIDAY]:
                break
            await asyncio.sleep(0.01)
        assert (await store.ledger_read([FRIDAY]))[FRIDAY] == {"p1|acme-on|converted": 1}
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    ledger.feedback("p1", "acme-on", "returned", int(T0 * 1000))
    await ledger.close()
    assert (await store.ledger_read([FRIDAY]))[FRIDAY] == {
        "p1|acme-on|converted": 1,
        "p1|acme-on|returned": 1,
    }


def test_a_store_without_a_ledger_counts_nothing() -> None:
    ledger = QualityLedger(None)
    ledger.feedback("p1", "acme-on", "converted", int(T0 * 1000))
    assert ledger.store is None
    assert ledger.pending_fields == 0
