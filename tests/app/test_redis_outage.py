"""Redis going away and coming back, under the real process, without restarting the gateway.

While Redis is down every post is answered with 503 problem+json and ``Retry-After`` (never
500, never a decision, never left waiting: the test client gives up after
``REQUEST_TIMEOUT_S``), ``/healthz`` stays 200 (the process is alive) and ``/readyz`` turns
503 (take it out of the load balancer). A Redis restarted on the same port is empty (it
lost even the scripts): the gateway reloads them on NOSCRIPT and decides again by itself.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import Callable
from pathlib import Path

import aiohttp
import redis.asyncio
from http_support import Reply, decided, get_status, post_lead
from processes import GatewayLauncher, GatewayProcess, wait_until
from prom_support import sample
from support import BUSY_SCRIPT, RedisServer

from gateway.storage import scripts

#: How long a gateway may take to decide again once Redis is back.
RECOVERY_S = 10.0
START_REFUSAL_S = 20.0


def new_lead() -> dict[str, object]:
    return {
        "campaign": "acme-always-on",
        "email": f"outage-{uuid.uuid4().hex[:12]}@example.fr",
        "first_name": "Robin",
    }


def assert_unavailable(reply: Reply) -> None:
    assert reply.status == 503, (reply.status, reply.body)
    assert reply.headers["Content-Type"].startswith("application/problem+json")
    assert int(reply.headers["Retry-After"]) >= 1
    assert reply.body["status"] == 503
    assert reply.body["type"] == "urn:leadgate:problem:store-unavailable"
    assert "decision" not in reply.body
    assert "lead_id" not in reply.body


async def assert_outage_answers(http: aiohttp.ClientSession, gateway: GatewayProcess) -> None:
    for _ in range(5):
        assert_unavailable(await post_lead(http, gateway, new_lead()))
    assert await get_status(http, f"{gateway.url}/healthz") == 200
    assert await get_status(http, f"{gateway.url}/readyz") == 503


async def wait_deciding(http: aiohttp.ClientSession, gateway: GatewayProcess) -> None:
    """Until a fresh lead is accepted again; every reply on the way is a 200 decision or a 503
    problem (never a 500)."""

    async def accepted() -> bool:
        reply = await post_lead(http, gateway, new_lead())
        if reply.status == 503:
            assert_unavailable(reply)
            return False
        assert reply.status == 200, (reply.status, reply.body)
        assert reply.body["decision"] == "accepted", reply.body
        return True

    await wait_until(accepted, RECOVERY_S, interval_s=0.1)


def stream_length(server: RedisServer) -> int:
    with server.client() as client:
        return sum(int(client.xlen(s)) for s in client.scan_iter(match="*:deliveries"))


async def test_redis_killed_then_restarted_under_a_running_gateway(
    gateways: GatewayLauncher,
    http: aiohttp.ClientSession,
    spare_redis: Callable[[], RedisServer],
) -> None:
    server = spare_redis()
    server.start()
    gateway = await gateways.astart(redis_url=server.url)
    for _ in range(3):
        decided(await post_lead(http, gateway, new_lead()), "accepted")
    assert await get_status(http, f"{gateway.url}/readyz") == 200

    server.kill()
    await assert_outage_answers(http, gateway)

    server.start()  # same port, empty: no keys, no scripts
    with server.client() as client:
        assert client.script_exists(*(s.sha for s in scripts.ALL)) == [False] * len(scripts.ALL)
    await wait_deciding(http, gateway)
    assert await get_status(http, f"{gateway.url}/readyz") == 200
    assert gateway.returncode is None  # never restarted
    with server.client() as client:
        # Reloaded after NOSCRIPT (decide and reserve ran; release only loads with them).
        assert client.script_exists(*(s.sha for s in scripts.ALL)) == [True] * len(scripts.ALL)
    assert stream_length(server) == 1  # the acceptance is in the new Redis
    records = gateway.log_records()
    assert not [r for r in records if r.get("level") == "critical"]
    assert not [r for r in records if r.get("msg") == "unhandled error"], records


async def test_gateway_started_while_redis_is_down_serves_once_it_comes_up(
    gateways: GatewayLauncher,
    http: aiohttp.ClientSession,
    spare_redis: Callable[[], RedisServer],
) -> None:
    server = spare_redis()  # not started: its port refuses connections
    gateway = await gateways.astart(redis_url=server.url)
    await assert_outage_answers(http, gateway)
    assert "redis unreachable at start" in gateway.log_text()

    server.start()
    await wait_deciding(http, gateway)
    assert await get_status(http, f"{gateway.url}/readyz") == 200
    assert stream_length(server) == 1


async def test_an_evicting_redis_that_appears_after_start_is_not_used(
    gateways: GatewayLauncher,
    http: aiohttp.ClientSession,
    spare_redis: Callable[[], RedisServer],
) -> None:
    """The start-up refusal of an evicting Redis (next test) must not depend on start order:
    pods often start before Redis does. Fails today: ``App.open_store`` runs
    ``server_checks`` only when Redis answers at start, so a gateway started first decides
    leads on an ``allkeys-lru`` Redis, silently, for its whole life."""
    server = spare_redis()  # down while the gateway starts
    gateway = await gateways.astart(redis_url=server.url)
    await assert_outage_answers(http, gateway)
    server.start()
    with server.client() as client:
        client.config_set("maxmemory-policy", "allkeys-lru")
    replies = [await post_lead(http, gateway, new_lead()) for _ in range(3)]
    assert "maxmemory-policy" in gateway.log_text(), "the evicting policy was never reported"
    assert [r.status for r in replies] == [503] * 3, [r.body for r in replies]
    assert await get_status(http, f"{gateway.url}/readyz") == 503
    assert stream_length(server) == 0


async def test_a_redis_replaced_by_an_evicting_one_is_refused_after_the_reconnect(
    gateways: GatewayLauncher,
    http: aiohttp.ClientSession,
    spare_redis: Callable[[], RedisServer],
) -> None:
    """The settings are checked on every connection the gateway opens, not once per process:
    a Redis restarted (or failed over) with an evicting policy behind a running gateway is
    refused as soon as the gateway reconnects, before any lead reaches it."""
    server = spare_redis()
    server.start()
    gateway = await gateways.astart(redis_url=server.url)
    decided(await post_lead(http, gateway, new_lead()), "accepted")

    server.kill()
    server.start()  # the same address, now an evicting Redis
    with server.client() as client:
        client.config_set("maxmemory-policy", "allkeys-lru")
    replies = [await post_lead(http, gateway, new_lead()) for _ in range(3)]
    assert [r.status for r in replies] == [503] * 3, [r.body for r in replies]
    for reply in replies:
        assert_unavailable(reply)
    assert "maxmemory-policy is allkeys-lru" in gateway.log_text()
    assert stream_length(server) == 0  # nothing was decided on it

    with server.client() as client:  # fixed: the next connection is accepted
        client.config_set("maxmemory-policy", "noeviction")
    await wait_deciding(http, gateway)


async def test_a_frozen_redis_under_load_answers_every_request_503(
    gateways: GatewayLauncher,
    http: aiohttp.ClientSession,
    spare_redis: Callable[[], RedisServer],
) -> None:
    """SIGSTOP, not a kill: connections are accepted and nothing answers. Every request of a
    load that queues thousands of commands behind the stuck round trips gets its 503 with
    Retry-After, each failed by its own deadline (``leadgate_redis_errors_total{kind=
    "deadline"}`` counts them; the in-process test in tests/storage checks the deadline
    itself), and the gateway decides again once Redis runs."""
    server = spare_redis()
    server.start()
    gateway = await gateways.astart(redis_url=server.url)
    decided(await post_lead(http, gateway, new_lead()), "accepted")
    server.freeze()
    try:
        connector = aiohttp.TCPConnector(limit=600)
        async with aiohttp.ClientSession(connector=connector) as many:
            replies = await asyncio.gather(
                *(post_lead(many, gateway, new_lead()) for _ in range(900))
            )
    finally:
        server.thaw()
    for reply in replies:
        assert_unavailable(reply)
    deadline_failures = sample(gateway.metrics(), "leadgate_redis_errors_total", kind="deadline")
    assert deadline_failures >= len(replies)
    await wait_deciding(http, gateway)


async def test_evicting_redis_is_refused_at_start_unless_allowed(
    gateways: GatewayLauncher,
    http: aiohttp.ClientSession,
    spare_redis: Callable[[], RedisServer],
) -> None:
    server = spare_redis()
    server.start()
    with server.client() as client:
        client.config_set("maxmemory-policy", "allkeys-lru")

    refused = gateways.spawn(redis_url=server.url)
    assert await refused.await_exit(START_REFUSAL_S) == 2, refused.log_tail()
    log = refused.log_text()
    assert "maxmemory-policy is allkeys-lru" in log, log
    assert "LEADGATE_REDIS_ALLOW_EVICTION" in log, log
    assert "Traceback" not in log, log

    allowed = gateways.spawn(redis_url=server.url, env={"LEADGATE_REDIS_ALLOW_EVICTION": "true"})
    await allowed.await_healthy()
    decided(await post_lead(http, allowed, new_lead()), "accepted")
    assert await get_status(http, f"{allowed.url}/readyz") == 200
    # Started anyway, but it still says why it should not have been.
    assert "maxmemory-policy is allkeys-lru" in allowed.log_text()


SOLO_KEY = "solo-test-key"
#: No contact pressure, no network dedup: a lead's first Redis round trip is the decision.
SOLO_CONFIG = """\
channels: [{{id: email}}]
advertisers: [{{id: solo}}]
campaigns:
  - {{id: solo-always-on, advertiser: solo, kind: always_on,
     dedup: [{{scope: campaign, window: 30d}}]}}
