"""A Redis that refuses a decision "for now" is a store unavailable (503, retry later), never
an internal error: a primary demoted to a replica by a failover (``READONLY``), a Redis full
until keys expire (``OOM``), one busy with a script past its reply threshold (``BUSY``). In
each, nothing of the lead was written: the 503 says "not accepted", truthfully.

Each test has a Redis server of its own, changed in a way a shared one must not be.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
import redis
from redis.exceptions import ResponseError
from support import BUSY_SCRIPT, DAY_MS, T0, RedisServer, dedup, free_port, request

from gateway.decision.model import DecisionRequest
from gateway.errors import StoreError, StoreUnavailable
from gateway.storage.redis import RedisStore, refusal


def _lead(person: str) -> DecisionRequest:
    return request(T0, dedup=[dedup(person, window_ms=30 * DAY_MS)])


async def _ready_store(server: RedisServer) -> RedisStore:
    store = RedisStore(server.url, connections=1)
    await store.connect_all()
    await store.load_scripts()
    return store


def _keys(server: RedisServer) -> int:
    with server.client() as client:
        return int(client.dbsize())


Change = Callable[[redis.Redis], object]


@pytest.mark.parametrize(
    ("refuse", "allow", "why"),
    [
        # A failover made it a replica of a primary now gone.
        (
            lambda c: c.replicaof("127.0.0.1", free_port()),
            lambda c: c.replicaof("no", "one"),
            "ReadOnlyError",
        ),
        # Full, under noeviction (the gateway's requirement).
        (
            lambda c: c.config_set("maxmemory", "1"),
            lambda c: c.config_set("maxmemory", "0"),
            "OutOfMemoryError",
        ),
    ],
    ids=["demoted-to-replica", "full"],
)
async def test_a_redis_refusing_for_now_is_unavailable_and_nothing_is_written(
    spare_redis: Callable[[], RedisServer], refuse: Change, allow: Change, why: str
) -> None:
    server = spare_redis()
    server.start()
    store = await _ready_store(server)
    try:
        before = _keys(server)
        with server.client() as client:
            refuse(client)
        try:
            with pytest.raises(StoreUnavailable) as failed:
                await store.decide([(_lead(why), None)])
        finally:
            with server.client() as client:
                allow(client)
        assert not failed.value.outcome_unknown
        assert why in str(failed.value)
        assert _keys(server) == before
    finally:
        await store.close()


async def test_a_redis_busy_with_a_script_past_its_threshold_is_unavailable(
    spare_redis: Callable[[], RedisServer],
) -> None:
    server = spare_redis()
    server.start()
    store = await _ready_store(server)
    before = _keys(server)
    with server.client() as client:
        client.config_set("busy-reply-threshold", "20")  # ms: BUSY replies start quickly
    busy = redis.Redis.from_url(server.url)
    try:
        # A script of someone else's holds the server for 1.5 s; past 20 ms, every other
        # command is refused with BUSY instead of waiting.
        hold = asyncio.get_running_loop().run_in_executor(None, busy.eval, BUSY_SCRIPT, 0, 1500)
        await asyncio.sleep(0.3)
        with pytest.raises(StoreUnavailable) as failed:
            await store.decide([(_lead("busy"), None)])
        assert "BUSY" in str(failed.value)
        await hold
        assert _keys(server) == before
    finally:
        busy.close()
        await store.close()


@pytest.mark.parametrize(
    ("reply", "unavailable"),
    [
        ("BUSY Redis is busy running a script.", True),
        ("ERR Error running script: bad argument", False),
        ("WRONGTYPE Operation against a key holding the wrong kind of value", False),
    ],
)
def test_only_refusals_that_mean_not_now_are_unavailable(reply: str, unavailable: bool) -> None:
    error = refusal(ResponseError(reply))
    assert isinstance(error, StoreError)
    assert isinstance(error, StoreUnavailable) is unavailable
