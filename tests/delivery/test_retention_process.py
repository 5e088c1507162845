"""Dead letters (a lead's email, phone, name) leave Redis at their retention, under a real
``leadgate worker`` process on a real Redis, whether or not newer dead letters arrive: the
worker trims on a timer (docs/delivery.md, "Retention")."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from processes import GatewayLauncher
from support import ADVERTISER, plain_client

from delivery.crm import CRM, Reply
from delivery.harness import Harness, harnesses
from delivery.records import SECRET
from gateway.storage import keys

RETENTION_S = 2.0
#: The worker's retention loop runs every half retention when that is under a minute.
TRIM_EVERY_S = RETENTION_S / 2

CONFIG = """
channels: [{{id: email, name: Emailing}}]
delivery:
  dead_letter_retention: {retention}
  allow_networks: [127.0.0.0/8]
advertisers:
  - id: acme
    delivery: {{adapter: webhook, url: {url}, secret_env: CRM_SECRET}}
campaigns:
  - {{id: acme-always-on, advertiser: acme, kind: always_on}}
partners:
  - id: p-mailfox
    api_keys: ["sha256:{zeros}"]
    channels: [email]
    campaigns: [acme-always-on]
"""


@pytest_asyncio.fixture
async def crm() -> AsyncIterator[CRM]:
    receiver = CRM()
    await receiver.start()
    try:
        yield receiver
    finally:
        await receiver.stop()


@pytest_asyncio.fixture
async def h(request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    async for made in harnesses("redis", request):
        yield await made.make(retention_s=RETENTION_S)


async def dead_letter_ids(h: Harness) -> list[str]:
    return [d.lead_id for d in await h.queue.dead_letters(ADVERTISER)]


async def wait_for_dead_letter(h: Harness, lead: str, timeout_s: float) -> float:
    """Until ``lead`` is a dead letter; when (monotonic seconds)."""
    deadline = time.monotonic() + timeout_s
    while lead not in await dead_letter_ids(h):
        assert time.monotonic() < deadline, "the refused lead never became a dead letter"
        await asyncio.sleep(0.02)
    return time.monotonic()


async def test_a_dead_letter_is_gone_within_its_retention_with_newer_ones_arriving(
    crm: CRM, h: Harness, gateways: GatewayLauncher, tmp_path: Path
) -> None:
    crm.script("/acme", [Reply.error(400)] * 10)  # every lead refused: a dead letter at once
    config = tmp_path / "leadgate.yaml"
    config.write_text(
        CONFIG.format(retention=f"{RETENTION_S:g}s", url=crm.url("/acme"), zeros="0" * 64)
    )
    assert h.redis_url is not None
    await gateways.astart_worker(config, redis_url=h.redis_url, env={"CRM_SECRET": SECRET})

    (first,) = await h.accept(1)
    first_dead_at = await wait_for_dead_letter(h, first, timeout_s=10)
    await asyncio.sleep(RETENTION_S * 0.6)
    (second,) = await h.accept(1)  # keeps the stream (and its TTL) alive past the first's end
    second_dead_at = await wait_for_dead_letter(h, second, timeout_s=10)

    # The first leaves at its retention plus at most one trim period, though no dead letter
    # arrived after the second to trim it on the way in: the worker's timer did.
    bound_s = RETENTION_S + TRIM_EVERY_S + 1.0  # + scheduling slack on a loaded machine
    while first in await dead_letter_ids(h):
        assert time.monotonic() - first_dead_at < bound_s, "a dead letter outlived its retention"
        await asyncio.sleep(0.05)
    assert second in await dead_letter_ids(h)  # not before its own time

    while second in await dead_letter_ids(h):
        assert time.monotonic() - second_dead_at < bound_s, "a dead letter outlived its retention"
        await asyncio.sleep(0.05)
    client = plain_client(h.redis_url)
    try:
        # Nothing with the leads' personal data is left anywhere in this advertiser's queue.
        for key in (keys.delivery_dead(ADVERTISER), keys.deliveries(ADVERTISER)):
            for _, fields in await client.xrange(key):
                assert b"jeanne.martin@example.org" not in fields.get(b"record", b"")
        assert not await client.exists(keys.delivery_dead(ADVERTISER))
    finally:
        await client.aclose()
