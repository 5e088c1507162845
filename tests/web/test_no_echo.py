"""Error answers never echo what was sent.

A field is named by its path only when each part is a plain name or an index; any other key
(an email, a whole JSON text posted as a form) is ``(unknown field N)``; no value is ever
quoted, the campaign and the content type included; a path no route matched is not sent
back; and the errors aiohttp answers itself (a request line or a header it cannot parse, a URL
too long) are problem+json without the request's text, on the real listener
(``web.connections``), and are not logged with it either. JSON members repeated in an object
are refused, as repeated form fields are.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import orjson
import pytest
from aiohttp import web

from gateway.web.app import create_app
from gateway.web.connections import ConnectionGuard, GuardedSite, Limits

from .conftest import Gateway, GatewayFactory, Reply, assert_problem, person

EMAIL = "marie.canary@example.org"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def assert_no_echo(reply: Reply, *needles: str) -> None:
    text = reply.body.decode("utf-8", "replace").lower()
    for needle in (EMAIL, "marie", *needles):
        assert needle.lower() not in text, reply.body


async def test_a_json_text_posted_as_a_form_is_not_sent_back(
    make_embedded_gateway: GatewayFactory,
) -> None:
    """``curl -d '{json}'`` posts the JSON as a form: the whole text is one field name."""
    gw = await make_embedded_gateway()
    text = orjson.dumps({"campaign": "acme-always-on", "email": EMAIL}).decode()
    reply = await gw.request("POST", "/v1/leads", partner="p-mail", data=text, headers=FORM)
    problem = assert_problem(reply, 422, "invalid-lead", instance="/v1/leads")
    assert_no_echo(reply)
    fields = [e["field"] for e in problem["errors"]]
    assert "(unknown field 1)" in fields
    assert "campaign" in fields  # what is missing is still named


async def test_unknown_field_names_are_named_only_when_plain(
    make_embedded_gateway: GatewayFactory,
) -> None:
    gw = await make_embedded_gateway()
    lead = {
        **person(campaign="acme-always-on"),
        EMAIL: "x",  # an email as a key
        "06 12 34 56 78": "y",  # a phone number
        "utm$source": "z",
    }
    reply = await gw.post("p-mail", lead)
    problem = assert_problem(reply, 422, "invalid-lead", instance="/v1/leads")
    assert_no_echo(reply, "06 12", "utm$")
    fields = [e["field"] for e in problem["errors"]]
    assert fields == ["(unknown field 1)", "(unknown field 2)", "(unknown field 3)"]
    assert problem["detail"] == "3 invalid field(s): " + ", ".join(fields)
    # A plain name is shown (a typo is worth seeing), an odd one is not.
    reply = await gw.post(
        "p-mail", {"leads": [person()], "leadz": 1, EMAIL: 2}, path="/v1/leads/batch"
    )
    problem = assert_problem(reply, 422, "invalid-lead", instance="/v1/leads/batch")
    assert [e["field"] for e in problem["errors"]] == ["leadz", "(unknown field 1)"]
    assert_no_echo(reply)


async def test_a_campaign_value_is_never_quoted(make_embedded_gateway: GatewayFactory) -> None:
    gw = await make_embedded_gateway()
    for campaign in (EMAIL, "nova-secret-campaign", "acme-peak"):
        reply = await gw.post("p-comp", {**person(), "campaign": campaign})
        assert reply.status in (403, 422), reply.body
        assert_no_echo(reply, "secret", "acme-peak")


async def test_neither_the_content_type_nor_the_path_is_sent_back(
    make_embedded_gateway: GatewayFactory,
) -> None:
    gw = await make_embedded_gateway()
    reply = await gw.request(
        "POST", "/v1/leads", partner="p-mail", data=b"x", headers={"Content-Type": f"text/{EMAIL}"}
    )
    assert_problem(reply, 415, "unsupported-media-type", instance="/v1/leads")
    assert_no_echo(reply)
    for method in ("GET", "POST"):
        reply = await gw.request(method, f"/v1/leads/{EMAIL}", partner="p-mail")
        assert_problem(reply, 404, "not-found", instance=None)
        assert_no_echo(reply)


# --- repeated JSON members -------------------------------------------------------------------


async def test_a_member_given_twice_is_refused_like_a_form_field(
    make_embedded_gateway: GatewayFactory,
) -> None:
    gw = await make_embedded_gateway()
    twice = b'{"campaign": "acme-always-on", "email": "a@example.org", "email" : "b@example.org"}'
    reply = await gw.request(
        "POST", "/v1/leads", partner="p-mail", data=twice,
        headers={"Content-Type": "application/json"},
    )  # fmt: skip
    problem = assert_problem(reply, 422, "invalid-lead", instance="/v1/leads")
    assert problem["errors"] == [{"field": "email", "message": "given more than once"}]
    form = "campaign=acme-always-on&email=a%40example.org&email=b%40example.org"
    reply = await gw.request("POST", "/v1/leads", partner="p-mail", data=form, headers=FORM)
    problem = assert_problem(reply, 422, "invalid-lead")
    assert problem["errors"] == [{"field": "email", "message": "given more than once"}]


async def test_a_member_repeated_inside_a_batch_lead_or_a_consent_is_refused(
    make_embedded_gateway: GatewayFactory,
) -> None:
    gw = await make_embedded_gateway()
    batch = (
        b'{"leads": [{"campaign": "acme-always-on", "email": "a@example.org", "first_name": "A"},'
        b' {"campaign": "acme-always-on", "phone": "+33612345678", "phone": "+33612345679"}]}'
    )
    reply = await gw.request(
        "POST", "/v1/leads/batch", partner="p-mail", data=batch,
        headers={"Content-Type": "application/json"},
    )  # fmt: skip
    problem = assert_problem(reply, 422, "invalid-lead", instance="/v1/leads/batch")
    assert problem["errors"] == [{"field": "phone", "message": "given more than once"}]
    consent = (
        b'{"campaign": "acme-always-on", "email": "c@example.org",'
        b' "consent": {"given": true, "given": false}}'
    )
    reply = await gw.request(
        "POST", "/v1/leads", partner="p-mail", data=consent,
        headers={"Content-Type": "application/json"},
    )  # fmt: skip
    assert assert_problem(reply, 422, "invalid-lead")["errors"][0]["field"] == "given"


async def test_values_that_look_like_member_names_are_not_repeats(
    make_embedded_gateway: GatewayFactory,
) -> None:
    """The cheap count of member names also sees an escaped quote before a colon inside a
    value: the body is then parsed again, and a lead without repeats is decided."""
    gw = await make_embedded_gateway()
    lead = {**person(campaign="acme-always-on"), "note": 'he said "a": b, "c" : d'}
    reply = await gw.post("p-mail", lead)
    assert reply.status == 200, reply.body


# --- what aiohttp answers itself, on the real listener ----------------------------------------


@pytest.fixture
async def listener(make_embedded_gateway: GatewayFactory) -> AsyncIterator[int]:
    """The lead app behind ``GuardedSite``, as ``leadgate serve`` listens: its port."""
    gw: Gateway = await make_embedded_gateway()
    runner = web.AppRunner(create_app(gw.app), access_log=None)
    await runner.setup()
    guard = ConnectionGuard(
        "public", lambda: Limits(10.0, 75.0, 100), gw.observer.connections.events("public")
    )
    site = GuardedSite(runner, guard, "127.0.0.1", 0)
    await site.start()
    try:
        yield site.port
    finally:
        await runner.cleanup()


async def exchange(port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        async with asyncio.timeout(10):
            return await reader.read(65536)
    finally:
        writer.close()


@pytest.mark.parametrize(
    "request_bytes",
    [
        # A URL longer than aiohttp reads (8 KiB), with a key and an email in its query.
        b"GET /v1/leads?api_key=demo-secret-key&email="
        + EMAIL.encode()
        + b"&x="
        + b"a" * 9000
        + b" HTTP/1.1\r\nHost: gateway\r\n\r\n",
        # A header line that is not one.
        b"POST /v1/leads HTTP/1.1\r\nHost: gateway\r\nEmail " + EMAIL.encode() + b"\r\n\r\n",
        # A header too long.
        b"GET /healthz HTTP/1.1\r\nHost: gateway\r\nX-Email: " + EMAIL.encode() * 400 + b"\r\n\r\n",
        # Not HTTP at all.
        b"HELLO " + EMAIL.encode() + b"\r\n\r\n",
    ],
    ids=["url-too-long", "bad-header", "header-too-long", "not-http"],
)
async def test_what_aiohttp_refuses_is_problem_json_without_echo_or_log(
    listener: int, request_bytes: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    answer = await exchange(listener, request_bytes)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.split(b" ")[1] == b"400", answer
    assert b"application/problem+json" in head
    problem = orjson.loads(body)
    assert problem["type"] == "urn:leadgate:problem:bad-request"
    assert problem["detail"] == "the request line or headers are malformed or too long"
    assert b"marie" not in answer
    assert b"demo-secret-key" not in answer
    logged = "\n".join(r.getMessage() + str(r.exc_info) for r in caplog.records)
    assert "marie" not in logged
    assert "127.0.0.1" not in logged  # nor who sent it