partners:
  - {{id: p-solo, api_keys: ["sha256:{key_hash}"], channels: [email], campaigns: [solo-always-on]}}
"""


def solo_lead() -> dict[str, object]:
    return {**new_lead(), "campaign": "solo-always-on"}


async def test_a_503_after_a_lost_reply_says_so_and_a_keyed_retry_gets_the_real_answer(
    gateways: GatewayLauncher,
    http: aiohttp.ClientSession,
    spare_redis: Callable[[], RedisServer],
    tmp_path: Path,
) -> None:
    """When Redis is slow rather than down, the decision may run after the gateway gave up
    waiting: the 503 must not claim the lead was refused, and a retry with the same
    Idempotency-Key must return the real answer, with the lead queued exactly once."""
    config = tmp_path / "solo.yaml"
    key_hash = hashlib.sha256(SOLO_KEY.encode()).hexdigest()
    config.write_text(SOLO_CONFIG.format(key_hash=key_hash), encoding="utf-8")
    server = spare_redis()
    server.start()
    gateway = await gateways.astart(redis_url=server.url, config=config)
    decided(await post_lead(http, gateway, solo_lead(), api_key=SOLO_KEY), "accepted")

    lead = solo_lead()
    blocker = redis.asyncio.Redis.from_url(server.url)
    # Redis runs one script at a time: 3 s, below the 5 s after which it answers BUSY to all.
    busy = asyncio.ensure_future(blocker.eval(BUSY_SCRIPT, 0, 3000))
    try:
        await asyncio.sleep(0.2)
        assert not busy.done()
        reply = await post_lead(http, gateway, lead, api_key=SOLO_KEY, idempotency_key="k-1")
        assert_unavailable(reply)
        assert "may or may not have been accepted" in str(reply.body["detail"])
        async with asyncio.timeout(10.0):
            await busy
    finally:
        if not busy.done():
            busy.cancel()
        await asyncio.gather(busy, return_exceptions=True)
        await blocker.aclose()
    retry = await post_lead(http, gateway, lead, api_key=SOLO_KEY, idempotency_key="k-1")
    assert retry.status == 200, retry.body
    assert retry.body["decision"] == "accepted", retry.body
    again = await post_lead(http, gateway, lead, api_key=SOLO_KEY, idempotency_key="k-1")
    assert again.body["lead_id"] == retry.body["lead_id"]
    assert stream_length(server) == 2, "the lead was queued twice, or not at all"


async def test_a_503_while_redis_is_down_says_the_lead_was_not_accepted(
    gateways: GatewayLauncher,
    http: aiohttp.ClientSession,
    spare_redis: Callable[[], RedisServer],
) -> None:
    server = spare_redis()  # never started: connections are refused, nothing can have run
    gateway = await gateways.astart(redis_url=server.url)
    reply = await post_lead(http, gateway, new_lead())
    assert_unavailable(reply)
    assert "the lead was not accepted" in str(reply.body["detail"])
