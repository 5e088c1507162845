"""The transport against a real local CRM: one request per attempt, classified; ids stable
across attempts, signatures fresh; no redirects, capped reads, timeouts, resets, refused
connections, and private destinations refused unless allow-listed."""

from __future__ import annotations

import base64
import dataclasses
import email.utils
import re
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any
from urllib.parse import parse_qs

import pytest
import pytest_asyncio
from standardwebhooks import Webhook

from delivery.crm import CRM, Reply
from delivery.records import (
    ADVERTISER,
    LOOPBACK,
    SECRET,
    SECRET_ENV,
    config_with,
    delivery,
    webhook_endpoint,
)
from gateway.config.delivery import (
    AdapterKind,
    Auth,
    AuthKind,
    DeliverySettings,
    Endpoint,
    Refusal,
    SecretRef,
)
from gateway.delivery.model import AttemptResult, Outcome
from gateway.delivery.netguard import Guard
from gateway.delivery.transport import EndpointClient, Transport
from gateway.errors import ConfigError
from gateway.types import AdvertiserId

ENV = {SECRET_ENV: SECRET}
Make = Callable[..., EndpointClient]


class Events:
    def __init__(self) -> None:
        self.attempts: list[tuple[str, Outcome]] = []
        self.states: list[tuple[str, str]] = []

    def attempted(self, advertiser: AdvertiserId, outcome: Outcome, duration_s: float) -> None:
        assert duration_s >= 0
        self.attempts.append((advertiser, outcome))

    def dead_lettered(self, advertiser: AdvertiserId, reason: str) -> None:
        raise AssertionError("the transport never dead-letters")

    def queue_state(
        self, advertiser: AdvertiserId, depth: int, oldest_age_s: float, dead_letters: int
    ) -> None:
        raise AssertionError("the transport has no queue")

    def breaker_state(self, advertiser: AdvertiserId, state: str) -> None:
        self.states.append((advertiser, state))


@pytest_asyncio.fixture
async def make() -> AsyncIterator[Make]:
    """``make(endpoint, settings=None, environ=ENV, **transport_kwargs)`` -> the client."""
    made: list[Transport] = []

    def build(
        endpoint: Endpoint,
        settings: DeliverySettings | None = None,
        environ: Mapping[str, str] = ENV,
        **kwargs: Any,
    ) -> EndpointClient:
        transport = Transport(config_with(endpoint, settings), environ, **kwargs)
        made.append(transport)
        client = transport.client(ADVERTISER)
        assert client is not None
        return client

    yield build
    for transport in made:
        await transport.close()


def verify(received_body: bytes, headers: Mapping[str, str], secret: str = SECRET) -> Any:
    return Webhook(secret).verify(received_body, dict(headers))


async def test_a_webhook_is_signed_and_carries_the_lead_id(crm: CRM, make: Make) -> None:
    client = make(webhook_endpoint(crm.url("/hook")))
    d = delivery()
    result = await client.send(d)
    assert (result.outcome, result.status, result.detail) == (Outcome.DELIVERED, 200, "HTTP 200")
    [got] = crm.requests
    assert got.headers["webhook-id"] == d.lead_id
    assert got.headers["idempotency-key"] == d.lead_id
    assert got.headers["content-type"] == "application/json"
    payload = verify(got.body, got.headers)
    assert payload["type"] == "lead.accepted"
    assert payload["data"]["lead_id"] == d.lead_id
    assert payload["data"]["email"] == "jeanne.martin@example.org"
    assert result.response_excerpt == '{"status":"ok"}'


async def test_ids_are_stable_across_attempts_while_signatures_are_fresh(
    crm: CRM, make: Make
) -> None:
    now = [time.time() - 120]
    client = make(webhook_endpoint(crm.url("/hook")), wall_clock=lambda: now[0])
    d = delivery()
    await client.send(d)
    now[0] += 100
    await client.send(dataclasses.replace(d, attempt=2))
    first, second = crm.requests
    for name in ("webhook-id", "idempotency-key"):
        assert first.headers[name] == second.headers[name] == d.lead_id
    assert first.body == second.body  # same bytes: a CRM can compare what it got
    assert int(second.headers["webhook-timestamp"]) == int(first.headers["webhook-timestamp"]) + 100
    assert first.headers["webhook-signature"] != second.headers["webhook-signature"]
    verify(first.body, first.headers)
    verify(second.body, second.headers)


