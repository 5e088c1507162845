"""The publisher API over HTTP (docs/api.md): what a partner sends and what it is answered.

Behavioural tests run on both stores (``make_gateway``); tests of the transport alone (keys,
media types, sizes) on the embedded store (``make_embedded_gateway``).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import aiohttp
import orjson
import pytest

from gateway.types import AdvertiserId

from .conftest import (
    DAY_S,
    EXAMPLE_CONFIG,
    PARIS,
    T0,
    GatewayFactory,
    Reply,
    assert_problem,
    error_fields,
    network,
    person,
)

UUID7 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
ANSWER_KEYS = {"lead_id", "decision", "reasons", "ref", "campaign", "channel", "test"}
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
NEW_YORK = ZoneInfo("America/New_York")


def paris(year: int, month: int, day: int, hour: int = 0, minute: int = 0, s: int = 0) -> float:
    return datetime(year, month, day, hour, minute, s, tzinfo=PARIS).timestamp()


def new_york(year: int, month: int, day: int, hour: int = 0, minute: int = 0, s: int = 0) -> float:
    return datetime(year, month, day, hour, minute, s, tzinfo=NEW_YORK).timestamp()


def form(fields: dict[str, object] | list[tuple[str, str]]) -> bytes:
    return urlencode(fields).encode()


# --- accepted leads, through every transport ---------------------------------------------


async def test_json_post_is_accepted_with_a_uuid7_and_the_partners_ref(
    make_gateway: GatewayFactory,
) -> None:
    gw = await make_gateway()
    answer = await gw.decide("p-comp", person(campaign="nova-ten", ref="cmp-000193"))
    assert set(answer) == ANSWER_KEYS
    assert UUID7.fullmatch(answer["lead_id"]), answer["lead_id"]
    assert answer["decision"] == "accepted"
    assert answer["reasons"] == []
    assert answer["ref"] == "cmp-000193"
    assert answer["campaign"] == "nova-ten"
    assert answer["channel"] == "comparator"  # the partner's first channel: none was named
    assert answer["test"] is False
    assert len(await gw.view.deliveries(AdvertiserId("nova"))) == 1


@pytest.mark.parametrize(
    ("sent", "expected"),
    [
        ({"channel": "site"}, {"channel": "site", "ref": None}),
        ({"channel": ""}, {"channel": "comparator", "ref": None}),
        ({"ref": 20260412000193}, {"channel": "comparator", "ref": "20260412000193"}),
    ],
    ids=["named-channel", "blank-channel-is-default", "numeric-ref-echoed-as-text"],
)
async def test_channel_and_ref_as_sent(
    make_gateway: GatewayFactory, sent: dict[str, object], expected: dict[str, object]
) -> None:
    gw = await make_gateway()
    answer = await gw.decide("p-comp", person(campaign="nova-ten", **sent))
    assert {k: answer[k] for k in expected} == expected


async def test_form_post_is_decided_like_json(make_gateway: GatewayFactory) -> None:
    gw = await make_gateway()
    lead = person(campaign="acme-always-on", ref="f-1", test="0", consent="yes")
    reply = await gw.request("POST", "/v1/leads", partner="p-coreg", data=form(lead), headers=FORM)
    assert reply.status == 200, reply.body
    answer = reply.json()
    assert (answer["decision"], answer["ref"], answer["channel"], answer["test"]) == (
        "accepted",
        "f-1",
        "coreg",
        False,
    )
    # The same person as JSON, from another partner: the form lead was remembered.
    again = await gw.decide("p-mail", {**lead, "test": False, "consent": True})
    assert (again["decision"], again["reasons"]) == ("duplicate", ["duplicate.advertiser"])


async def test_get_postback_with_the_key_in_the_query(make_gateway: GatewayFactory) -> None:
    gw = await make_gateway()
    lead = person(campaign="acme-always-on", ref="pb-7")
    params = {**{k: str(v) for k, v in lead.items()}, "api_key": gw.keys["p-cash"]}
    reply = await gw.request("GET", "/v1/leads", params=params)
    assert reply.status == 200, reply.body
    answer = reply.json()
    assert (answer["decision"], answer["ref"], answer["channel"]) == (
        "accepted",
        "pb-7",
        "cashback",
    )
    assert UUID7.fullmatch(answer["lead_id"])
    # The key is not part of the lead: it is never forwarded to the advertiser.
    (delivered,) = await gw.view.deliveries(AdvertiserId("acme"))
    assert delivered.lead_id == answer["lead_id"]
    assert gw.keys["p-cash"].encode() not in delivered.record
    assert b"api_key" not in delivered.record


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": "Bearer test-key-mail"},
        {"Authorization": "bearer   test-key-mail  "},
        {"X-Api-Key": "test-key-mail"},
    ],
    ids=["bearer", "bearer-any-case-and-spaces", "x-api-key"],
)
async def test_api_key_headers(
    make_embedded_gateway: GatewayFactory, headers: dict[str, str]
) -> None:
    gw = await make_embedded_gateway()
    reply = await gw.post(None, person(campaign="nova-ten"), headers=headers)
    assert reply.status == 200, reply.body
    assert reply.json()["channel"] == "email"  # authenticated as p-mail


# --- refused requests --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "headers", "params"),
    [
        ("POST", "/v1/leads", {}, {}),
        ("POST", "/v1/leads", {"Authorization": "Bearer not-a-key"}, {}),
        ("POST", "/v1/leads", {"Authorization": "Bearer "}, {}),
        ("POST", "/v1/leads", {"Authorization": "Basic dGVzdC1rZXktbWFpbDo="}, {}),
        ("POST", "/v1/leads", {"X-Api-Key": "test-key-mail-"}, {}),
        # Keys in URLs end up in proxies' logs: only the GET postback may carry one.
        ("POST", "/v1/leads", {}, {"api_key": "test-key-mail"}),
        ("GET", "/v1/leads", {}, {"campaign": "nova-ten", "email": "a@example.com"}),
        ("GET", "/v1/leads", {}, {"api_key": "TEST-KEY-MAIL", "campaign": "nova-ten"}),
        ("POST", "/v1/leads/batch", {}, {}),
        ("POST", "/v1/leads/batch", {"X-Api-Key": "demo-mailfox-key"}, {}),
    ],
    ids=[
        "no-key",
        "unknown-bearer",
        "empty-bearer",
        "basic-auth",
        "unknown-x-api-key",
        "query-key-on-post",
        "get-without-key",
        "get-key-wrong-case",
        "batch-no-key",
        "batch-key-of-another-config",
    ],
)
async def test_401_without_a_known_key(
    make_embedded_gateway: GatewayFactory,
    method: str,
    path: str,
    headers: dict[str, str],
    params: dict[str, str],
) -> None:
    gw = await make_embedded_gateway()
    body = {"leads": [person(campaign="nova-ten")]} if path.endswith("batch") else person()
    kwargs: dict[str, Any] = {"params": params}
    if method == "POST":
        kwargs["data"] = orjson.dumps(body)
        headers = {"Content-Type": "application/json", **headers}
    reply = await gw.request(method, path, headers=headers, **kwargs)
    assert_problem(reply, 401, "unauthorized", instance=path)
    assert reply.headers["WWW-Authenticate"].startswith("Bearer")
    assert await gw.view.key_names() == []


async def test_403_same_answer_for_a_closed_and_a_missing_campaign(
    make_gateway: GatewayFactory,
) -> None:
    """A partner cannot tell another partner's campaign from one that does not exist."""
    gw = await make_gateway()
    problems: list[dict[str, Any]] = []
    for campaign in ("acme-peak", "acme-peek"):
        post = await gw.post("p-comp", person(campaign=campaign))
        problems.append(assert_problem(post, 403, "forbidden", instance="/v1/leads"))
        get = await gw.request(
            "GET", "/v1/leads", partner="p-comp", params={"campaign": campaign, "email": "a@b.fr"}
        )
        assert get.json() == post.json()
    closed, missing = problems
    assert closed["detail"].replace("acme-peak", "X") == missing["detail"].replace("acme-peek", "X")
    assert {k: v for k, v in closed.items() if k != "detail"} == {
        k: v for k, v in missing.items() if k != "detail"
    }
    assert await gw.view.deliveries(AdvertiserId("acme")) == []


