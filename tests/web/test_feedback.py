"""The advertisers' feedback API, over both stores: credentials, idempotency, the return
window, refusals that reveal nothing, bad input, and the partner-quality metrics."""

from __future__ import annotations

import io
from typing import Any
from urllib.parse import urlencode

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.quality.metrics import return_reason

from .conftest import (
    DAY_S,
    Gateway,
    GatewayFactory,
    assert_problem,
    error_fields,
    key_hash,
    network,
    person,
)
from .test_openapi import assert_matches_spec

ADVERTISER_KEYS = {"acme": "test-key-acme-feedback", "nova": "test-key-nova-feedback"}


def feedback_network() -> dict[str, Any]:
    config = network()
    for advertiser in config["advertisers"]:
        advertiser["api_keys"] = [key_hash(ADVERTISER_KEYS[advertiser["id"]])]
    for campaign in config["campaigns"]:
        if campaign["id"] == "acme-always-on":
            campaign["return_window"] = "7d"
            campaign["feedback_window"] = "30d"
    return config


def adv(advertiser: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {ADVERTISER_KEYS[advertiser]}"}


async def send(gw: Gateway, advertiser: str | None, body: object, **headers: str) -> Any:
    sent = {"Content-Type": "application/json", **(adv(advertiser) if advertiser else {})}
    return await gw.request(
        "POST", "/v1/feedback", data=orjson.dumps(body), headers={**sent, **headers}
    )


async def accepted(gw: Gateway, campaign: str = "acme-always-on", partner: str = "p-mail") -> str:
    answer = await gw.decide(partner, person(campaign=campaign))
    assert answer["decision"] == "accepted", answer
    lead_id: str = answer["lead_id"]
    return lead_id


def value_of(gw: Gateway, name: str, **labels: str) -> float:
    """The value of one sample of the gateway's metrics page."""
    text = gw.observer.exposition().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    raise AssertionError(f"no sample {name}{labels}")


async def test_a_conversion_is_recorded_once_and_counted_for_its_partner(
    make_gateway: GatewayFactory,
) -> None:
    gw = await make_gateway(feedback_network())
    lead_id = await accepted(gw, partner="p-coreg")
    first = await send(gw, "acme", {"lead_id": lead_id, "status": "converted", "value": 49.5})
    assert (first.status, first.json()) == (
        200,
        {"lead_id": lead_id, "status": "converted", "result": "recorded"},
    )
    again = await send(gw, "acme", {"lead_id": lead_id, "status": "converted", "value": 49.5})
    assert again.json()["result"] == "already_recorded"
    labels = {"partner": "p-coreg", "campaign": "acme-always-on"}
    assert value_of(gw, "leadgate_feedback_total", status="converted", **labels) == 1
    assert value_of(gw, "leadgate_conversion_value_total", **labels) == 49.5
    # Other pairs exist at 0 (dashboards have series before any feedback).
    assert value_of(gw, "leadgate_feedback_total", status="returned", **labels) == 0


async def test_a_return_maps_its_reason_to_the_fixed_table(make_gateway: GatewayFactory) -> None:
    gw = await make_gateway(feedback_network())
    leads = [await accepted(gw) for _ in range(3)]
    reasons = ["Invalid contact", "wrong number", "the guy said: my email is x@y.z"]
    body = {
        "feedback": [
            {"lead_id": lead, "status": "returned", "reason": reason}
            for lead, reason in zip(leads, reasons, strict=True)
        ]
    }
    reply = await send(gw, "acme", body)
    assert reply.status == 200
    assert reply.json()["counts"] == {"recorded": 3, "already_recorded": 0, "refused": 0}
    labels = {"partner": "p-mail", "campaign": "acme-always-on"}
    assert value_of(gw, "leadgate_returns_total", reason="invalid_contact", **labels) == 2
    assert value_of(gw, "leadgate_returns_total", reason="other", **labels) == 1
    exposition = gw.observer.exposition().decode()
    assert "x@y.z" not in exposition
    assert "the guy" not in exposition


@pytest.mark.parametrize(
    ("text", "code"),
    [
        (None, "other"),
        ("", "other"),
        ("FAKE", "fake"),
        ("out-of-area", "out_of_target"),
        ("Duplicate ", "duplicate"),
        ("anything else", "other"),
    ],
)
def test_return_reasons(text: str | None, code: str) -> None:
    assert return_reason(text) == code


async def test_unknown_and_other_advertisers_leads_get_the_same_answer(
    make_gateway: GatewayFactory,
) -> None:
    gw = await make_gateway(feedback_network())
    acme_lead = await accepted(gw)
    nova_lead = await accepted(gw, campaign="nova-ten")
    # acme asks about nova's lead (which exists) and about an id nobody ever had.
    theirs = await send(gw, "acme", {"lead_id": nova_lead, "status": "returned"})
    unknown = await send(gw, "acme", {"lead_id": "0190d7c4-0000-7000-8000-000000000000",
                                      "status": "returned"})  # fmt: skip
    a = assert_problem(theirs, 404, "unknown-lead", instance="/v1/feedback")
    b = assert_problem(unknown, 404, "unknown-lead", instance="/v1/feedback")
    assert a == b
    # Nothing was recorded for nova's lead: nova can still return it.
    ok = await send(gw, "nova", {"lead_id": nova_lead, "status": "returned"})
    assert ok.json()["result"] == "recorded"
    assert (await send(gw, "acme", {"lead_id": acme_lead, "status": "rejected"})).status == 200


async def test_returns_after_the_window_are_refused_conversions_are_not(
    make_gateway: GatewayFactory,
) -> None:
    gw = await make_gateway(feedback_network())
    lead_id = await accepted(gw)
    gw.clock.advance(8 * DAY_S)  # the return window is 7d, the feedback window 30d
    late = await send(gw, "acme", {"lead_id": lead_id, "status": "returned", "reason": "fake"})
    problem = assert_problem(late, 409, "return-window-over")
    assert "acme-always-on" in problem["detail"]
    converted = await send(gw, "acme", {"lead_id": lead_id, "status": "converted"})
    assert converted.json()["result"] == "recorded"
    labels = {"partner": "p-mail", "campaign": "acme-always-on"}
    assert value_of(gw, "leadgate_feedback_total", status="returned", **labels) == 0
    gw.clock.advance(23 * DAY_S)  # past the feedback window: the index is gone
    gone = await send(gw, "acme", {"lead_id": lead_id, "status": "rejected"})
    assert_problem(gone, 404, "unknown-lead")


async def test_the_postback_records_a_conversion(make_gateway: GatewayFactory) -> None:
    gw = await make_gateway(feedback_network())
    lead_id = await accepted(gw)
    query = urlencode({"lead_id": lead_id, "status": "converted", "value": "12.5",
                       "api_key": ADVERTISER_KEYS["acme"]})  # fmt: skip
    reply = await gw.request("GET", f"/v1/feedback?{query}")
    assert (reply.status, reply.json()["result"]) == (200, "recorded")
    bad = await gw.request("GET", f"/v1/feedback?lead_id={lead_id}&status=won",
                           headers=adv("acme"))  # fmt: skip
    assert error_fields(assert_problem(bad, 422, "invalid-lead")) == ["status"]


async def test_partner_keys_never_open_feedback_and_advertiser_keys_never_post_leads(
    make_gateway: GatewayFactory,
) -> None:
    gw = await make_gateway(feedback_network())
    lead_id = await accepted(gw)
    as_partner = await gw.request(
        "POST",
        "/v1/feedback",
        data=orjson.dumps({"lead_id": lead_id, "status": "returned"}),
        headers={"Content-Type": "application/json", **gw.auth("p-mail")},
    )
    assert_problem(as_partner, 401, "unauthorized")
    assert_problem(await send(gw, None, {"lead_id": lead_id, "status": "returned"}), 401,
                   "unauthorized")  # fmt: skip
    lead = await gw.post(None, person(campaign="acme-always-on"), headers=adv("acme"))
    assert_problem(lead, 401, "unauthorized")


async def test_bad_items_are_refused_one_by_one_and_the_good_ones_kept(
    make_gateway: GatewayFactory,
) -> None:
    gw = await make_gateway(feedback_network())
    lead_id = await accepted(gw)
    body = {
        "feedback": [
            {"lead_id": lead_id, "status": "returned", "reason": "fake"},
            {"lead_id": "../../etc", "status": "converted"},
            {"lead_id": lead_id, "status": "maybe", "extra": 1},
            "not an object",
            {"lead_id": lead_id, "status": "converted", "value": -3},
        ]
    }
    reply = await send(gw, "acme", body)
    assert reply.status == 200
    results = reply.json()["results"]
    assert results[0]["result"] == "recorded"
    assert error_fields(results[1]["error"]) == ["feedback/1/lead_id"]
    assert sorted(error_fields(results[2]["error"])) == ["feedback/2/extra", "feedback/2/status"]
    assert error_fields(results[3]["error"]) == ["feedback/3"]
    assert error_fields(results[4]["error"]) == ["feedback/4/value"]
    assert reply.json()["counts"] == {"recorded": 1, "already_recorded": 0, "refused": 4}


@pytest.mark.parametrize(
    ("body", "content_type", "status", "slug"),
    [
        (b"{not json", "application/json", 400, "bad-request"),
        (b"[1]", "application/json", 422, "invalid-lead"),
        (b'{"feedback": []}', "application/json", 422, "invalid-lead"),
        (b'{"feedback": [], "x": 1}', "application/json", 422, "invalid-lead"),
        (b"lead_id=1&status=converted", "application/x-www-form-urlencoded", 415,
         "unsupported-media-type"),
        (orjson.dumps({"feedback": [{"lead_id": "a", "status": "converted"}] * 1001}),
         "application/json", 422, "invalid-lead"),
        (orjson.dumps({"feedback": [{"lead_id": "a" * 60, "status": "converted",
                                     "reason": "x" * 150}] * 20000}),
         "application/json", 413, "payload-too-large"),
    ],
)  # fmt: skip
async def test_malformed_and_huge_bodies(
    make_embedded_gateway: GatewayFactory, body: bytes, content_type: str, status: int, slug: str
) -> None:
    gw = await make_embedded_gateway(feedback_network())
    reply = await gw.request(
        "POST",
        "/v1/feedback",
        data=io.BytesIO(body),
        headers={"Content-Type": content_type, **adv("acme")},
    )
    assert_problem(reply, status, slug)


async def test_the_index_holds_no_personal_data_and_test_leads_are_not_indexed(
    make_gateway: GatewayFactory,
) -> None:
    gw = await make_gateway(feedback_network())
    lead = person(campaign="acme-always-on")
    await gw.decide("p-mail", lead)
    test_answer = await gw.decide("p-mail", person(campaign="acme-always-on", test=True))
    names = await gw.view.key_names()
    assert not any(str(lead["email"]).split("@")[0] in name for name in names)
    assert not any(test_answer["lead_id"] in name for name in names)
    reply = await send(gw, "acme", {"lead_id": test_answer["lead_id"], "status": "converted"})
    assert_problem(reply, 404, "unknown-lead")


async def test_feedback_answers_match_the_openapi_document(
    make_embedded_gateway: GatewayFactory,
) -> None:
    gw = await make_embedded_gateway(feedback_network())
    lead_id = await accepted(gw)
    single = await send(gw, "acme", {"lead_id": lead_id, "status": "converted"})
    listed = await send(gw, "acme", {"feedback": [{"lead_id": lead_id, "status": "x"}]})
    unknown = await send(gw, "acme", {"lead_id": "nope", "status": "rejected"})
    unauthorized = await send(gw, None, {"lead_id": lead_id, "status": "rejected"})
    gw.clock.advance(8 * DAY_S)
    late = await send(gw, "acme", {"lead_id": lead_id, "status": "returned"})
    pixel = await gw.request("GET", f"/v1/feedback?lead_id={lead_id}&status=rejected",
                             headers=adv("acme"))  # fmt: skip
    for method, reply in [("POST", single), ("POST", listed), ("POST", unknown),
                          ("POST", unauthorized), ("POST", late), ("GET", pixel)]:  # fmt: skip
        assert_matches_spec(method, "/v1/feedback", reply)
