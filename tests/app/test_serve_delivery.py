"""``leadgate serve`` runs the delivery worker in its own process on the embedded store (and
with ``--with-worker`` on Redis), and mounts the admin routes when ``LEADGATE_ADMIN_TOKEN`` is
set: the example config, a real local CRM, the real gateway process."""

from __future__ import annotations

import signal
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest_asyncio
from delivery.crm import CRM, Reply
from http_support import post_lead
from processes import EXAMPLE_CONFIG, REPO_ROOT, GatewayLauncher
from standardwebhooks import Webhook

from gateway.app.demo import DEMO_TOKEN, DEMO_WEBHOOK_SECRET

ADMIN_TOKEN = "admin-" + "t" * 40
SECRETS = {
    "LEADGATE_WEBHOOK_SECRET_ACME": DEMO_WEBHOOK_SECRET,
    "LEADGATE_NOVABANK_TOKEN": DEMO_TOKEN,
    "LEADGATE_SOLARIS_API_KEY": DEMO_TOKEN,
    "LEADGATE_WEBHOOK_SECRET_HELIO": DEMO_WEBHOOK_SECRET,
    "LEADGATE_VOLTAIC_TOKEN": DEMO_TOKEN,
}


def example_for(crm: CRM, tmp_path: Path) -> Path:
    """The example config with its endpoints on ``crm`` (a free port, not 8099)."""
    text = EXAMPLE_CONFIG.read_text(encoding="utf-8")
    assert text.count("http://127.0.0.1:8099") == 5
    text = text.replace("http://127.0.0.1:8099", crm.url("").rstrip("/"))
    text = text.replace("rules_dir: ../rules", f"rules_dir: {REPO_ROOT / 'rules'}")
    path = tmp_path / "leadgate.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def marie() -> dict[str, object]:
    return {
        "campaign": "acme-always-on",
        "email": f"marie.{uuid.uuid4().hex[:10]}@example.fr",
        "first_name": "Marie",
        "last_name": "Dupont",
        "phone": "06 12 34 56 78",
        "postal_code": "75011",
        "consent": True,
    }


@pytest_asyncio.fixture
async def crm() -> AsyncIterator[CRM]:
    receiver = CRM()
    await receiver.start()
    try:
        yield receiver
    finally:
        await receiver.stop()


async def test_serve_delivers_accepted_leads_signed_and_drains_on_sigterm(
    gateways: GatewayLauncher, http: aiohttp.ClientSession, crm: CRM, tmp_path: Path
) -> None:
    gateway = await gateways.astart(config=example_for(crm, tmp_path), env=SECRETS)
    reply = await post_lead(http, gateway, marie())
    assert reply.body["decision"] == "accepted", reply.body
    (got,) = await crm.wait_for(1, timeout_s=10)
    assert got.headers["webhook-id"] == reply.body["lead_id"]
    assert got.headers["idempotency-key"] == reply.body["lead_id"]
    Webhook(DEMO_WEBHOOK_SECRET).verify(got.body, dict(got.headers))
    gateway.send_signal(signal.SIGTERM)
    assert await gateway.await_exit(15.0) == 0, gateway.log_tail()


async def test_admin_routes_need_their_own_token(
    gateways: GatewayLauncher, http: aiohttp.ClientSession, crm: CRM, tmp_path: Path
) -> None:
    config = example_for(crm, tmp_path)
    gateway = await gateways.astart(
        config=config, env={**SECRETS, "LEADGATE_ADMIN_TOKEN": ADMIN_TOKEN}
    )
    url = f"{gateway.url}/v1/admin/deliveries"
    async with http.get(url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as response:
        assert response.status == 200, await response.text()
    async with http.get(url, headers={"Authorization": "Bearer demo-mailfox-key"}) as response:
        assert response.status == 401
    async with http.get(url) as response:
        assert response.status == 401

    without = await gateways.astart(config=config, env=SECRETS)
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    async with http.get(f"{without.url}/v1/admin/deliveries", headers=admin) as response:
        assert response.status == 404


async def test_without_the_endpoint_secrets_it_serves_and_says_why_nothing_is_sent(
    gateways: GatewayLauncher, http: aiohttp.ClientSession, crm: CRM, tmp_path: Path
) -> None:
    gateway = await gateways.astart(config=example_for(crm, tmp_path))
    assert (await post_lead(http, gateway, marie())).body["decision"] == "accepted"
    (line,) = [r for r in gateway.log_records() if r["msg"].startswith("delivery worker not")]
    assert "LEADGATE_WEBHOOK_SECRET_ACME" in line["msg"]
    assert crm.requests == []


async def test_a_shared_sale_reaches_both_crms_each_delivered_and_retried_on_its_own(
    gateways: GatewayLauncher, http: aiohttp.ClientSession, crm: CRM, tmp_path: Path
) -> None:
    """The example's energy-week-2026 sells each lead to ACME and Hélio: two deliveries, two
    CRMs. Hélio's CRM fails the first attempt: only Hélio's delivery is retried."""
    crm.script("/helio/leads", [Reply.error(503)])
    gateway = await gateways.astart(config=example_for(crm, tmp_path), env=SECRETS)
    lead = {**marie(), "campaign": "energy-week-2026"}
    reply = await post_lead(http, gateway, lead)
    assert reply.body["decision"] == "accepted", reply.body
    assert reply.body["sold_to"] == ["acme-energy", "helio-install"]
    lead_id = reply.body["lead_id"]

    acme = await crm.wait_for(1, timeout_s=10, path="/acme/leads")
    helio = await crm.wait_for(2, timeout_s=20, path="/helio/leads")  # the 503, then the retry

    for got in (*acme, *helio):
        Webhook(DEMO_WEBHOOK_SECRET).verify(got.body, dict(got.headers))
        assert got.headers["webhook-id"] == lead_id
    assert acme[0].json()["data"]["price"] == 14.0
    assert [h.json()["data"]["price"] for h in helio] == [11.0, 11.0]
    assert len(crm.on("/acme/leads")) == 1  # ACME's delivery was not retried
    gateway.send_signal(signal.SIGTERM)
    assert await gateway.await_exit(15.0) == 0, gateway.log_tail()