SMALL_BODIES = {**network(), "server": {"max_body_bytes": 1024, "batch_max_body_bytes": 4096}}


async def _chunks(data: bytes, size: int = 256) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def _padded(document: object, size: int) -> bytes:
    """``document`` as JSON, padded with trailing whitespace to exactly ``size`` bytes."""
    raw = orjson.dumps(document)
    assert len(raw) <= size
    return raw + b" " * (size - len(raw))


@pytest.mark.parametrize(
    ("path", "limit"), [("/v1/leads", 1024), ("/v1/leads/batch", 4096)], ids=["lead", "batch"]
)
@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_413_over_the_body_limit(
    make_embedded_gateway: GatewayFactory, path: str, limit: int, chunked: bool
) -> None:
    gw = await make_embedded_gateway(SMALL_BODIES)
    lead = person(campaign="nova-ten")
    document: object = {"leads": [lead]} if path.endswith("batch") else lead
    headers = {"Content-Type": "application/json"}

    async def send(raw: bytes) -> Reply:
        data: object = _chunks(raw) if chunked else raw
        return await gw.request("POST", path, partner="p-mail", data=data, headers=headers)

    at_limit = await send(_padded(document, limit))
    assert at_limit.status == 200, at_limit.body
    over = await send(_padded(document, limit + 1))
    problem = assert_problem(over, 413, "payload-too-large", instance=path)
    assert str(limit) in problem["detail"]


