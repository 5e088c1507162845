"""``leadgate deliveries list|replay|enable`` against a real Redis: ids and codes printed,
never a lead's fields; replays keep the lead id."""

from __future__ import annotations

import argparse
import io
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from delivery.harness import OTHER, Harness, harnesses, now_ms
from delivery.records import lead
from support import ADVERTISER

from gateway.cli import deliveries as cli
from gateway.delivery.queue_base import LastResponse
from gateway.errors import ConfigError

CONFIG = """
channels: [{id: email, name: Emailing}]
advertisers: [{id: acme}, {id: novabank}]
campaigns: [{id: acme-always-on, advertiser: acme, kind: always_on}]
partners:
  - id: p-mailfox
    api_keys: ["sha256:%s"]
    channels: [email]
    campaigns: [acme-always-on]
""" % ("0" * 64)


@pytest_asyncio.fixture
async def h(request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    async for made in harnesses("redis", request):
        queued = await made.make()
        await queued.queue.prepare([ADVERTISER, OTHER])
        yield queued


async def run(h: Harness, tmp_path: Path, *argv: str) -> str:
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers(dest="command"))
    config = tmp_path / "leadgate.yaml"
    config.write_text(CONFIG)
    args = parser.parse_args(["deliveries", "--config", str(config), *argv])
    out = io.StringIO()
    assert h.redis_url is not None
    code = await cli.run_deliveries(args, {"LEADGATE_REDIS_URL": h.redis_url}, out)
    assert code == 0, out.getvalue()
    return out.getvalue()


async def test_list_replay_and_enable(h: Harness, tmp_path: Path) -> None:
    first, second = await h.accept(2)
    one, two = await h.queue.read(ADVERTISER, "w", 10, 0)
    await h.queue.dead(one, "attempts_exhausted", LastResponse(503, "HTTP 503"), now_ms())
    await h.queue.later(two, now_ms() + 60_000, 3, LastResponse(500, "HTTP 500"))

    dead = await run(h, tmp_path, "list", "--dead", "--since", "1h")
    assert first in dead
    assert "acme-always-on" in dead
    assert "p-mailfox" in dead
    assert "attempts_exhausted" in dead
    assert "HTTP 503" in dead
    waiting = await run(h, tmp_path, "list", "--advertiser", "acme")
    assert "acme: 1 undelivered (1 waiting for a retry), oldest" in waiting
    assert "1 dead letter(s)" in waiting
    assert second in waiting
    assert "HTTP 500" in waiting
    person = lead()
    for value in (person["email"], person["phone"], person["last_name"], person["ip"]):
        assert value not in dead + waiting

    assert "replayed 1 lead(s) of acme" in await run(h, tmp_path, "replay", "--lead", first)
    (back,) = await h.queue.read(ADVERTISER, "w", 10, 0)
    assert (back.delivery.lead_id, back.delivery.attempt) == (first, 1)
    assert "no dead letters" in await run(h, tmp_path, "list", "--dead")

    await h.queue.disable(ADVERTISER, "HTTP 410", now_ms())
    assert "endpoint enabled" in await run(h, tmp_path, "enable", "--advertiser", "acme")
    assert not await h.queue.disabled(ADVERTISER)


async def test_replay_since_and_unknown_advertiser(h: Harness, tmp_path: Path) -> None:
    await h.accept(3)
    for c in await h.queue.read(ADVERTISER, "w", 10, 0):
        await h.queue.dead(c, "rejected_by_advertiser", LastResponse(422, "HTTP 422"), now_ms())
    out = await run(h, tmp_path, "replay", "--advertiser", "acme", "--since", "10m")
    assert "replayed 3 lead(s) of acme" in out
    with pytest.raises(ConfigError, match="not in the config"):
        await run(h, tmp_path, "enable", "--advertiser", "ghost")
