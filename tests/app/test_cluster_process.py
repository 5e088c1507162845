"""The real gateway process on a real 3-primary Redis Cluster (``redis+cluster://``): it loads
its scripts on every primary, decides, dedups across shards, and ``leadgate erase`` and the
partner report work against the cluster."""

from __future__ import annotations

import signal
import uuid

import aiohttp
from http_support import post_lead
from processes import GatewayLauncher

from app.test_admin_process import lead, leadgate


async def test_serve_on_a_redis_cluster(
    gateways: GatewayLauncher, http: aiohttp.ClientSession, cluster_url: str
) -> None:
    gateway = await gateways.astart(redis_url=cluster_url)
    async with http.get(f"{gateway.url}/readyz") as response:
        assert response.status == 200, await response.text()
    people = [f"c{n}.{uuid.uuid4().hex[:8]}@example.fr" for n in range(12)]
    for email in people:
        first = await post_lead(http, gateway, lead(email))
        assert first.body.get("decision") == "accepted", first.body
        again = await post_lead(http, gateway, lead(email))
        assert again.body.get("decision") == "duplicate", again.body
    done = leadgate(cluster_url, "erase", "--email", people[0], "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    assert '"undelivered_leads":1' in done.stdout
    assert (await post_lead(http, gateway, lead(people[0]))).body.get("decision") == "accepted"
    gateway.send_signal(signal.SIGTERM)
    assert await gateway.await_exit(15.0) == 0, gateway.log_tail()
    report = leadgate(cluster_url, "report", "partners", "--since", "1d")
    assert report.returncode == 0, report.stdout + report.stderr
    mailfox = next(line for line in report.stdout.splitlines() if "p-mailfox" in line)
    assert mailfox.split()[1:3] == ["25", "13"]  # 25 posted, 13 accepted