async def test_413_for_the_default_limit_of_the_example_config(
    make_embedded_gateway: GatewayFactory,
) -> None:
    gw = await make_embedded_gateway(EXAMPLE_CONFIG)
    lead = person(campaign="acme-always-on", ref="x" * 10)
    reply = await gw.request(
        "POST",
        "/v1/leads",
        partner="p-mailfox",
        data=_padded(lead, 65537),
        headers={"Content-Type": "application/json"},
    )
    assert_problem(reply, 413, "payload-too-large")


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("/v1/leads", "text/plain"),
        ("/v1/leads", None),
        ("/v1/leads", "multipart/form-data; boundary=xyz"),
        ("/v1/leads", "application/xml"),
        ("/v1/leads/batch", "application/x-www-form-urlencoded"),
        ("/v1/leads/batch", None),
    ],
    ids=["text-plain", "none", "multipart", "xml", "batch-form", "batch-none"],
)
async def test_415_for_other_media_types(
    make_embedded_gateway: GatewayFactory, path: str, content_type: str | None
) -> None:
    gw = await make_embedded_gateway()
    raw = orjson.dumps({"leads": [person(campaign="nova-ten")]})
    if content_type is None:
        reply = await gw.request(
            "POST", path, partner="p-mail", data=raw, skip_auto_headers=["Content-Type"]
        )
    else:
        reply = await gw.request(
            "POST", path, partner="p-mail", data=raw, headers={"Content-Type": content_type}
        )
    assert_problem(reply, 415, "unsupported-media-type", instance=path)


async def test_415_for_a_real_multipart_upload(make_embedded_gateway: GatewayFactory) -> None:
    gw = await make_embedded_gateway()
    upload = aiohttp.FormData()
    upload.add_field("campaign", "nova-ten")
    upload.add_field("leads", b"email\na@b.fr\n", filename="leads.csv", content_type="text/csv")
    reply = await gw.request("POST", "/v1/leads", partner="p-mail", data=upload)
    assert_problem(reply, 415, "unsupported-media-type")


@pytest.mark.parametrize(
    ("path", "raw", "content_type"),
    [
        ("/v1/leads", b'{"campaign": "nova-ten", "email": ', "application/json"),
        ("/v1/leads", b'{"campaign": "nova-ten",}', "application/json"),
        ("/v1/leads", b"", "application/json"),
        ("/v1/leads", b'{"email": "\xff\xfe"}', "application/json"),
        ("/v1/leads", b"campaign=nova-ten&email=\xff", "application/x-www-form-urlencoded"),
        ("/v1/leads/batch", b'{"leads": [', "application/json"),
    ],
    ids=["truncated", "trailing-comma", "empty", "not-utf8", "form-not-utf8", "batch"],
)
async def test_400_for_a_malformed_body(
    make_embedded_gateway: GatewayFactory, path: str, raw: bytes, content_type: str
) -> None:
    gw = await make_embedded_gateway()
    reply = await gw.request(
        "POST", path, partner="p-mail", data=raw, headers={"Content-Type": content_type}
    )
    assert_problem(reply, 400, "bad-request", instance=path)


async def test_422_lists_every_bad_field_at_once(make_gateway: GatewayFactory) -> None:
    gw = await make_gateway()
    lead = {
        "campaign": "acme-always-on",
        "email": "not-an-email",
        "phone": "12",
        "first_name": "Jean\x00",
        "country": "XX",
        "birth_date": "31/02/1990",
        "ip": "999.1.1.1",
        "test": "maybe",
        "channel": "teleport",
        "consent": {"given": True, "at": "yesterday"},
    }
    problem = assert_problem(await gw.post("p-mail", lead), 422, "invalid-lead")
    assert set(error_fields(problem)) == {
        "email",
        "phone",
        "first_name",
        "country",
        "birth_date",
        "ip",
        "test",
        "channel",
        "consent/at",
    }
    assert all(e["message"] for e in problem["errors"])
    assert "email" in problem["detail"]
    assert await gw.view.key_names() == []


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ([{"campaign": "nova-ten", "email": "a@example.com"}], None),
        ({"campaign": "nova-ten", "email": {"address": "a@example.com"}}, ["email"]),
        ({"campaign": "nova-ten", "email": ["a@example.com"]}, ["email"]),
        ({"email": "a@example.com"}, ["campaign"]),
        ({"campaign": "nova-ten"}, ["email"]),
        ({"campaign": "nova-ten", "email": "a@example.com", "channel": "teleport"}, ["channel"]),
        # A channel of the network, but not one of this partner's.
        ({"campaign": "nova-ten", "email": "a@example.com", "channel": "cashback"}, ["channel"]),
        ({"campaign": "nova-ten", "email": "a@example.com", "channel": 7}, ["channel"]),
    ],
    ids=[
        "json-array",
        "email-object",
        "email-list",
        "no-campaign",
        "no-email",
        "unknown-channel",
        "channel-not-the-partners",
        "channel-not-text",
    ],
)
async def test_422_for_wrong_shapes(
    make_gateway: GatewayFactory, body: object, fields: list[str] | None
) -> None:
    gw = await make_gateway()
    problem = assert_problem(await gw.post("p-mail", body), 422, "invalid-lead")
    assert problem["errors"], problem
    assert all(error_fields(problem)), problem  # every entry points somewhere
    if fields is not None:
        assert set(error_fields(problem)) == set(fields)


