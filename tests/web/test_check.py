"""The pre-ping check (``POST /v1/leads/check``) through HTTP on both stores: a person first
seen by a full post is found by a hashed check and the other way round (sha256 fingerprint
keys), caps and closed campaigns are told, nothing is reserved or remembered, personal data
is refused by name, and a key without the sha256 scheme says it cannot match."""

from __future__ import annotations

import hashlib
from typing import Any

from gateway.leads.email import normalize_email
from gateway.leads.phone import normalize_phone
from gateway.types import FingerprintKey

from .conftest import (
    Gateway,
    GatewayFactory,
    assert_problem,
    error_fields,
    network,
    person,
    sold_network,
)
from .test_distribution_http import metric
from .test_openapi import assert_matches_spec

CHECK = "/v1/leads/check"


def hashed(lead: dict[str, object]) -> dict[str, str]:
    """The lead's identifiers as a publisher hashes them (docs/api.md)."""
    out = {}
    if isinstance(lead.get("email"), str):
        identity = normalize_email(str(lead["email"])).identity
        out["email_sha256"] = hashlib.sha256(identity.encode()).hexdigest()
    if isinstance(lead.get("phone"), str):
        e164 = normalize_phone(str(lead["phone"]), "FR")
        out["phone_sha256"] = hashlib.sha256(e164.encode()).hexdigest()
    return out


async def check(gw: Gateway, partner: str, body: dict[str, object]) -> dict[str, Any]:
    reply = await gw.post(partner, body, path=CHECK)
    assert reply.status == 200, reply.body
    assert_matches_spec("POST", CHECK, reply)
    answer: dict[str, Any] = reply.json()
    return answer


async def test_a_person_posted_in_full_is_found_by_a_hashed_check(
    make_gateway: GatewayFactory,
) -> None:
    gw = await make_gateway()
    lead = person(campaign="acme-always-on")
    before = await check(gw, "p-mail", {"campaign": "acme-always-on", **hashed(lead)})
    assert before == {
        "campaign": "acme-always-on", "channel": "email", "status": "open", "reasons": [],
    }  # fmt: skip
    # A check reserves nothing and remembers nothing: the post is accepted.
    assert (await gw.decide("p-mail", lead))["decision"] == "accepted"
    # Found by either identifier alone, in every campaign sharing the advertiser's scope.
    for sent in ({"email_sha256": hashed(lead)["email_sha256"]}, hashed(lead)):
        after = await check(gw, "p-coreg", {"campaign": "acme-peak", **sent})
        assert (after["status"], after["reasons"]) == ("duplicate", ["duplicate.advertiser"])
    # Another spelling of the same mailbox hashes to the same identity.
    respelt = {**lead, "email": str(lead["email"]).upper()}
    assert (await check(gw, "p-mail", {"campaign": "acme-peak", **hashed(respelt)}))[
        "status"
    ] == "duplicate"


async def test_a_checked_person_is_then_a_duplicate_only_once_posted(
    make_gateway: GatewayFactory,
) -> None:
    gw = await make_gateway()
    lead = person(campaign="nova-ten")
    for _ in range(2):  # checks leave no mark
        assert (await check(gw, "p-mail", {"campaign": "nova-ten", **hashed(lead)}))[
            "status"
        ] == "open"
    assert (await gw.decide("p-mail", lead))["decision"] == "accepted"
    assert (await gw.decide("p-mail", lead))["decision"] == "duplicate"
    assert metric(gw, "leadgate_probes_total", partner="p-mail", kind="check", status="open") == 2


async def test_caps_and_closed_campaigns_are_told(make_gateway: GatewayFactory) -> None:
    gw = await make_gateway()
    for _ in range(2):
        assert (await gw.decide("p-mail", person(campaign="nova-daily")))["decision"] == "accepted"
    capped = await check(gw, "p-mail", {"campaign": "nova-daily", **hashed(person())})
    assert (capped["status"], capped["reasons"]) == ("capped", ["cap.campaign.day"])
    closed = await check(gw, "p-mail", {"campaign": "acme-summer", **hashed(person())})
    assert (closed["status"], closed["reasons"]) == ("closed", ["campaign.inactive"])


async def test_a_distributed_campaign_tells_how_many_buyers_would_take_it(
    make_gateway: GatewayFactory,
) -> None:
    gw = await make_gateway(sold_network())
    answer = await check(gw, "p-mail", {"campaign": "sold-shared", **hashed(person())})
    assert (answer["status"], answer["buyers"]) == ("open", 2)
    lead = person(campaign="sold-excl")
    await gw.decide("p-mail", lead)
    again = await check(gw, "p-mail", {"campaign": "sold-excl", **hashed(lead)})
    assert again["status"] == "duplicate"


async def test_personal_data_is_refused_by_name(make_gateway: GatewayFactory) -> None:
    gw = await make_gateway()
    lead = person()
    reply = await gw.post(
        "p-mail",
        {"campaign": "acme-always-on", "email": lead["email"], "phone_sha256": "0" * 64},
        path=CHECK,
    )
    problem = assert_problem(reply, 422, "invalid-lead")
    assert_matches_spec("POST", CHECK, reply)
    assert error_fields(problem) == ["email"]
    assert str(lead["email"]) not in reply.body.decode()
    bad = await gw.post("p-mail", {"campaign": "acme-always-on", "email_sha256": "x"}, path=CHECK)
    assert error_fields(assert_problem(bad, 422, "invalid-lead")) == ["email_sha256"]
    assert (
        metric(gw, "leadgate_probes_total", partner="p-mail", kind="check", status="invalid") == 2
    )
    # A campaign the partner may not post to is refused as for a post.
    forbidden = await gw.post("p-comp", {"campaign": "acme-peak", **hashed(lead)}, path=CHECK)
    assert_problem(forbidden, 403, "forbidden")


async def test_a_key_without_the_sha256_scheme_cannot_match(
    make_gateway: GatewayFactory,
) -> None:
    raw = FingerprintKey("r1", b"leadgate-tests-raw-fingerprint-key", "raw")
    gw = await make_gateway(fingerprint_keys=(raw,))
    reply = await gw.post("p-mail", {"campaign": "acme-always-on", **hashed(person())}, path=CHECK)
    assert_problem(reply, 409, "fingerprint-key-not-hashed")
    assert_matches_spec("POST", CHECK, reply)


async def test_checks_have_their_own_rate_limit(make_gateway: GatewayFactory) -> None:
    config = network()
    config["server"] = {"default_check_rate_limit": {"per_s": 0.001, "burst": 2}}
    gw = await make_gateway(config)
    body = {"campaign": "acme-always-on", **hashed(person())}
    for _ in range(2):
        assert (await gw.post("p-mail", body, path=CHECK)).status == 200
    limited = await gw.post("p-mail", body, path=CHECK)
    assert_problem(limited, 429, "rate-limited")
    assert_matches_spec("POST", CHECK, limited)
    assert int(limited.headers["Retry-After"]) >= 1
    # Leads are counted apart: the partner still posts.
    assert (await gw.decide("p-mail", person(campaign="acme-always-on")))["decision"] == "accepted"
