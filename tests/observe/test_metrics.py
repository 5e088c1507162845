"""The metrics a user reads, in one process: label sets known from the start, duplicates and
caps derived from reason codes, request latency by route (never by raw path), Redis round
trips and errors, delivery health, and label sets following a reloaded config."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from network_support import KEYS, key_hash, network
from prom_support import sample, samples
from prometheus_client import CollectorRegistry, generate_latest

from gateway.app.root import App
from gateway.app.settings import Settings
from gateway.config.environment import Environment
from gateway.config.load import parse_config
from gateway.config.model import Config
from gateway.decision.answer import Answer
from gateway.decision.model import Decision
from gateway.delivery.metrics import DEAD_LETTER_REASONS, DeliveryMetrics
from gateway.delivery.model import Outcome
from gateway.errors import FieldProblem, InvalidLead, StoreUnavailable
from gateway.observe.metrics import Observer
from gateway.storage.memory import MemoryStore
from gateway.storage.redis import RedisStore
from gateway.types import (
    AdvertiserId,
    CampaignId,
    ChannelId,
    FingerprintKey,
    LeadId,
    PartnerId,
)
from gateway.web.app import create_app

Client = TestClient[web.Request, web.Application]


def exposition(observer: Observer) -> str:
    return observer.exposition().decode()


@pytest_asyncio.fixture
async def gateway() -> AsyncIterator[tuple[Client, Observer]]:
    config = parse_config(network(), checksum="c0")
    environment = Environment(
        fingerprint_keys=(FingerprintKey("t1", b"observability-metrics-test-key-0"),)
    )
    gateway = App(Settings.of(config, environment), store=MemoryStore())
    observer = gateway.observer
    server = TestServer(create_app(gateway))
    await server.start_server(access_log=None)
    client = TestClient(server)
    await client.start_server()
    try:
        yield client, observer
    finally:
        await client.close()


async def post(client: Client, partner: str, lead: dict[str, object]) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {KEYS[partner]}", "Content-Type": "application/json"}
    async with client.post("/v1/leads", data=orjson.dumps(lead), headers=headers) as response:
        assert response.status == 200, await response.text()
        answer: dict[str, Any] = await response.json()
        return answer


def test_every_known_label_set_starts_at_zero() -> None:
    config = parse_config(network(), checksum="c0")
    text = exposition(Observer(config))
    # p-alpha: 3 campaigns x 1 channel, p-beta: 2 x 1; 4 decisions each.
    leads = samples(text, "leadgate_leads_total")
    assert len(leads) == (3 + 2) * 4
    assert all(value == 0 for _, value in leads)
    assert (
        sample(
            text,
            "leadgate_leads_total",
            partner="p-beta",
            campaign="nova-main",
            channel="coreg",
            decision="capped",
        )
        == 0
    )
    for scope in ("campaign", "advertiser", "channel", "network"):
        assert (
            sample(
                text,
                "leadgate_duplicates_total",
                partner="p-alpha",
                campaign="acme-main",
                scope=scope,
            )
            == 0
        )
    caps = {
        (lb["campaign"], lb["subject"], lb["window"])
        for lb, _ in samples(text, "leadgate_caps_hit_total")
    }
    assert caps == {
        ("acme-main", "campaign", "day"),
        ("acme-main", "partner", "rolling"),
        ("nova-main", "channel", "day"),
    }
    assert (
        sample(text, "leadgate_cap_limit", campaign="nova-main", subject="channel", window="day")
        == 2
    )
    reasons = {lb["reason"] for lb, _ in samples(text, "leadgate_lead_reasons_total")}
    assert reasons == {
        "duplicate.advertiser",
        "duplicate.campaign",
        "cap.campaign.day",
        "cap.partner.rolling",
        "cap.channel.day",
        "campaign.inactive",
    }
    for result in ("success", "failure"):
        assert sample(text, "leadgate_config_reloads_total", result=result) == 0
    assert sample(text, "leadgate_config_info", checksum="c0") == 1
    for advertiser in ("acme", "nova"):
        for outcome in Outcome:
            assert (
                sample(
                    text,
                    "leadgate_delivery_attempts_total",
                    advertiser=advertiser,
                    outcome=outcome.value,
                )
                == 0
            )
        assert sample(text, "leadgate_delivery_queue_depth", advertiser=advertiser) == 0


async def test_duplicates_and_caps_are_counted_from_reason_codes(
    gateway: tuple[Client, Observer],
) -> None:
    client, observer = gateway
    first = await post(client, "p-alpha", {"campaign": "acme-main", "email": "dup.one@example.com"})
    again = await post(client, "p-beta", {"campaign": "acme-main", "email": "dup.one@example.com"})
    assert (first["decision"], again["decision"]) == ("accepted", "duplicate")
    decisions = [
        (await post(client, "p-alpha", {"campaign": "nova-main", "email": f"cap{n}@example.com"}))[
            "decision"
        ]
        for n in range(3)
    ]
    assert decisions == ["accepted", "accepted", "capped"]
    inactive = await post(client, "p-alpha", {"campaign": "nova-summer", "email": "x@example.com"})
    assert inactive["reasons"] == ["campaign.inactive"]

    text = exposition(observer)
    assert (
        sample(
            text,
            "leadgate_duplicates_total",
            partner="p-beta",
            campaign="acme-main",
            scope="advertiser",
        )
        == 1
    )
    assert (
        sample(
            text, "leadgate_caps_hit_total", campaign="nova-main", subject="channel", window="day"
        )
        == 1
    )
    assert (
        sample(
            text,
            "leadgate_lead_reasons_total",
            partner="p-alpha",
            campaign="nova-summer",
            reason="campaign.inactive",
        )
        == 1
    )
    assert (
        sample(
            text,
            "leadgate_leads_total",
            partner="p-alpha",
            campaign="nova-main",
            channel="email",
            decision="accepted",
        )
        == 2
    )


async def test_a_lead_refused_on_its_own_is_counted_for_its_partner_whatever_the_endpoint(
    gateway: tuple[Client, Observer],
) -> None:
    # Ops find the partners that send bad leads by this counter: a single post's 422 or 403
    # must count as a batch item's does.
    client, observer = gateway
    headers = {"Authorization": f"Bearer {KEYS['p-beta']}", "Content-Type": "application/json"}
    refusals = [
        ("/v1/leads", {"campaign": "acme-main", "email": "not-an-address"}, 422),
        ("/v1/leads", {"campaign": "acme-main"}, 422),  # no identity at all
        ("/v1/leads", {"campaign": "nova-summer", "email": "a@example.com"}, 403),  # not its own
        ("/v1/leads/batch", {"leads": [{"campaign": "acme-main", "email": "@"}]}, 200),
    ]
    for path, body, status in refusals:
        async with client.post(path, data=orjson.dumps(body), headers=headers) as response:
            assert response.status == status, await response.text()

    text = exposition(observer)
    assert sample(text, "leadgate_requests_refused_total", partner="p-beta", status="422") == 3
    assert sample(text, "leadgate_requests_refused_total", partner="p-beta", status="403") == 1
    assert sample(text, "leadgate_requests_refused_total", partner="p-alpha", status="422") == 0
    assert "not-an-address" not in text


def _answer(decision: Decision, *reasons: str) -> Answer:
    """A lead of acme-main posted on the email channel, decided ``decision``."""
    return Answer(
        lead_id=LeadId("l1"),
        decision=decision,
        reasons=reasons,
        ref=None,
        campaign=CampaignId("acme-main"),
        channel=ChannelId("email"),
        test=False,
    )


def test_counts_keep_adding_up_once_label_children_are_cached() -> None:
    """The observer looks each label set up once and reuses it: the second, third ... lead
    with a reason must land in the same series as the first, for every derived counter."""
    config = parse_config(network(), checksum="c0")
    observer = Observer(config)
    partner = config.partners[PartnerId("p-beta")]
    duplicate = _answer(Decision.DUPLICATE, "duplicate.advertiser")
    capped = dataclasses.replace(duplicate, decision=Decision.CAPPED, reasons=("cap.partner.hour",))
    invalid = InvalidLead([FieldProblem("leads/0/email", "required")])
    for _ in range(3):
        observer.decided(partner, [duplicate, capped, invalid], 0.001)

    text = exposition(observer)
    where = {"partner": "p-beta", "campaign": "acme-main"}
    assert sample(text, "leadgate_duplicates_total", **where, scope="advertiser") == 3
    assert sample(text, "leadgate_lead_reasons_total", **where, reason="duplicate.advertiser") == 3
    assert sample(text, "leadgate_lead_reasons_total", **where, reason="cap.partner.hour") == 3
    assert (
        sample(
            text, "leadgate_caps_hit_total", campaign="acme-main", subject="partner", window="hour"
        )
        == 3
    )
    assert sample(text, "leadgate_requests_refused_total", partner="p-beta", status="422") == 3
    assert sample(text, "leadgate_leads_total", **where, channel="email", decision="capped") == 3


def test_counts_reach_the_metrics_at_each_scrape() -> None:
    """Counts are tallied in plain numbers (``gateway.observe.tally``): a scrape flushes them
    first, so it is exact, and the next one adds what came since."""
    config = parse_config(network(), checksum="c0")
    observer = Observer(config)
    partner = config.partners[PartnerId("p-alpha")]
    accepted = _answer(Decision.ACCEPTED)
    where = {"partner": "p-alpha", "campaign": "acme-main", "channel": "email"}

    def in_registry() -> float | None:
        return observer.registry.get_sample_value(
            "leadgate_leads_total", {**where, "decision": "accepted"}
        )

    observer.decided(partner, [accepted], 0.0012)
    observer.request("/v1/leads", "POST", 200, 0.0015)
    assert in_registry() == 0  # tallied, not flushed yet
    text = exposition(observer)
    assert sample(text, "leadgate_leads_total", **where, decision="accepted") == 1
    requests = {"route": "/v1/leads", "method": "POST", "status": "200"}
    assert sample(text, "leadgate_http_requests_total", **requests) == 1
    assert sample(text, "leadgate_decision_duration_seconds_count") == 1

    observer.decided(partner, [accepted], 0.0012)
    assert in_registry() == 1
    text = exposition(observer)
    assert sample(text, "leadgate_leads_total", **where, decision="accepted") == 2
    assert in_registry() == 2


def test_the_page_has_no_created_series() -> None:
    """prometheus-client's ``_created`` series (one beside every counter and histogram series,
    a family of its own in the text format) are turned off: as many series again for
    Prometheus, 40 % of a scrape, read by nothing. The counters and histograms are all there."""
    config = parse_config(network(), checksum="c0")
    observer = Observer(config)
    observer.decided(config.partners[PartnerId("p-alpha")], [_answer(Decision.ACCEPTED)], 0.001)
    observer.request("/v1/leads", "POST", 200, 0.0015)
    text = exposition(observer)
    assert "_created" not in text
    assert "# TYPE leadgate_leads_total counter" in text
    assert sample(text, "leadgate_decision_duration_seconds_count") == 1
    assert sample(text, "leadgate_decision_duration_seconds_sum") == pytest.approx(0.001)


async def test_a_route_added_after_the_app_is_made_is_labelled_by_its_match() -> None:
    """The middleware reads a request's route from its handler when that handler serves one
    path of the app; a route added later (the bench's ``/metrics``), or a handler serving
    two paths, is labelled by the request's match, as every route was before."""
    config = parse_config(network(), checksum="c0")
    environment = Environment(
        fingerprint_keys=(FingerprintKey("t1", b"observability-metrics-test-key-0"),)
    )
    gateway = App(Settings.of(config, environment), store=MemoryStore())
    app = create_app(gateway)

    async def shared(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app.router.add_get("/late/{name}", shared, allow_head=False)
    app.router.add_get("/later", shared, allow_head=False)
    client = TestClient(TestServer(app))
    await client.start_server()
    try:
        for path in ("/late/zz-canary-1", "/late/zz-canary-2", "/later", "/healthz"):
            async with client.get(path) as response:
                assert response.status == 200
    finally:
        await client.close()

    text = exposition(gateway.observer)
    assert "canary" not in text
    count = "leadgate_http_requests_total"
    assert sample(text, count, route="/late/{name}", method="GET", status="200") == 2
    assert sample(text, count, route="/later", method="GET", status="200") == 1
    assert sample(text, count, route="/healthz", method="GET", status="200") == 1


def test_a_handler_serving_two_paths_is_not_taken_for_either() -> None:
    """``_known_routes`` names the path of each handler serving one path only: a handler on
    two would otherwise give both the first one's label."""
    from gateway.web.app import _known_routes

    async def shared(request: web.Request) -> web.Response:
        return web.Response()

    async def alone(request: web.Request) -> web.Response:
        return web.Response()

    app = web.Application()
    app.router.add_get("/a", shared, allow_head=False)
    app.router.add_post("/b", shared)
    app.router.add_get("/c/{id}", alone, allow_head=False)
    app.router.add_post("/c/{id}", alone)
    observer = Observer(parse_config(network(), checksum="c0"))

    assert _known_routes(app, observer) == {alone: "/c/{id}"}


async def test_request_metrics_label_the_route_never_the_raw_path(
    gateway: tuple[Client, Observer],
) -> None:
    client, observer = gateway
    raw = "/v1/leads/zz-raw-path-canary"
    async with client.get(raw) as response:
        assert response.status == 404
    async with client.request("PATCH", "/v1/leads") as response:
        assert response.status == 405
    async with client.get("/v1/leads?email=raw-query-canary@example.com") as response:
        assert response.status == 401
    await post(client, "p-alpha", {"campaign": "acme-main", "email": "route@example.com"})

    text = exposition(observer)
    assert "canary" not in text
    assert (
        sample(text, "leadgate_http_requests_total", route="/v1/leads", method="POST", status="200")
        == 1
    )
    assert (
        sample(text, "leadgate_http_requests_total", route="/v1/leads", method="GET", status="401")
        == 1
    )
    assert (
        sample(text, "leadgate_http_requests_total", route="unmatched", method="GET", status="404")
        == 1
    )
    assert (
        sample(
            text, "leadgate_http_requests_total", route="unmatched", method="other", status="405"
        )
        == 1
    )
    assert (
        sample(
            text, "leadgate_http_request_duration_seconds_count", route="/v1/leads", method="POST"
        )
        == 1
    )
    # Latency histograms carry no partner label.
    for labels, _ in samples(text, "leadgate_http_request_duration_seconds_bucket"):
        assert set(labels) == {"route", "method", "le"}


async def test_redis_round_trips_and_errors_are_measured(redis_url: str) -> None:
    config = parse_config(network(), checksum="c0")
    observer = Observer(config)
    store = RedisStore(redis_url, on_round_trip=observer.redis_round_trip)
    try:
        await store.ping()
        await store.ping()
    finally:
        await store.close()
    dead = RedisStore(
        "redis://127.0.0.1:1/0", socket_timeout_s=0.5, on_round_trip=observer.redis_round_trip
    )
    try:
        with pytest.raises(StoreUnavailable):
            await dead.ping()
    finally:
        await dead.close()
    text = exposition(observer)
    # Two pings, two round trips (the server's settings are read on the connection as it
    # opens, before it carries anything: not a round trip of its own), and the two of
    # learning the dedup layout at first contact (DBSIZE, then its note), once.
    assert sample(text, "leadgate_redis_round_trip_duration_seconds_count") == 2 + 2
    assert sample(text, "leadgate_redis_errors_total", kind="connection") == 1
    assert sample(text, "leadgate_redis_errors_total", kind="timeout") == 0
    assert sample(text, "leadgate_redis_errors_total", kind="deadline") == 0


def test_delivery_metrics_keep_labels_to_configured_ids_and_fixed_codes() -> None:
    config = parse_config(network(), checksum="c0")
    registry = CollectorRegistry()
    metrics = DeliveryMetrics(config, registry)
    acme = AdvertiserId("acme")
    metrics.attempted(acme, Outcome.DELIVERED, 0.12)
    metrics.attempted(acme, Outcome.RETRY, 10.0)
    metrics.attempted(acme, Outcome.HELD, 0.0)
    metrics.attempted(AdvertiserId("not-configured"), Outcome.DELIVERED, 0.1)
    metrics.dead_lettered(acme, "attempts_exhausted")
    metrics.dead_lettered(acme, "HTTP 400 from https://crm.example/secret-path")
    metrics.queue_state(acme, 12, 95.5, 3)
    metrics.breaker_state(acme, "open")
    metrics.breaker_state(acme, "exploded")  # not a state: ignored

    text = generate_latest(registry).decode()
    assert "not-configured" not in text
    assert "secret-path" not in text
    attempts = {
        lb["outcome"]: v
        for lb, v in samples(text, "leadgate_delivery_attempts_total")
        if lb["advertiser"] == "acme"
    }
    assert attempts == {
        "delivered": 1,
        "retry": 1,
        "held": 1,
        "rejected_by_advertiser": 0,
        "endpoint_gone": 0,
    }
    # Held attempts sent nothing: they are not a delivery duration.
    assert sample(text, "leadgate_delivery_duration_seconds_count", advertiser="acme") == 2
    assert (
        sample(text, "leadgate_delivery_dead_letters_total", advertiser="acme", reason="other") == 1
    )
    assert {lb["reason"] for lb, _ in samples(text, "leadgate_delivery_dead_letters_total")} == set(
        DEAD_LETTER_REASONS
    )
    assert sample(text, "leadgate_delivery_queue_depth", advertiser="acme") == 12
    assert (
        sample(text, "leadgate_delivery_oldest_undelivered_age_seconds", advertiser="acme") == 95.5
    )
    assert sample(text, "leadgate_delivery_dead_letter_depth", advertiser="acme") == 3
    states = {
        lb["state"]: v
        for lb, v in samples(text, "leadgate_delivery_breaker_state")
        if lb["advertiser"] == "acme"
    }
    assert states == {"closed": 0, "open": 1, "half_open": 0, "disabled": 0}


def _with_new_partner() -> Config:
    data = copy.deepcopy(network())
    data["advertisers"].append({"id": "zeta"})
    data["campaigns"].append(
        {"id": "zeta-main", "advertiser": "zeta", "kind": "always_on", "required": ["email"]}
    )
    data["partners"].append(
        {
            "id": "p-gamma",
            "api_keys": [key_hash("obs-gamma-key")],
            "channels": ["email"],
            "campaigns": ["zeta-main"],
        }
    )
    return parse_config(data, checksum="c1")


def test_a_reload_adds_the_new_label_sets_and_swaps_the_checksum() -> None:
    observer = Observer(parse_config(network(), checksum="c0"))
    observer.reloaded(None)
    observer.reloaded(_with_new_partner())
    text = exposition(observer)
    assert (
        sample(
            text,
            "leadgate_leads_total",
            partner="p-gamma",
            campaign="zeta-main",
            channel="email",
            decision="accepted",
        )
        == 0
    )
    assert sample(text, "leadgate_delivery_queue_depth", advertiser="zeta") == 0
    assert sample(text, "leadgate_config_info", checksum="c0") == 0
    assert sample(text, "leadgate_config_info", checksum="c1") == 1
    assert sample(text, "leadgate_config_reloads_total", result="success") == 1
    assert sample(text, "leadgate_config_reloads_total", result="failure") == 1
    # The old partner's series stay: their totals are history.
    assert (
        sample(
            text,
            "leadgate_leads_total",
            partner="p-alpha",
            campaign="acme-main",
            channel="email",
            decision="accepted",
        )
        == 0
    )