@pytest.mark.parametrize(
    ("reply", "outcome", "status", "detail"),
    [
        (Reply.ok(), Outcome.DELIVERED, 200, "HTTP 200"),
        (Reply(status=204, body=b""), Outcome.DELIVERED, 204, "HTTP 204"),
        (Reply.error(500), Outcome.RETRY, 500, "HTTP 500"),
        (Reply.error(503), Outcome.RETRY, 503, "HTTP 503"),
        (Reply.error(408), Outcome.RETRY, 408, "HTTP 408"),
        (Reply.error(401), Outcome.RETRY, 401, "HTTP 401"),
        (Reply.error(404), Outcome.RETRY, 404, "HTTP 404"),
        (Reply.error(400), Outcome.REJECTED, 400, "HTTP 400"),
        (Reply.error(422), Outcome.REJECTED, 422, "HTTP 422"),
        (Reply.gone(), Outcome.GONE, 410, "HTTP 410: endpoint gone"),
        (Reply.redirect(), Outcome.RETRY, 302, "HTTP 302: redirect not followed"),
        (Reply.refuse(), Outcome.DELIVERED, 200, "HTTP 200"),  # no refusal configured
    ],
)
async def test_each_answer_is_classified(
    crm: CRM, make: Make, reply: Reply, outcome: Outcome, status: int, detail: str
) -> None:
    crm.answer("/hook", reply)
    result = await make(webhook_endpoint(crm.url("/hook"))).send(delivery())
    assert (result.outcome, result.status, result.detail) == (outcome, status, detail)
    assert [r.path for r in crm.requests] == ["/hook"]  # one request; a redirect not followed


@pytest.mark.parametrize(
    ("refusal", "outcome"),
    [
        (Refusal(json_path=("status",), values=("error",)), Outcome.REJECTED),
        (Refusal(json_path=("status",), values=("rejected", "error")), Outcome.REJECTED),
        (Refusal(json_path=("status",), values=("rejected",)), Outcome.DELIVERED),
        (Refusal(json_path=("missing", 0), values=("error",)), Outcome.DELIVERED),
        (Refusal(regex=re.compile("duplicate")), Outcome.REJECTED),
        (Refusal(regex=re.compile("^ok$")), Outcome.DELIVERED),
    ],
)
async def test_a_refusal_in_a_2xx_body_rejects(
    crm: CRM, make: Make, refusal: Refusal, outcome: Outcome
) -> None:
    crm.answer("/hook", Reply.refuse())
    client = make(webhook_endpoint(crm.url("/hook"), refuse_when=refusal))
    result = await client.send(delivery())
    assert result.outcome is outcome
    assert result.status == 200
    if outcome is Outcome.REJECTED:
        assert result.detail == "HTTP 200, body matched refusal"
        assert "duplicate lead" in result.response_excerpt


@pytest.mark.parametrize("status", [429, 503])
async def test_retry_after_in_seconds_and_as_a_date(crm: CRM, make: Make, status: int) -> None:
    now = float(int(time.time()))  # HTTP dates have whole seconds
    client = make(webhook_endpoint(crm.url("/hook")), wall_clock=lambda: now)
    crm.script("/hook", [dataclasses.replace(Reply.throttle(42), status=status)])
    result = await client.send(delivery())
    assert (result.outcome, result.status, result.retry_after_s) == (Outcome.RETRY, status, 42.0)
    later = email.utils.formatdate(now + 600, usegmt=True)
    crm.script("/hook", [Reply.throttle(later)])
    result = await client.send(delivery())
    assert result.retry_after_s == 600.0