async def test_422_names_a_bad_field_once(make_gateway: GatewayFactory) -> None:
    """One entry per bad field (as ``parse_lead`` promises), whichever check found it."""
    gw = await make_gateway()
    for channel in (7, "c" * 65, "bad\nchannel"):
        lead = {"campaign": "nova-ten", "email": "a@example.com", "channel": channel}
        problem = assert_problem(await gw.post("p-mail", lead), 422, "invalid-lead")
        assert error_fields(problem) == ["channel"], problem


@pytest.mark.parametrize(
    ("pairs", "field"),
    [
        (
            [("campaign", "nova-ten"), ("email", "a@example.com"), ("email", "b@example.com")],
            "email",
        ),
        (
            [("campaign", "nova-ten"), ("campaign", "acme-always-on"), ("email", "a@b.fr")],
            "campaign",
        ),
    ],
    ids=["email-twice", "campaign-twice"],
)
@pytest.mark.parametrize("transport", ["form", "get"])
async def test_422_for_a_repeated_field(
    make_gateway: GatewayFactory, pairs: list[tuple[str, str]], field: str, transport: str
) -> None:
    """Which of two values is meant? Neither is guessed."""
    gw = await make_gateway()
    if transport == "form":
        reply = await gw.request(
            "POST", "/v1/leads", partner="p-mail", data=form(pairs), headers=FORM
        )
    else:
        reply = await gw.request("GET", "/v1/leads", partner="p-mail", params=pairs)
    problem = assert_problem(reply, 422, "invalid-lead")
    assert error_fields(problem) == [field]


# --- dedup, windows, caps, campaigns -----------------------------------------------------


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (("p-mailfox", "acme-always-on"), ("p-coregia", "acme-black-friday")),
        (("p-coregia", "acme-black-friday"), ("p-mailfox", "acme-always-on")),
        (("p-cashmoon", "acme-black-friday"), ("p-compario", "acme-always-on")),
    ],
    ids=["always-on-then-peak", "peak-then-always-on", "peak-then-always-on-other-partners"],
)
async def test_one_advertiser_never_buys_a_person_twice_across_its_campaigns(
    make_gateway: GatewayFactory, first: tuple[str, str], second: tuple[str, str]
) -> None:
    """The always-on vs peak cannibalisation case, on the shipped example config."""
    gw = await make_gateway(EXAMPLE_CONFIG)
    marie = {"email": "marie.dupont@gmail.com", "first_name": "Marie", "postal_code": "75011"}
    answer = await gw.decide(first[0], {**marie, "campaign": first[1]})
    assert answer["decision"] == "accepted"
    # Another spelling of the same mailbox, a week later.
    gw.clock.advance(7 * DAY_S)
    respelled = {**marie, "email": "M.ARIE.DUPONT+promo@googlemail.com"}
    answer = await gw.decide(second[0], {**respelled, "campaign": second[1]})
    assert (answer["decision"], answer["reasons"]) == ("duplicate", ["duplicate.advertiser"])
    assert len(await gw.view.deliveries(AdvertiserId("acme-energy"))) == 1


@pytest.mark.parametrize(
    ("partner", "days_later", "decision"),
    [
        ("p-cash", 6, "duplicate"),
        ("p-cash", 8, "accepted"),  # cashback: the advertiser takes people back after 7 d
        ("p-coreg", 8, "duplicate"),  # everybody else waits the default 30 d
        ("p-coreg", 29, "duplicate"),
        ("p-coreg", 31, "accepted"),
    ],
)
async def test_dedup_window_is_overridden_per_channel(
    make_gateway: GatewayFactory, partner: str, days_later: int, decision: str
) -> None:
    gw = await make_gateway()
    lead = person(campaign="acme-always-on")
    assert (await gw.decide("p-mail", lead))["decision"] == "accepted"
    gw.clock.advance(days_later * DAY_S)
    answer = await gw.decide(partner, lead)
    assert answer["decision"] == decision
    if decision == "duplicate":
        assert answer["reasons"] == ["duplicate.advertiser"]


