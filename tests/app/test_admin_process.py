"""The admin API on its own listener, ``leadgate erase`` and ``leadgate report partners``
against the real gateway process on a real Redis: what an ops team runs."""

from __future__ import annotations

import signal
import subprocess
import uuid
from collections.abc import Callable

import aiohttp
import redis
from http_support import post_lead
from processes import EXAMPLE_CONFIG, GatewayLauncher, run_leadgate
from support import RedisServer, free_port

ADMIN_TOKEN = "admin-" + "p" * 40


def lead(email: str, campaign: str = "acme-always-on") -> dict[str, object]:
    return {
        "campaign": campaign,
        "email": email,
        "first_name": "Zoé",
        "last_name": "Leroy",
        # 06 12 …: a range phonenumbers knows as French mobiles (not every 06 prefix is).
        "phone": f"06 12 {uuid.uuid4().int % 10**6:06d}",
        "postal_code": "69003",
        "consent": True,
    }


def leadgate(redis_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """A ``leadgate`` command on the example config and the Redis at ``redis_url``, with the
    fingerprint key the gateways of these tests use."""
    return run_leadgate(*args, redis_url=redis_url, env={"LEADGATE_CONFIG": str(EXAMPLE_CONFIG)})


def stored_text(url: str) -> str:
    """Every key, value and stream entry of the Redis at ``url``, as one text."""
    client = redis.Redis.from_url(url, decode_responses=True)
    parts: list[str] = []
    for key in client.scan_iter(count=1000):
        parts.append(key)
        kind = client.type(key)
        if kind == "string":
            parts.append(str(client.get(key)))
        elif kind == "hash":
            parts.append(repr(client.hgetall(key)))
        elif kind == "zset":
            parts.append(repr(client.zrange(key, 0, -1)))
        elif kind == "stream":
            parts.append(repr(client.xrange(key)))
    client.close()
    return "\n".join(parts)


async def test_admin_port_erase_and_report_against_the_real_process(
    gateways: GatewayLauncher,
    http: aiohttp.ClientSession,
    spare_redis: Callable[[], RedisServer],
) -> None:
    server = spare_redis()
    server.start()
    admin_port = free_port()
    gateway = await gateways.astart(
        redis_url=server.url,
        env={"LEADGATE_ADMIN_TOKEN": ADMIN_TOKEN, "LEADGATE_ADMIN_PORT": str(admin_port)},
    )
    admin = f"http://127.0.0.1:{admin_port}/v1/admin"
    bearer = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    # Its own port: the public one does not know the admin routes, the admin port does.
    async with http.get(f"{gateway.url}/v1/admin/deliveries", headers=bearer) as response:
        assert response.status == 404
    async with http.get(f"{admin}/deliveries", headers=bearer) as response:
        assert response.status == 200
    async with http.get(
        f"{admin}/deliveries", headers={"Authorization": "Bearer demo-mailfox-key"}
    ) as response:
        assert response.status == 401

    zoe, yann = f"zoe.{uuid.uuid4().hex[:8]}@example.fr", f"yann.{uuid.uuid4().hex[:8]}@example.fr"
    for email in (zoe, yann):
        reply = await post_lead(http, gateway, lead(email))
        assert reply.body.get("decision") == "accepted", reply.body
    assert zoe in stored_text(server.url)

    # Erase Zoé through the admin port, Yann with the command line.
    async with http.delete(
        f"{admin}/identities", json={"email": zoe.upper()}, headers=bearer
    ) as response:
        assert response.status == 200, await response.text()
        body = await response.json()
    assert body["erased"]["undelivered_leads"] == 1
    done = leadgate(server.url, "erase", "--email", yann, "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    assert '"undelivered_leads":1' in done.stdout
    assert yann not in done.stdout + done.stderr
    text = stored_text(server.url)
    assert zoe not in text
    assert yann not in text
    # Forgotten: both are new again.
    for email in (zoe, yann):
        again = await post_lead(http, gateway, lead(email))
        assert again.body.get("decision") == "accepted", again.body
    # A bad value is refused, naming the field, never quoting it.
    bad = leadgate(server.url, "erase", "--email", "zoe@@example")
    assert bad.returncode == 2
    assert "email" in bad.stdout
    assert "zoe@@" not in bad.stdout

    # The report: the gateway flushes its counts at shutdown; the command reads Redis.
    gateway.send_signal(signal.SIGTERM)
    assert await gateway.await_exit(15.0) == 0, gateway.log_tail()
    report = leadgate(server.url, "report", "partners", "--since", "7d")
    assert report.returncode == 0, report.stdout + report.stderr
    mailfox = next(line for line in report.stdout.splitlines() if "p-mailfox" in line)
    assert mailfox.split()[1:3] == ["4", "4"]  # four leads posted, four accepted