async def test_the_response_body_is_read_only_up_to_the_cap(crm: CRM, make: Make) -> None:
    # The refusal marker sits past the cap: a capped reader never sees it.
    crm.answer("/hook", Reply(body=b"x" * 5000 + b"REFUSED"))
    endpoint = webhook_endpoint(crm.url("/hook"), refuse_when=Refusal(regex=re.compile("REF")))
    capped = make(endpoint, DeliverySettings(allow_networks=LOOPBACK, max_response_bytes=1000))
    assert (await capped.send(delivery())).outcome is Outcome.DELIVERED
    whole = make(endpoint, DeliverySettings(allow_networks=LOOPBACK, max_response_bytes=10_000))
    assert (await whole.send(delivery())).outcome is Outcome.REJECTED


async def test_a_huge_body_is_not_read_and_the_excerpt_is_short(crm: CRM, make: Make) -> None:
    crm.answer("/hook", Reply.big(8 * 1024 * 1024))
    settings = DeliverySettings(allow_networks=LOOPBACK, max_response_bytes=4096)
    result = await make(webhook_endpoint(crm.url("/hook")), settings).send(delivery())
    assert result.outcome is Outcome.DELIVERED
    assert len(result.response_excerpt) == 500


async def test_a_hanging_endpoint_times_out(crm: CRM, make: Make) -> None:
    crm.answer("/hook", Reply.hang())
    client = make(webhook_endpoint(crm.url("/hook"), timeout_s=0.3))
    result = await client.send(delivery())
    assert (result.outcome, result.status, result.detail) == (
        Outcome.RETRY,
        None,
        "timeout after 0.3s",
    )
    assert result.duration_s >= 0.3


async def test_a_reset_connection_is_retried(crm: CRM, make: Make) -> None:
    crm.answer("/hook", Reply.reset())
    result = await make(webhook_endpoint(crm.url("/hook"))).send(delivery())
    assert (result.outcome, result.status) == (Outcome.RETRY, None)
    assert result.detail == "connection closed without an answer"


async def test_a_refused_connection_is_retried(crm: CRM, make: Make) -> None:
    client = make(webhook_endpoint(crm.url("/hook")))
    await crm.down()
    result = await client.send(delivery())
    assert (result.outcome, result.status, result.detail) == (
        Outcome.RETRY,
        None,
        "connection refused",
    )
    await crm.up()
    assert (await client.send(delivery())).outcome is Outcome.DELIVERED


@pytest.mark.parametrize(
    "host",
    ["127.0.0.1", "localhost", "[::ffff:127.0.0.1]"],
    ids=["ip-literal", "name", "ipv4-mapped"],
)
async def test_loopback_is_refused_unless_allow_listed(crm: CRM, make: Make, host: str) -> None:
    url = f"http://{host}:{crm.port}/hook"
    refused = make(webhook_endpoint(url), DeliverySettings())
    result = await refused.send(delivery())
    assert (result.outcome, result.status) == (Outcome.RETRY, None)
    assert result.detail == "destination not allowed (private or reserved address)"
    assert crm.requests == []
    if host != "[::ffff:127.0.0.1]":  # the mapped form needs IPv6 sockets on the host
        allowed = make(webhook_endpoint(url))
        assert (await allowed.send(delivery())).outcome is Outcome.DELIVERED
        assert len(crm.requests) == 1


@pytest.mark.parametrize(
    "host",
    [
        "::127.0.0.1",  # IPv4-compatible
        "::ffff:0:7f00:1",  # SIIT
        "64:ff9b::7f00:1",  # NAT64 to loopback
        "64:ff9b::a9fe:a9fe",  # NAT64 to the cloud metadata service
        "64:ff9b:1::7f00:1",  # local-use NAT64
        "2002:7f00:1::1",  # 6to4
        "2001:0:4136:e378:8000:63bf:80ff:fffe",  # Teredo, client 127.0.0.1
        "fec0::1",  # site-local
    ],
)
async def test_ipv6_forms_carrying_a_private_ipv4_are_refused_before_connecting(
    crm: CRM, make: Make, host: str
) -> None:
    # A connection attempt to one of these would leave the machine (by its default IPv6
    # route): the guard must refuse it first, checked here before anything is sent.
    assert not Guard().allowed(host)
    client = make(webhook_endpoint(f"http://[{host}]:{crm.port}/hook"), DeliverySettings())
    result = await client.send(delivery())
    assert (result.outcome, result.status) == (Outcome.RETRY, None)
    assert result.detail == "destination not allowed (private or reserved address)"
    assert crm.requests == []