async def test_a_duplicate_does_not_extend_the_window(make_gateway: GatewayFactory) -> None:
    """The first sighting keeps its window: refused resends do not keep a person locked."""
    gw = await make_gateway()
    lead = person(campaign="acme-always-on")
    assert (await gw.decide("p-mail", lead))["decision"] == "accepted"
    for days_later in (10, 20, 29):
        gw.clock.now_s = T0 + days_later * DAY_S
        assert (await gw.decide("p-coreg", lead))["decision"] == "duplicate"
    gw.clock.now_s = T0 + 31 * DAY_S
    assert (await gw.decide("p-coreg", lead))["decision"] == "accepted"


async def test_a_capped_lead_is_not_remembered(make_gateway: GatewayFactory) -> None:
    """nova-ten: 10 a day, nobody twice in 30 d. The 11th person may come back tomorrow."""
    gw = await make_gateway()
    for _ in range(10):
        assert (await gw.decide("p-mail", person(campaign="nova-ten")))["decision"] == "accepted"
    late = person(campaign="nova-ten")
    assert (await gw.decide("p-mail", late))["reasons"] == ["cap.campaign.day"]
    gw.clock.advance(DAY_S)
    assert (await gw.decide("p-mail", late))["decision"] == "accepted"


async def test_day_cap_resets_at_midnight_in_the_campaigns_time_zone(
    make_gateway: GatewayFactory,
) -> None:
    """nova-daily takes 2 leads per New York day; UTC midnight changes nothing."""
    gw = await make_gateway(now_s=new_york(2026, 11, 20, 18, 30))

    async def post() -> dict[str, Any]:
        return await gw.decide("p-mail", person(campaign="nova-daily"))

    assert [(await post())["decision"] for _ in range(3)] == ["accepted", "accepted", "capped"]
    steps = [
        (new_york(2026, 11, 20, 19, 30), "capped"),  # 00:30 UTC: a new UTC day, same NY day
        (new_york(2026, 11, 20, 23, 59, 59), "capped"),
        (new_york(2026, 11, 21, 0, 0, 1), "accepted"),
        (new_york(2026, 11, 21, 9, 0), "accepted"),
        (new_york(2026, 11, 21, 9, 1), "capped"),
    ]
    for now_s, decision in steps:
        gw.clock.now_s = now_s
        answer = await post()
        assert answer["decision"] == decision, datetime.fromtimestamp(now_s, NEW_YORK)
        if decision == "capped":
            assert answer["reasons"] == ["cap.campaign.day"]


@pytest.mark.parametrize(
    ("campaign", "now_s", "decision"),
    [
        ("acme-summer", T0, "rejected"),  # ended on 2026-08-31
        ("acme-summer", paris(2026, 8, 31, 23, 59), "accepted"),  # a bare end date: whole day
        ("acme-peak", paris(2026, 10, 31, 23, 59, 59), "rejected"),
        ("acme-peak", paris(2026, 11, 1, 0, 0), "accepted"),
        ("acme-peak", paris(2026, 12, 1, 0, 0), "rejected"),
    ],
    ids=["after-end", "last-day", "before-start", "at-start", "at-end"],
)
async def test_peak_campaign_outside_its_dates_is_rejected(
    make_gateway: GatewayFactory, campaign: str, now_s: float, decision: str
) -> None:
    gw = await make_gateway(now_s=now_s)
    lead = person(campaign=campaign)
    answer = await gw.decide("p-mail", lead)
    assert answer["decision"] == decision
    if decision == "rejected":
        assert answer["reasons"] == ["campaign.inactive"]
        # A refused lead is not remembered: the advertiser may still buy this person.
        again = await gw.decide("p-coreg", {**lead, "campaign": "acme-always-on"})
        assert again["decision"] == "accepted"


@pytest.mark.parametrize(
    ("config", "partner", "campaign", "headers"),
    [
        (None, "p-mail", "acme-always-on", {}),
        (None, "p-mail", "nova-daily", {}),
        # Network dedup and contact pressure live in the person's slot: untouched too.
        (EXAMPLE_CONFIG, "p-mailfox", "novabank-credit", {}),
        # An integration check that sends the lead's own key, as it will in production.
        (None, "p-mail", "acme-always-on", {"Idempotency-Key": "lead-5581"}),
    ],
    ids=["dedup", "day-cap", "example-network-and-pressure", "with-idempotency-key"],
)
async def test_test_mode_decides_but_remembers_nothing(
    make_gateway: GatewayFactory,
    config: Path | None,
    partner: str,
    campaign: str,
    headers: dict[str, str],
) -> None:
    gw = await make_gateway(config)
    lead = person(campaign=campaign, postal_code="75011")
    for _ in range(3):
        answer = await gw.decide(partner, {**lead, "test": True}, headers=headers)
        assert (answer["decision"], answer["test"]) == ("accepted", True)
    assert await gw.view.key_names() == []
    real = await gw.decide(partner, lead, headers=headers)
    assert (real["decision"], real["test"]) == ("accepted", False)


