"""The admin API's delivery routes over HTTP: its own token, dead letters listed without
personal data, replays (one lead, an advertiser since a time), re-enabling an endpoint."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from delivery.harness import OTHER, Harness, harnesses, now_ms
from delivery.records import lead
from support import ADVERTISER, free_port

from gateway.app.root import App
from gateway.app.settings import Settings
from gateway.config.environment import Environment
from gateway.config.load import parse_config
from gateway.delivery.queue_base import LastResponse
from gateway.types import AdvertiserId, FingerprintKey, LeadId
from gateway.web.app import create_ops_app

TOKEN = "admin-token-for-tests-0123456789"


@pytest_asyncio.fixture
async def h(request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    async for made in harnesses("embedded", request):
        queued = await made.make()
        await queued.queue.prepare([ADVERTISER, OTHER])
        yield queued


def app_over(h: Harness, token: str | None) -> App:
    """The composition root over the harness's store and queue, with ``token`` the admin's."""
    config = parse_config(
        {
            "channels": [{"id": "email"}],
            "advertisers": [{"id": ADVERTISER}, {"id": OTHER}],
            "campaigns": [],
            "partners": [],
        }
    )
    environment = Environment(
        fingerprint_keys=(FingerprintKey("t1", b"leadgate-tests-fingerprint-key-0"),),
        admin_token=token,
    )
    return App(Settings.of(config, environment), store=h.store, queue=h.queue)


async def serve(h: Harness, token: str | None) -> tuple[web.AppRunner, str]:
    gateway = app_over(h, token)
    app = create_ops_app(gateway, admin=gateway.admin_api(), metrics=False)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}/v1/admin/deliveries"


@pytest_asyncio.fixture
async def api(h: Harness) -> AsyncIterator[str]:
    runner, base = await serve(h, TOKEN)
    try:
        yield base
    finally:
        await runner.cleanup()


@pytest_asyncio.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=5), headers={"Authorization": f"Bearer {TOKEN}"}
    ) as session:
        yield session


async def dead_letter(h: Harness, n: int, advertiser: AdvertiserId = ADVERTISER) -> list[LeadId]:
    ids = await h.accept(n, advertiser=advertiser)
    for c in await h.queue.read(advertiser, "w", 100, 0):
        await h.queue.dead(c, "rejected_by_advertiser", LastResponse(422, "HTTP 422"), now_ms())
    return ids


async def test_without_a_token_configured_there_is_no_admin_api(h: Harness) -> None:
    runner, base = await serve(h, None)
    try:
        async with aiohttp.ClientSession() as http, http.get(base) as response:
            assert response.status == 404
    finally:
        await runner.cleanup()


@pytest.mark.parametrize(
    "authorization", [None, "Bearer wrong", "Bearer demo-mailfox-key", f"Basic {TOKEN}"]
)
async def test_anything_but_the_admin_token_is_refused(api: str, authorization: str | None) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{api}/enable", json={"advertiser": "acme"}, headers=headers) as response,
    ):
        assert response.status == 401
        assert response.content_type == "application/problem+json"
        assert (await response.json(content_type=None))["status"] == 401


async def test_dead_letters_are_listed_without_personal_data(
    h: Harness, api: str, http: aiohttp.ClientSession
) -> None:
    ids = await dead_letter(h, 2)
    async with http.get(f"{api}/dead", params={"advertiser": "acme"}) as response:
        assert response.status == 200
        rows = (await response.json())["dead_letters"]
        text = await response.text()
    assert [r["lead_id"] for r in rows] == ids
    assert rows[0]["reason"] == "rejected_by_advertiser"
    assert (rows[0]["status"], rows[0]["campaign"], rows[0]["partner"]) == (
        422, "acme-always-on", "p-mailfox"
    )  # fmt: skip
    person = lead()
    for value in (person["email"], person["phone"], person["last_name"], person["ip"]):
        assert value not in text
    async with http.get(f"{api}/dead", params={"advertiser": "nobody"}) as response:
        assert response.status == 404
    async with http.get(f"{api}/dead", params={"since": "yesterday"}) as response:
        assert response.status == 422
        assert (await response.json(content_type=None))["errors"][0]["field"] == "since"


async def test_replay_one_lead_then_an_advertiser_since_a_time(
    h: Harness, api: str, http: aiohttp.ClientSession
) -> None:
    first, second = await dead_letter(h, 2)
    (other,) = await dead_letter(h, 1, advertiser=OTHER)
    async with http.post(f"{api}/replay", json={"lead_id": first}) as response:
        assert response.status == 200
        assert await response.json() == {"replayed": 1, "advertiser": "acme"}
    async with http.post(f"{api}/replay", json={"lead_id": first}) as response:
        assert response.status == 404  # no longer a dead letter
    async with http.post(f"{api}/replay", json={"advertiser": "acme", "since": "1h"}) as response:
        assert await response.json() == {"replayed": 1, "advertiser": "acme"}
    back = await h.queue.read(ADVERTISER, "w", 100, 0)
    assert sorted(c.delivery.lead_id for c in back) == sorted([first, second])
    assert all(c.delivery.attempt == 1 for c in back)
    assert [d.lead_id for d in await h.queue.dead_letters(OTHER)] == [other]  # untouched


async def test_enable_and_state(h: Harness, api: str, http: aiohttp.ClientSession) -> None:
    await h.queue.disable(ADVERTISER, "HTTP 410: endpoint gone", now_ms())
    async with http.get(api) as response:
        state = (await response.json())["advertisers"]
    assert state["acme"]["disabled"] is True
    assert state["novabank"]["disabled"] is False
    async with http.post(f"{api}/enable", json={"advertiser": "acme"}) as response:
        assert await response.json() == {"advertiser": "acme", "was_disabled": True}
    assert not await h.queue.disabled(ADVERTISER)
    async with http.post(f"{api}/enable", json={"advertiser": "ghost"}) as response:
        assert response.status == 404