async def test_form_post_with_bearer_auth_and_static_headers(crm: CRM, make: Make) -> None:
    endpoint = Endpoint(
        AdapterKind.SALESFORCE,
        crm.url("/sf"),
        static_fields={"oid": "00D000000000001", "lead_source": "Affiliate"},
        headers={"X-Source": "leadgate"},
        auth=Auth(AuthKind.BEARER, SecretRef(env="TOKEN_VAR")),
    )
    d = delivery()
    result = await make(endpoint, environ={"TOKEN_VAR": "t0ken"}).send(d)
    assert result.outcome is Outcome.DELIVERED
    [got] = crm.requests
    assert got.headers["content-type"] == "application/x-www-form-urlencoded"
    assert got.headers["authorization"] == "Bearer t0ken"
    assert got.headers["x-source"] == "leadgate"
    assert got.headers["idempotency-key"] == got.headers["webhook-id"] == d.lead_id
    assert "webhook-signature" not in got.headers  # no secret configured: unsigned
    form = parse_qs(got.text())
    assert form["oid"] == ["00D000000000001"]
    assert form["zip"] == ["75011"]
    assert form["last_name"] == ["Martin"]


@pytest.mark.parametrize(
    ("auth", "header", "value"),
    [
        (Auth(AuthKind.BASIC, SecretRef(env="V"), username="u"), "authorization", "Basic "),
        (Auth(AuthKind.API_KEY, SecretRef(env="V"), header="X-Api-Key"), "x-api-key", ""),
    ],
)
async def test_basic_and_api_key_auth(
    crm: CRM, make: Make, auth: Auth, header: str, value: str
) -> None:
    endpoint = Endpoint(AdapterKind.HUBSPOT, crm.url("/hs"), auth=auth)
    assert (await make(endpoint, environ={"V": "s3cret"}).send(delivery())).status == 200
    sent = crm.requests[0].headers[header]
    if auth.kind is AuthKind.BASIC:
        assert base64.b64decode(sent.removeprefix(value)) == b"u:s3cret"
    else:
        assert sent == "s3cret"
    assert crm.requests[0].json()["fields"][0] == {
        "name": "email",
        "value": "jeanne.martin@example.org",
    }


async def test_a_missing_secret_is_a_start_up_error_naming_the_variable(crm: CRM) -> None:
    endpoint = webhook_endpoint(
        crm.url("/hook"), auth=Auth(AuthKind.BEARER, SecretRef(env="ALSO_MISSING"))
    )
    with pytest.raises(ConfigError) as caught:
        Transport(config_with(endpoint), {})
    assert [i.path for i in caught.value.issues] == [SECRET_ENV, "ALSO_MISSING"]


async def test_a_malformed_signing_secret_is_refused_without_showing_it(crm: CRM) -> None:
    with pytest.raises(ConfigError) as caught:
        Transport(config_with(webhook_endpoint(crm.url("/hook"))), {SECRET_ENV: "not-a-secret"})
    assert "not-a-secret" not in str(caught.value)
    assert SECRET_ENV in str(caught.value)


async def test_no_endpoint_means_no_client() -> None:
    transport = Transport(config_with(None), {})
    try:
        assert transport.client(ADVERTISER) is None
        assert transport.client(AdvertiserId("other")) is None
    finally:
        await transport.close()


async def test_events_see_every_attempt(crm: CRM, make: Make) -> None:
    events = Events()
    client = make(webhook_endpoint(crm.url("/hook")), events=events)
    crm.script("/hook", [Reply.error(502), Reply.ok()])
    results: list[AttemptResult] = [await client.send(delivery()) for _ in range(2)]
    assert [r.outcome for r in results] == [Outcome.RETRY, Outcome.DELIVERED]
    assert events.attempts == [(ADVERTISER, Outcome.RETRY), (ADVERTISER, Outcome.DELIVERED)]
