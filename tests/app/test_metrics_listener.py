"""``/metrics`` on its own listener, never on the partner-facing port, on the real process.

The page tells every partner's, campaign's and advertiser's volumes, duplicate and return
rates and cap usage: a partner must not read it. It is served on ``LEADGATE_METRICS_PORT``
(with the probes ``/healthz`` and ``/readyz``), behind ``LEADGATE_METRICS_TOKEN`` when one is
set, or on the admin listener when both name the same port; the public port answers 404.
"""

from __future__ import annotations

import aiohttp
from http_support import get_status
from processes import GatewayLauncher, GatewayProcess
from support import free_port

METRICS_TOKEN = "metrics-" + "m" * 40
ADMIN_TOKEN = "admin-" + "a" * 40
PARTNER_KEY = {"Authorization": "Bearer demo-mailfox-key"}


async def fetch(
    http: aiohttp.ClientSession, url: str, headers: dict[str, str] | None = None
) -> tuple[int, str]:
    async with http.get(url, headers=headers or {}) as response:
        return response.status, await response.text()


async def assert_not_public(http: aiohttp.ClientSession, gateway: GatewayProcess) -> None:
    """A partner on the public port, with its key or without, finds no metrics there."""
    for headers in (PARTNER_KEY, {}):
        status, body = await fetch(http, f"{gateway.url}/metrics", headers)
        assert status == 404, body
        assert "leadgate_" not in body


async def test_a_partner_cannot_read_the_metrics_and_ops_can(
    gateways: GatewayLauncher, http: aiohttp.ClientSession
) -> None:
    gateway = await gateways.astart()
    await assert_not_public(http, gateway)
    status, page = await fetch(http, gateway.metrics_url)
    assert status == 200
    assert 'leadgate_leads_total{campaign="acme-always-on"' in page
    # The probes answer on both: the public port (readiness: can partners be served?) and
    # the metrics listener.
    for base in (gateway.url, gateway.metrics_url.removesuffix("/metrics")):
        assert await get_status(http, f"{base}/healthz") == 200
        assert await get_status(http, f"{base}/readyz") == 200
    assert f'"metrics":"127.0.0.1:{gateway.metrics_port}"' in gateway.log_text()


async def test_the_metrics_token_is_required_when_set(
    gateways: GatewayLauncher, http: aiohttp.ClientSession
) -> None:
    gateway = await gateways.astart(env={"LEADGATE_METRICS_TOKEN": METRICS_TOKEN})
    for headers in ({}, PARTNER_KEY, {"Authorization": f"Bearer {METRICS_TOKEN[:-1]}"}):
        status, body = await fetch(http, gateway.metrics_url, headers)
        assert status == 401, body
        assert "leadgate_leads_total" not in body
    status, page = await fetch(
        http, gateway.metrics_url, {"Authorization": f"Bearer {METRICS_TOKEN}"}
    )
    assert status == 200
    assert "leadgate_leads_total" in page
    # The probes need no token (kubelet sends none).
    probe = gateway.metrics_url.removesuffix("/metrics") + "/healthz"
    assert await get_status(http, probe) == 200
    await assert_not_public(http, gateway)


async def test_metrics_and_admin_can_share_one_ops_port(
    gateways: GatewayLauncher, http: aiohttp.ClientSession
) -> None:
    ops = free_port()
    gateway = await gateways.astart(
        env={
            "LEADGATE_ADMIN_TOKEN": ADMIN_TOKEN,
            "LEADGATE_ADMIN_PORT": str(ops),
            "LEADGATE_METRICS_PORT": str(ops),
        }
    )
    status, page = await fetch(http, f"http://127.0.0.1:{ops}/metrics")
    assert status == 200
    assert "leadgate_build_info" in page
    status, _ = await fetch(
        http,
        f"http://127.0.0.1:{ops}/v1/admin/deliveries",
        {"Authorization": f"Bearer {ADMIN_TOKEN}"},
    )
    assert status == 200
    await assert_not_public(http, gateway)


async def test_no_metrics_listener_when_its_port_is_0(
    gateways: GatewayLauncher, http: aiohttp.ClientSession
) -> None:
    gateway = await gateways.astart(env={"LEADGATE_METRICS_PORT": "0"})
    assert gateway.metrics_port is None
    await assert_not_public(http, gateway)
    assert '"metrics":null' in gateway.log_text()
