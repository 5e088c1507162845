"""A Redis older than 7.0 is refused by name, at start and on any later connection (the
delivery worker refuses it at start, and an evicting one, as the gateway does): its
``SET ... NX GET`` is a syntax error, so every lead with an Idempotency-Key would fail. No
Redis 6 is installed here: a stand-in server speaks the protocol the gateway uses on
connecting (``CONFIG GET``, ``INFO server``; ``+OK`` to the client's own settings) and
answers as one would."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio
from delivery.records import SECRET
from http_support import decided, post_lead
from processes import GatewayLauncher, wait_until
from support import RedisServer

from app.test_redis_outage import new_lead
from gateway.storage.redis import version_problem

START_REFUSAL_S = 20.0


@pytest.mark.parametrize(
    ("info", "refused"),
    [
        ("# Server\r\nredis_version:6.2.14\r\nredis_mode:standalone\r\n", True),
        ("redis_version:6.0.0\r\n", True),
        ("redis_version:7.0.15\r\n", False),
        ("redis_version:8.2.3\r\n", False),
        ("redis_version:10.0.0\r\n", False),
        (b"redis_version:6.2.7\r\n", True),
        ("# Server\r\nserver_name:something\r\n", False),  # no version: no guess
        (None, False),
    ],
)
def test_only_a_version_below_7_0_is_refused(info: object, refused: bool) -> None:
    problem = version_problem(info)
    assert (problem is not None) == refused
    if problem is not None:
        assert "older than 7.0" in problem
        assert "redis 6." in problem


def _bulk(text: str) -> bytes:
    data = text.encode()
    return b"$%d\r\n%s\r\n" % (len(data), data)


async def _answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """One client of the stand-in Redis 6.2: RESP arrays of bulk strings in, replies out."""
    try:
        while True:
            line = await reader.readline()
            if not line:
                return
            if not line.startswith(b"*"):
                return
            args = []
            for _ in range(int(line[1:])):
                size = int((await reader.readline())[1:])
                args.append((await reader.readexactly(size + 2))[:-2].decode())
            name = args[0].upper()
            if name == "CONFIG":
                writer.write(b"*2\r\n" + _bulk("maxmemory-policy") + _bulk("noeviction"))
            elif name == "INFO":
                writer.write(_bulk("# Server\r\nredis_version:6.2.14\r\nredis_mode:standalone\r\n"))
            elif name == "HELLO":
                # As Redis 6.2 answers it: its fields, as a map (RESP3) or a flat list.
                proto = args[1] if len(args) > 1 else "2"
                fields = [("server", _bulk("redis")), ("version", _bulk("6.2.14")),
                          ("proto", b":%s\r\n" % proto.encode()), ("id", b":1\r\n"),
                          ("mode", _bulk("standalone")), ("role", _bulk("master")),
                          ("modules", b"*0\r\n")]  # fmt: skip
                head = b"%%%d\r\n" if proto == "3" else b"*%d\r\n"
                count = len(fields) if proto == "3" else 2 * len(fields)
                writer.write(head % count + b"".join(_bulk(k) + v for k, v in fields))
            elif name in ("CLIENT", "PING", "SELECT"):
                writer.write(b"+OK\r\n")
            else:
                writer.write(b"-ERR syntax error\r\n")
            await writer.drain()
    finally:
        writer.close()


@pytest_asyncio.fixture
async def redis6() -> AsyncIterator[str]:
    server = await asyncio.start_server(_answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield f"redis://127.0.0.1:{port}"


async def test_a_redis_replaced_by_an_older_one_is_refused_after_the_reconnect(
    gateways: GatewayLauncher,
    http: aiohttp.ClientSession,
    spare_redis: Callable[[], RedisServer],
) -> None:
    """A running gateway whose Redis is replaced, at the same address, by one older than 7.0
    answers 503 (nothing sent to it) and logs why, rather than fail each lead on a syntax
    error."""
    server = spare_redis()
    server.start()
    gateway = await gateways.astart(redis_url=server.url)
    decided(await post_lead(http, gateway, new_lead()), "accepted")
    server.stop()
    old = await asyncio.start_server(_answer, "127.0.0.1", server.port)
    async with old:
        reply = await post_lead(http, gateway, new_lead())
        assert reply.status == 503, (reply.status, reply.body)
        assert reply.body["type"] == "urn:leadgate:problem:store-unavailable"
        assert "decision" not in reply.body

        async def logged() -> bool:
            return "redis 6.2.14 is older than 7.0" in gateway.log_text()

        await wait_until(logged, 10.0)


async def test_a_redis_older_than_7_0_is_refused_at_start_by_name(
    gateways: GatewayLauncher, redis6: str
) -> None:
    refused = gateways.spawn(redis_url=redis6)
    assert await refused.await_exit(START_REFUSAL_S) == 2, refused.log_tail()
    log = refused.log_text()
    assert "redis 6.2.14 is older than 7.0" in log, log
    # No setting starts it anyway: the eviction override is not offered.
    assert "LEADGATE_REDIS_ALLOW_EVICTION" not in log, log
    assert "Traceback" not in log, log

    overridden = gateways.spawn(redis_url=redis6, env={"LEADGATE_REDIS_ALLOW_EVICTION": "true"})
    assert await overridden.await_exit(START_REFUSAL_S) == 2, overridden.log_tail()
    assert "redis 6.2.14 is older than 7.0" in overridden.log_text()


WORKER_CONFIG = """
channels: [{id: email}]
delivery: {allow_networks: [127.0.0.0/8]}
advertisers:
  - id: acme
    delivery: {adapter: webhook, url: "http://127.0.0.1:9/crm", secret_env: CRM_SECRET}