async def test_test_leads_do_not_use_up_a_cap(make_gateway: GatewayFactory) -> None:
    gw = await make_gateway()
    for _ in range(5):
        answer = await gw.decide("p-mail", person(campaign="nova-daily", test=True))
        assert answer["decision"] == "accepted"
    decisions = [
        (await gw.decide("p-mail", person(campaign="nova-daily")))["decision"] for _ in range(3)
    ]
    assert decisions == ["accepted", "accepted", "capped"]
    # In test mode a publisher sees what a real lead would get now.
    assert (await gw.decide("p-mail", person(campaign="nova-daily", test=True)))["decision"] == (
        "capped"
    )


# --- Idempotency-Key ---------------------------------------------------------------------


async def test_idempotent_retry_returns_the_first_answer(make_gateway: GatewayFactory) -> None:
    gw = await make_gateway()
    lead = person(campaign="acme-always-on", ref="r-1")
    key = {"Idempotency-Key": "order-1842-attempt"}
    first = await gw.post("p-mail", lead, headers=key)
    retry = await gw.post("p-mail", lead, headers=key)
    assert first.status == retry.status == 200
    assert "Idempotent-Replayed" not in first.headers
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert retry.json() == first.json()
    assert first.json()["decision"] == "accepted"  # not "duplicate" of itself
    assert len(await gw.view.deliveries(AdvertiserId("acme"))) == 1
    # Without the key, the same lead is a duplicate: the key is what makes a retry a retry.
    plain = await gw.decide("p-mail", lead)
    assert plain["decision"] == "duplicate"
    assert plain["lead_id"] != first.json()["lead_id"]


async def test_idempotent_retry_of_a_postback_with_parameters_reordered(
    make_gateway: GatewayFactory,
) -> None:
    gw = await make_gateway()
    pairs = [(k, str(v)) for k, v in person(campaign="acme-always-on").items()]
    key = {"Idempotency-Key": "pb-77"}
    first = await gw.request("GET", "/v1/leads", partner="p-mail", params=pairs, headers=key)
    retry = await gw.request("GET", "/v1/leads", partner="p-mail", params=pairs[::-1], headers=key)
    assert first.status == retry.status == 200
    assert retry.headers.get("Idempotent-Replayed") == "true"
    assert retry.json()["lead_id"] == first.json()["lead_id"]


async def test_idempotency_key_reused_with_another_body_is_422(
    make_gateway: GatewayFactory,
) -> None:
    gw = await make_gateway()
    key = {"Idempotency-Key": "k-9"}
    first = await gw.decide("p-mail", person(campaign="acme-always-on"), headers=key)
    other = person(campaign="acme-always-on")
    problem = assert_problem(
        await gw.post("p-mail", other, headers=key), 422, "idempotency-conflict"
    )
    assert "errors" not in problem
    assert len(await gw.view.deliveries(AdvertiserId("acme"))) == 1
    # Other partners' keys are their own business: no conflict across partners.
    theirs = await gw.decide("p-coreg", other, headers=key)
    assert theirs["decision"] == "accepted"
    assert theirs["lead_id"] != first["lead_id"]


@pytest.mark.parametrize(
    "key",
    ["", "x" * 256, "with space", "tab\there", "clé"],
    ids=["empty", "long", "space", "tab", "non-ascii"],
)
async def test_400_for_an_invalid_idempotency_key(make_gateway: GatewayFactory, key: str) -> None:
    gw = await make_gateway()
    reply = await gw.post(
        "p-mail", person(campaign="acme-always-on"), headers={"Idempotency-Key": key}
    )
    assert_problem(reply, 400, "bad-request")
    assert await gw.view.key_names() == []


async def test_idempotent_batch_retry(make_gateway: GatewayFactory) -> None:
    gw = await make_gateway()
    leads = [person(campaign="acme-always-on") for _ in range(3)]
    key = {"Idempotency-Key": "batch-2026-11-20-01"}
    first = await gw.batch("p-mail", leads, headers=key)
    retry = await gw.batch("p-mail", leads, headers=key)
    assert first.status == retry.status == 200
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert retry.json() == {
        "results": [{**item, "replayed": True} for item in first.json()["results"]],
        "counts": first.json()["counts"],
    }
    assert first.json()["counts"]["accepted"] == 3
    assert len(await gw.view.deliveries(AdvertiserId("acme"))) == 3


