"""Limits by default: partners without a rate limit of their own get
``server.default_rate_limit``; failed authentications and feedback are bounded per client
address (no key guessed at line rate, the table of addresses bounded, no address in a log
line or a metric); neither a big batch while its leads are prepared nor the ``/metrics`` page
while it is rendered holds the event loop.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import threading
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from gateway.config.model import RateLimit
from gateway.decision.intake import PREPARE_SLICE
from gateway.observe.metrics import Observer
from gateway.storage.memory import MemoryStore
from gateway.web.ratelimit import AddressBuckets, client_address

from .conftest import (
    ADMIN_TOKEN,
    Gateway,
    GatewayFactory,
    assert_problem,
    network,
    person,
)
from .test_feedback import accepted, adv, feedback_network, send

SLOW = {"per_s": 0.001, "burst": 3}  # three at once, then one every ~17 minutes


def with_server(config: dict[str, Any], **server: object) -> dict[str, Any]:
    config["server"] = {**config.get("server", {}), **server}
    return config


def behind_proxy(address: str) -> dict[str, str]:
    """As a reverse proxy in ``trusted_proxies`` (the test client's 127.0.0.1) forwards; a
    value the client itself sent is to the left, and not believed."""
    return {"X-Forwarded-For": f"6.6.6.6, {address}"}


# --- the default partner rate limit -----------------------------------------------------------


async def test_a_partner_without_a_rate_limit_gets_the_default(
    make_embedded_gateway: GatewayFactory,
) -> None:
    config = network()  # no partner has a rate_limit of its own
    config["partners"][1]["rate_limit"] = {"per_s": 100, "burst": 100}
    gw = await make_embedded_gateway(with_server(config, default_rate_limit=SLOW))
    for _ in range(3):
        assert (await gw.post("p-mail", person(campaign="acme-always-on"))).status == 200
    limited = await gw.post("p-mail", person(campaign="acme-always-on"))
    assert_problem(limited, 429, "rate-limited", instance="/v1/leads")
    assert int(limited.headers["Retry-After"]) >= 1
    # A partner's own limit is its own (and another partner is not slowed by p-mail).
    for _ in range(5):
        assert (await gw.post("p-coreg", person(campaign="acme-always-on"))).status == 200


# --- failed authentications per client address ------------------------------------------------


async def test_failed_keys_are_limited_per_address_whatever_key_comes_next(
    make_embedded_gateway: GatewayFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    gw = await make_embedded_gateway(
        with_server(network(), auth_failure_limit=SLOW, trusted_proxies=["127.0.0.1/32"]),
        admin=True,
    )
    guesser = behind_proxy("198.51.100.23")
    for key in ("guess-1", "guess-2"):
        reply = await gw.post(None, person(), headers={**guesser, "Authorization": f"Bearer {key}"})
        assert_problem(reply, 401, "unauthorized")
    assert (await gw.post(None, person(), headers=guesser)).status == 401  # no key: a failure
    blocked = await gw.post(None, person(), headers={**guesser, "Authorization": "Bearer guess-4"})
    assert_problem(blocked, 429, "rate-limited", instance="/v1/leads")
    assert int(blocked.headers["Retry-After"]) >= 1
    # Out of attempts, the address is refused before its key is even looked at: a right
    # guess would not tell itself apart (the admin token and the feedback keys alike).
    right = await gw.post("p-mail", person(campaign="acme-always-on"), headers=guesser)
    assert right.status == 429
    admin = await gw.request(
        "GET", "/v1/admin/deliveries", headers={**guesser, "Authorization": f"Bearer {ADMIN_TOKEN}"}
    )
    assert admin.status == 429
    # Other addresses are not affected.
    elsewhere = behind_proxy("203.0.113.40")
    assert (
        await gw.post("p-mail", person(campaign="acme-always-on"), headers=elsewhere)
    ).status == 200
    assert (await gw.post(None, person(), headers=elsewhere)).status == 401
    # Addresses stay in memory: in no log line, in no metric.
    logged = "\n".join(r.getMessage() + str(r.__dict__.get("fields", "")) for r in caplog.records)
    metrics = await gw.metrics()
    for text in (logged, metrics):
        assert "198.51.100" not in text
        assert "203.0.113" not in text


async def test_the_admin_token_cannot_be_guessed_at_line_rate(
    make_embedded_gateway: GatewayFactory,
) -> None:
    gw = await make_embedded_gateway(with_server(network(), auth_failure_limit=SLOW), admin=True)
    statuses = []
    for n in range(5):
        reply = await gw.request(
            "GET", "/v1/admin/deliveries", headers={"Authorization": f"Bearer not-the-token-{n}"}
        )
        statuses.append(reply.status)
    assert statuses == [401, 401, 401, 429, 429]


# --- feedback per client address --------------------------------------------------------------


async def test_feedback_is_limited_per_address(make_embedded_gateway: GatewayFactory) -> None:
    config = with_server(
        feedback_network(),
        feedback_rate_limit={"per_s": 0.001, "burst": 2},
        trusted_proxies=["127.0.0.1/32"],
    )
    gw = await make_embedded_gateway(config)
    leads = [await accepted(gw) for _ in range(4)]
    here = behind_proxy("192.0.2.10")
    for lead_id in leads[:2]:
        reply = await send(gw, "acme", {"lead_id": lead_id, "status": "converted"}, **here)
        assert reply.status == 200, reply.body
    limited = await send(gw, "acme", {"lead_id": leads[2], "status": "converted"}, **here)
    assert_problem(limited, 429, "rate-limited", instance="/v1/feedback")
    assert int(limited.headers["Retry-After"]) >= 1
    there = behind_proxy("192.0.2.11")
    reply = await send(gw, "acme", {"lead_id": leads[3], "status": "converted"}, **there)
    assert reply.status == 200, reply.body
    # The postback too.
    query = f"/v1/feedback?lead_id={leads[2]}&status=converted"
    reply = await gw.request("GET", query, headers={**here, **adv("acme")})
    assert reply.status == 429


# --- the address table itself -----------------------------------------------------------------


def test_the_address_table_is_bounded_and_forgets_the_least_recently_seen() -> None:
    limit = RateLimit(per_s=0.001, burst=1)
    table = AddressBuckets(max_entries=3)
    table.take("192.0.2.1", limit, 1, 0.0)
    for n in range(2, 50):
        table.take(f"192.0.2.{n}", limit, 1, float(n))
        table.wait_s("192.0.2.1", limit, float(n))  # still seen: kept
    assert len(table) == 3
    assert table.wait_s("192.0.2.1", limit, 60.0) > 0  # remembered (out of tokens)
    assert table.wait_s("192.0.2.2", limit, 60.0) == 0  # forgotten


def request_from(peer: str, forwarded: str | None = None) -> web.Request:
    headers = {"X-Forwarded-For": forwarded} if forwarded is not None else {}
    request = make_mocked_request("GET", "/", headers=headers)
    request._transport_peername = (peer, 1234)
    return request


@pytest.mark.parametrize(
    ("peer", "forwarded", "trusted", "expected"),
    [
        ("198.51.100.7", None, [], "198.51.100.7"),
        ("198.51.100.7", "1.2.3.4", [], "198.51.100.7"),  # not a trusted proxy: ignored
        ("10.0.0.2", "1.2.3.4", ["10.0.0.0/8"], "1.2.3.4"),
        (
            "10.0.0.2",
            "6.6.6.6, 1.2.3.4, 10.0.0.9",
            ["10.0.0.0/8"],
            "1.2.3.4",
        ),  # rightmost untrusted
        ("10.0.0.2", "10.0.0.5", ["10.0.0.0/8"], "10.0.0.5"),  # every hop trusted
        ("10.0.0.2", "garbage, 1.2.3.4", ["10.0.0.0/8"], "1.2.3.4"),
        ("10.0.0.2", "1.2.3.4, garbage", ["10.0.0.0/8"], "10.0.0.2"),  # a forged tail stops
        ("2001:db8:1:2:3:4:5:6", None, [], "2001:db8:1:2::/64"),  # a host holds a /64
        ("::ffff:198.51.100.7", None, [], "198.51.100.7"),  # IPv4 on a dual-stack socket
    ],
)
def test_the_client_address(
    peer: str, forwarded: str | None, trusted: list[str], expected: str
) -> None:
    networks = [ipaddress.ip_network(n) for n in trusted]
    assert client_address(request_from(peer, forwarded), networks) == expected


# --- a big batch and the event loop -----------------------------------------------------------


class PreparationWatch(MemoryStore):
    """The embedded store, telling when the batch's first store call came: its leads were
    all prepared by then."""

    def __init__(self) -> None:
        super().__init__()
        self.prepared = asyncio.Event()

    async def decide(self, items: Any) -> Any:
        self.prepared.set()
        return await super().decide(items)


async def test_health_is_answered_while_a_big_batch_is_prepared(
    make_embedded_gateway: GatewayFactory,
) -> None:
    """A 1,000-lead batch takes ~200 ms to prepare (parse, normalize, rules, plan): in one
    go, every other request (``/healthz``, other partners) waited for all of it. The intake
    yields between slices of ``PREPARE_SLICE`` leads. Between the batch's clock read (its
    preparation begins) and its first store call (every lead prepared), the test counts the
    turns a task of its own got, and the health checks answered: both would be 0 in one go."""
    store = PreparationWatch()
    config = with_server(network(), default_rate_limit={"per_s": 10_000, "burst": 10_000})
    gw: Gateway = await make_embedded_gateway(config, store=store)
    started = asyncio.Event()
    clock = gw.clock

    def reading_clock() -> float:
        started.set()
        return clock.now_s

    gw.app.intake.clock = reading_clock
    turns = 0

    async def count_turns() -> None:
        nonlocal turns
        await started.wait()
        while not store.prepared.is_set():
            turns += 1
            await asyncio.sleep(0)

    leads = [person(campaign="acme-always-on") for _ in range(1000)]
    batch = asyncio.ensure_future(gw.batch("p-mail", leads))
    counting = asyncio.ensure_future(count_turns())
    answered = 0
    async with asyncio.timeout(60):
        await started.wait()
        while not store.prepared.is_set() and not batch.done():
            reply = await gw.request("GET", "/healthz")
            assert reply.status == 200
            answered += not store.prepared.is_set()
        reply = await batch
        await counting
    assert reply.status == 200, reply.body
    assert orjson.loads(reply.body)["counts"]["accepted"] == 1000
    assert turns >= 1000 // PREPARE_SLICE - 1
    assert answered >= 1


async def test_a_lead_is_answered_while_the_metrics_page_is_rendered(
    make_embedded_gateway: GatewayFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The page grows with the configured routes (half a second to render for 500 partners:
    ``python -m bench.metrics_cost --scrape 500``), so ``/metrics`` renders it in a thread.
    Here the rendering waits until a lead has been answered: rendered on the event loop, it
    would wait for a lead the loop cannot answer, and the scrape would fail."""
    gw: Gateway = await make_embedded_gateway(network())
    rendering, answered = threading.Event(), threading.Event()
    page = Observer.page

    def page_after_a_lead(observer: Observer) -> bytes:
        rendering.set()
        assert answered.wait(5), "no lead was answered while the page was rendered"
        return page(observer)

    monkeypatch.setattr(Observer, "page", page_after_a_lead)
    async with asyncio.timeout(30):
        scrape = asyncio.ensure_future(gw.metrics())
        assert await asyncio.to_thread(rendering.wait, 10)
        reply = await gw.post("p-mail", person(campaign="acme-always-on"))
        answered.set()
        assert reply.status == 200, reply.body
        text = await scrape
    assert 'leadgate_leads_total{campaign="acme-always-on"' in text