campaigns:
  - {id: acme-always-on, advertiser: acme, kind: always_on}
partners:
  - {id: p-mailfox, api_keys: ["sha256:%s"], channels: [email], campaigns: [acme-always-on]}
""" % ("0" * 64)


async def test_the_delivery_worker_refuses_an_old_or_evicting_redis_at_start(
    gateways: GatewayLauncher,
    redis6: str,
    spare_redis: Callable[[], RedisServer],
    tmp_path: Path,
) -> None:
    """The worker's queue is leads already accepted: an evicting Redis may drop them, an old
    one fails its scripts. It refuses both at start as the gateway does (the eviction
    override included), and delivers on a Redis that is neither."""
    config = tmp_path / "worker.yaml"
    config.write_text(WORKER_CONFIG, encoding="utf-8")
    env = {"CRM_SECRET": SECRET}

    old = gateways.spawn_worker(config, redis_url=redis6, env=env)
    assert await old.await_exit(START_REFUSAL_S) == 2, old.log_tail()
    assert "redis 6.2.14 is older than 7.0" in old.log_text()

    server = spare_redis()
    server.start()
    with server.client() as client:
        client.config_set("maxmemory-policy", "allkeys-lru")
    evicting = gateways.spawn_worker(config, redis_url=server.url, env=env)
    assert await evicting.await_exit(START_REFUSAL_S) == 2, evicting.log_tail()
    log = evicting.log_text()
    assert "maxmemory-policy is allkeys-lru" in log, log
    assert "LEADGATE_REDIS_ALLOW_EVICTION" in log, log
    assert "Traceback" not in log, log

    allowed = gateways.spawn_worker(
        config, redis_url=server.url, env={**env, "LEADGATE_REDIS_ALLOW_EVICTION": "true"}
    )
    await allowed.await_healthy()
    assert "maxmemory-policy is allkeys-lru" in allowed.log_text()

    with server.client() as client:
        client.config_set("maxmemory-policy", "noeviction")
    fine = gateways.spawn_worker(config, redis_url=server.url, env=env)
    await fine.await_healthy()