async def test_batch_and_single_post_keys_never_collide(make_gateway: GatewayFactory) -> None:
    """``b-7#0`` is a valid key of its own, not "item 0 of batch b-7"."""
    gw = await make_gateway()
    batch = await gw.batch(
        "p-mail", [person(campaign="acme-always-on")], headers={"Idempotency-Key": "b-7"}
    )
    assert batch.json()["counts"]["accepted"] == 1
    single = await gw.post(
        "p-mail", person(campaign="acme-always-on"), headers={"Idempotency-Key": "b-7#0"}
    )
    assert single.status == 200, single.body
    assert single.json()["decision"] == "accepted"


# --- batches -----------------------------------------------------------------------------


async def test_batch_decides_each_lead_and_refuses_bad_ones_alone(
    make_gateway: GatewayFactory,
) -> None:
    gw = await make_gateway()
    ann = person(campaign="nova-ten", ref="b-0")
    leads: list[object] = [
        ann,
        {"campaign": "nova-ten", "email": "nope", "phone": "12"},
        "not a lead",
        person(campaign="acme-peak"),  # not open to p-comp
        person(campaign="nova-ten", ref="b-4"),
        {**ann, "ref": "b-5", "email": str(ann["email"]).upper()},  # ann again, inside the batch
        person(campaign="acme-summer"),  # over
    ]
    reply = await gw.batch("p-comp", leads)
    assert reply.status == 200, reply.body
    body = reply.json()
    results = body["results"]
    assert [r["index"] for r in results] == list(range(len(leads)))
    outcome = [r.get("decision") or r["error"]["type"].rsplit(":", 1)[1] for r in results]
    assert outcome == [
        "accepted",
        "invalid-lead",
        "invalid-lead",
        "forbidden",
        "accepted",
        "duplicate",
        "rejected",
    ]
    assert sorted(error_fields(results[1]["error"])) == ["leads/1/email", "leads/1/phone"]
    assert error_fields(results[2]["error"]) == ["leads/2"]
    assert results[3]["error"]["status"] == 403
    assert (results[0]["ref"], results[4]["ref"], results[5]["ref"]) == ("b-0", "b-4", "b-5")
    assert results[5]["reasons"] == ["duplicate.campaign"]
    assert results[6]["reasons"] == ["campaign.inactive"]
    assert body["counts"] == {
        "accepted": 2,
        "duplicate": 1,
        "capped": 0,
        "rejected": 1,
        "invalid": 3,
    }
    assert len({r["lead_id"] for r in results if "lead_id" in r}) == 4
    assert len(await gw.view.deliveries(AdvertiserId("nova"))) == 2


async def test_batch_counts_caps_lead_by_lead(make_gateway: GatewayFactory) -> None:
    gw = await make_gateway()
    reply = await gw.batch("p-mail", [person(campaign="nova-daily") for _ in range(4)])
    body = reply.json()
    assert [r["decision"] for r in body["results"]] == ["accepted", "accepted", "capped", "capped"]
    assert body["counts"]["capped"] == 2


@pytest.mark.parametrize(
    ("document", "field"),
    [
        ({"leads": [{"campaign": "nova-ten"}] * 1001}, "leads"),
        ({"leads": {"0": {"campaign": "nova-ten"}}}, "leads"),
        ({"leads": "a@b.fr"}, "leads"),
        ({"leads": []}, "leads"),
        ({}, "leads"),
        ({"leads": [{"campaign": "nova-ten"}], "campaign": "nova-ten"}, "campaign"),
    ],
    ids=["over-1000", "object", "string", "empty", "missing", "unknown-member"],
)
async def test_batch_422_for_a_wrong_envelope(
    make_embedded_gateway: GatewayFactory, document: object, field: str
) -> None:
    gw = await make_embedded_gateway()
    reply = await gw.post("p-mail", document, path="/v1/leads/batch")
    problem = assert_problem(reply, 422, "invalid-lead", instance="/v1/leads/batch")
    assert error_fields(problem) == [field]
    assert await gw.view.key_names() == []


async def test_batch_of_exactly_1000_is_taken(make_embedded_gateway: GatewayFactory) -> None:
    gw = await make_embedded_gateway()
    reply = await gw.batch("p-mail", [person(campaign="acme-always-on") for _ in range(1000)])
    assert reply.status == 200
    assert reply.json()["counts"]["accepted"] == 1000


async def test_the_same_person_twice_in_one_batch(make_gateway: GatewayFactory) -> None:
    gw = await make_gateway()
    spellings = [
        {"email": "Jean.Morel@Gmail.com", "phone": "06 98 76 54 32"},
        {"email": "jeanmorel+promo@googlemail.com", "phone": ""},
        {"email": "other@example.com", "phone": "+33 6 98 76 54 32"},
    ]
    leads = [{"campaign": "acme-always-on", **s} for s in spellings]
    body = (await gw.batch("p-coreg", leads)).json()
    assert [r["decision"] for r in body["results"]] == ["accepted", "duplicate", "duplicate"]
    assert body["counts"] == {
        "accepted": 1,
        "duplicate": 2,
        "capped": 0,
        "rejected": 0,
        "invalid": 0,
    }


# --- rate limit --------------------------------------------------------------------------


def _rate_limited() -> dict[str, Any]:
    config = network()
    config["partners"][0]["rate_limit"] = {"per_s": 0.01, "burst": 2}  # p-mail
    return config


async def test_429_with_retry_after_beyond_the_burst(make_gateway: GatewayFactory) -> None:
    gw = await make_gateway(_rate_limited())
    for _ in range(2):
        assert (await gw.decide("p-mail", person(campaign="nova-ten")))["decision"] == "accepted"
    reply = await gw.post("p-mail", person(campaign="nova-ten"))
    problem = assert_problem(reply, 429, "rate-limited")
    retry_after = int(reply.headers["Retry-After"])
    assert 1 <= retry_after <= 100  # one token at 0.01/s
    assert "0.01" in problem["detail"]
    # Other partners are not slowed down by this one.
    assert (await gw.decide("p-coreg", person(campaign="nova-ten")))["decision"] == "accepted"
    # An unknown key is still told it is unknown, never "slow down".
    unknown = await gw.post(None, person(), headers={"X-Api-Key": "nope"})
    assert_problem(unknown, 401, "unauthorized")
    assert len(await gw.view.deliveries(AdvertiserId("nova"))) == 3


async def test_429_for_a_batch_once_the_tokens_are_spent(make_gateway: GatewayFactory) -> None:
    gw = await make_gateway(_rate_limited())
    for _ in range(2):
        assert (await gw.decide("p-mail", person(campaign="nova-ten")))["decision"] == "accepted"
    reply = await gw.batch("p-mail", [person(campaign="nova-ten")])
    assert_problem(reply, 429, "rate-limited", instance="/v1/leads/batch")
    assert int(reply.headers["Retry-After"]) >= 1
    assert len(await gw.view.deliveries(AdvertiserId("nova"))) == 2  # nothing of the batch


# --- the shape of every answer -----------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "status", "slug"),
    [
        ("GET", "/v2/leads", 404, "not-found"),
        ("GET", "/", 404, "not-found"),
        ("PUT", "/v1/leads", 405, "method-not-allowed"),
        ("DELETE", "/v1/leads/batch", 405, "method-not-allowed"),
        ("GET", "/v1/leads/batch", 405, "method-not-allowed"),
    ],
)
async def test_unknown_routes_and_methods_are_problems_too(
    make_embedded_gateway: GatewayFactory, method: str, path: str, status: int, slug: str
) -> None:
    gw = await make_embedded_gateway()
    reply = await gw.request(method, path, partner="p-mail")
    # No route matched: the path is what was sent, and is not echoed.
    assert_problem(reply, status, slug, instance=None)
    if status == 405:
        assert reply.headers["Allow"]


async def test_publishers_never_learn_who_sent_the_first_lead(
    make_gateway: GatewayFactory,
) -> None:
    gw = await make_gateway()
    lead = person(campaign="acme-always-on", ref="mail-ref-secret-1")
    first = await gw.decide("p-mail", lead)
    # Who sent the person, through what, under which reference and lead id, and which of
    # the advertiser's campaigns bought them: none of it may reach another publisher.
    secrets = ["p-mail", "mail-ref-secret-1", "acme-always-on", '"email"', first["lead_id"]]

    answers: list[Reply] = [
        await gw.post("p-coreg", {**lead, "campaign": "acme-peak", "ref": "mine"}),
        await gw.request(
            "GET",
            "/v1/leads",
            partner="p-cash",
            params={"campaign": "acme-peak", "email": str(lead["email"])},
        ),
        await gw.batch("p-coreg", [{**lead, "campaign": "acme-peak", "ref": "mine-2"}]),
    ]
    for reply in answers:
        assert reply.status == 200, reply.body
        assert b"duplicate.advertiser" in reply.body
        text = reply.body.decode()
        assert [s for s in secrets if s in text] == [], text
        assert '"acme"' not in text  # not even the advertiser's id
    single = answers[0].json()
    assert set(single) == ANSWER_KEYS
    assert (single["campaign"], single["channel"], single["ref"]) == ("acme-peak", "coreg", "mine")
