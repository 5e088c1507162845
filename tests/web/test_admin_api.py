"""The admin API over HTTP, on both stores: erasure (every trace of a person gone, what others
left untouched), suppression entries, caps status, config reload, and what it refuses."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis.asyncio
import yaml

from gateway.leads.fingerprint import Fingerprinter
from gateway.storage import keys
from gateway.storage.memory import MemoryStore
from web.conftest import (
    ADMIN_TOKEN,
    FINGERPRINT_KEY,
    NETWORK_KEYS,
    Gateway,
    GatewayFactory,
    assert_problem,
    network,
    person,
)
from web.test_openapi import assert_matches_spec

FINGERPRINTS = Fingerprinter([FINGERPRINT_KEY])


def erasure_network() -> dict[str, Any]:
    """``network()`` where a person leaves a mark in every kind of place: campaign, channel,
    advertiser and network dedup, contact pressure, and an opt-out list."""
    data = network()
    for campaign in data["campaigns"]:
        if campaign["id"] == "acme-always-on":
            campaign["dedup"] += [
                {"scope": "channel", "window": "30d"},
                {"scope": "network", "window": "30d"},
            ]
        if campaign["id"] == "nova-ten":
            campaign["dedup"].append({"scope": "channel", "window": "30d"})
    data["contact_pressure"] = {"limit": 5, "per": "advertiser", "window": "30d"}
    data["suppression_lists"] = [{"id": "optout", "name": "Opt-outs", "network": True}]
    return data


async def everything_stored(gateway: Gateway) -> list[str]:
    """Every key name and every value the store (and its delivery queue) holds, as text."""
    store = gateway.store
    found: list[str] = []
    if isinstance(store, MemoryStore):
        found += store.keys()
        found += [repr(entry.value) for entry in store._data.values()]
        for entries in store.streams.values():
            found += [e.lead_id + e.record.decode() for e in entries]
        assert gateway.queue is not None
        found.append(repr(vars(gateway.queue)))
        return found
    client = redis.asyncio.Redis.from_url(str(gateway.view.redis_url), decode_responses=True)
    try:
        async for key in client.scan_iter(count=1000):
            found.append(key)
            kind = await client.type(key)
            if kind == "string":
                found.append(str(await client.get(key)))
            elif kind == "hash":
                found.append(repr(await client.hgetall(key)))
            elif kind == "zset":
                found.append(repr(await client.zrange(key, 0, -1)))
            elif kind == "set":
                found.append(repr(await client.smembers(key)))
            elif kind == "stream":
                found.append(repr(await client.xrange(key)))
                for group in await client.xinfo_groups(key):
                    pending = await client.xpending_range(key, group["name"], "-", "+", 10_000)
                    found.append(repr(pending))
    finally:
        await client.aclose()
    return found


def traces(stored: list[str], lead: dict[str, object]) -> list[str]:
    """The pieces of ``stored`` holding the person's email, phone or fingerprints."""
    email, phone = str(lead["email"]), str(lead["phone"]).replace(" ", "")
    e164 = "+33" + phone[3:] if phone.startswith("+33") else phone
    fingerprints = [
        *FINGERPRINTS.lookups("email", email.lower()),
        *FINGERPRINTS.lookups("phone", e164),
    ]
    # A dedup mark is a hash field derived from the fingerprint.
    marks = [keys.seen_mark(fp).field for fp in fingerprints]
    needles = [email, e164, *fingerprints, *marks]
    return [text for text in stored if any(n in text for n in needles)]


async def test_erasure_leaves_no_trace_and_touches_no_one_else(
    make_gateway: GatewayFactory,
) -> None:
    gateway = await make_gateway(erasure_network(), admin=True)
    alice, bob = person(), person()
    # Alice across two advertisers, three campaigns and two channels; Bob beside her.
    for partner, campaign in (
        ("p-mail", "acme-always-on"),
        ("p-coreg", "nova-ten"),
        ("p-cash", "nova-daily"),
    ):
        answer = await gateway.decide(partner, {**alice, "campaign": campaign})
        assert answer["decision"] == "accepted", answer
        answer = await gateway.decide(partner, {**bob, "campaign": campaign})
        assert answer["decision"] == "accepted", answer
    assert traces(await everything_stored(gateway), alice)

    # Answered while the request waits (a generous deadline: a hung erasure fails the test).
    async with asyncio.timeout(10.0):
        reply = await gateway.admin(
            "DELETE",
            "/identities",
            # Another spelling of both: the erasure normalizes like the intake does.
            {"email": str(alice["email"]).upper(), "phone": "0" + str(alice["phone"])[4:]},
        )
    assert reply.status == 200, reply.body
    report = reply.json()
    assert report["erased"]["undelivered_leads"] == 3
    assert report["erased"]["keys"] >= 6  # dedup marks in each scope, network, pressure
    assert report["still_on_suppression_lists"] == []

    stored = await everything_stored(gateway)
    assert traces(stored, alice) == []
    assert traces(stored, bob)  # Bob is remembered still
    for advertiser, leads in (("acme", 1), ("nova", 2)):
        deliveries = await gateway.view.deliveries(advertiser)  # type: ignore[arg-type]
        assert len(deliveries) == leads
        assert all(str(bob["email"]) in d.record.decode() for d in deliveries)
    # Alice is new again everywhere; Bob is still a duplicate.
    answer = await gateway.decide("p-mail", {**alice, "campaign": "acme-always-on"})
    assert answer["decision"] == "accepted"
    answer = await gateway.decide("p-mail", {**bob, "campaign": "acme-always-on"})
    assert answer["decision"] == "duplicate"
    # Erasing again finds nothing more of her queue than the lead just accepted.
    again = (await gateway.admin("DELETE", "/identities", {"email": alice["email"]})).json()
    assert again["erased"]["undelivered_leads"] == 1


async def test_an_erased_person_on_an_opt_out_list_stays_suppressed(
    make_gateway: GatewayFactory,
) -> None:
    gateway = await make_gateway(erasure_network(), admin=True)
    carol = person()
    assert (await gateway.decide("p-mail", {**carol, "campaign": "nova-ten"}))["decision"] == (
        "accepted"
    )
    reply = await gateway.admin(
        "POST", "/suppression-lists/optout/entries", {"email": carol["email"]}
    )
    assert reply.status == 200, reply.body
    assert reply.json() == {"list": "optout", "people": 1, "added": 1, "size": 1}
    report = (await gateway.admin("DELETE", "/identities", {"email": carol["email"]})).json()
    assert report["still_on_suppression_lists"] == ["optout"]
    answer = await gateway.decide("p-coreg", {**carol, "campaign": "acme-always-on"})
    assert (answer["decision"], answer["reasons"]) == ("rejected", ["suppressed"])


async def test_suppression_entries_all_or_nothing(make_gateway: GatewayFactory) -> None:
    gateway = await make_gateway(erasure_network(), admin=True)
    dave, erin = person(), person()
    bad = await gateway.admin(
        "POST",
        "/suppression-lists/optout/entries",
        {"entries": [{"email": dave["email"]}, {"phone": "12"}, {"email": "not-an-address"}, 7]},
    )
    problem = assert_problem(bad, 422, "invalid-request")
    assert [e["field"] for e in problem["errors"]] == [
        "entries/1/phone",
        "entries/2/email",
        "entries/3",
    ]
    assert "not-an-address" not in bad.body.decode()
    lists = (await gateway.admin("GET", "/suppression-lists")).json()["suppression_lists"]
    assert lists == [{"id": "optout", "name": "Opt-outs", "network": True, "size": 0}]

    entries = [{"email": dave["email"]}, {"phone": erin["phone"], "email": erin["email"]}]
    added = await gateway.admin("POST", "/suppression-lists/optout/entries", {"entries": entries})
    assert added.json() == {"list": "optout", "people": 2, "added": 3, "size": 3}
    answer = await gateway.decide("p-mail", {**dave, "campaign": "nova-ten"})
    assert answer["decision"] == "rejected"
    removed = await gateway.admin(
        "DELETE", "/suppression-lists/optout/entries", {"email": dave["email"]}
    )
    assert removed.json() == {"list": "optout", "people": 1, "removed": 1, "size": 2}
    answer = await gateway.decide("p-mail", {**dave, "campaign": "nova-ten"})
    assert answer["decision"] == "accepted"
    assert_problem(
        await gateway.admin("POST", "/suppression-lists/nope/entries", {"email": dave["email"]}),
        404,
        "not-found",
    )


async def test_caps_status_used_limit_and_reset(make_gateway: GatewayFactory) -> None:
    gateway = await make_gateway(admin=True)
    await gateway.decide("p-mail", person(campaign="nova-daily"))
    reply = await gateway.admin("GET", "/caps?campaign=nova-daily")
    assert reply.status == 200, reply.body
    (cap,) = reply.json()["caps"]
    assert cap == {
        "campaign": "nova-daily",
        "advertiser": "nova",
        "reason": "cap.campaign.day",
        "subject": "campaign",
        "of": "nova-daily",
        "window": "day",
        "limit": 2,
        "used": 1,
        "remaining": 1,
        # 2026-11-20 10:00 Paris is 04:00 in New York: the day ends at midnight there.
        "resets_at": "2026-11-21T05:00:00+00:00",
    }
    everything = (await gateway.admin("GET", "/caps")).json()["caps"]
    assert {c["campaign"] for c in everything} == {"nova-daily", "nova-ten"}
    assert_problem(await gateway.admin("GET", "/caps?campaign=ghost"), 404, "not-found")


async def test_config_reload_through_the_api(make_gateway: GatewayFactory, tmp_path: Path) -> None:
    path = tmp_path / "leadgate.yaml"
    data = network()
    path.write_text(yaml.safe_dump(data))
    gateway = await make_gateway(path, admin=True)
    unchanged = (await gateway.admin("POST", "/config/reload")).json()
    assert unchanged["reloaded"] is False
    data["partners"] = [p for p in data["partners"] if p["id"] != "p-comp"]
    path.write_text(yaml.safe_dump(data))
    changed = (await gateway.admin("POST", "/config/reload")).json()
    assert changed["reloaded"] is True
    assert changed["checksum"] != changed["previous_checksum"]
    assert (await gateway.post("p-comp", person(campaign="nova-ten"))).status == 401
    path.write_text("partners: [oops")
    refused = assert_problem(await gateway.admin("POST", "/config/reload"), 422, "invalid-request")
    assert refused["errors"]
    assert (await gateway.post("p-mail", person(campaign="nova-ten"))).status == 200


@pytest.mark.parametrize(
    "authorization",
    [None, f"Bearer {NETWORK_KEYS['p-mail']}", "Bearer wrong", f"Basic {ADMIN_TOKEN}"],
)
async def test_only_the_admin_token_opens_it(
    make_embedded_gateway: GatewayFactory, authorization: str | None
) -> None:
    gateway = await make_embedded_gateway(admin=True)
    headers = {} if authorization is None else {"Authorization": authorization}
    reply = await gateway.request(
        "DELETE", "/v1/admin/identities", headers=headers, data=b'{"email": "a@example.com"}'
    )
    assert_problem(reply, 401, "unauthorized")


async def test_without_an_admin_there_are_no_admin_routes(
    make_embedded_gateway: GatewayFactory,
) -> None:
    gateway = await make_embedded_gateway()
    reply = await gateway.request(
        "DELETE", "/v1/admin/identities", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
    )
    assert reply.status in (404, 405)


@pytest.mark.parametrize(
    ("body", "status", "slug", "field"),
    [
        (b"{", 400, "bad-request", None),
        (b"[]", 400, "bad-request", None),
        (b"{}", 422, "invalid-request", "email"),
        (b'{"email": "jean@"}', 422, "invalid-request", "email"),
        (b'{"phone": "06"}', 422, "invalid-request", "phone"),
        (b'{"email": 7}', 422, "invalid-request", "email"),
        (b'{"email": "a@example.com", "name": "Jean"}', 422, "invalid-request", "name"),
        (
            orjson.dumps({"email": "a@example.com", "pad": "x" * (5 << 20)}),
            413,
            "payload-too-large",
            None,
        ),
    ],
)
async def test_bad_erasure_requests_get_clear_errors(
    make_embedded_gateway: GatewayFactory,
    body: bytes,
    status: int,
    slug: str,
    field: str | None,
) -> None:
    gateway = await make_embedded_gateway(admin=True)
    reply = await gateway.request(
        "DELETE",
        "/v1/admin/identities",
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        data=io.BytesIO(body),
    )
    problem = assert_problem(reply, status, slug)
    if field is not None:
        assert problem["errors"][0]["field"] == field
    assert "jean@" not in reply.body.decode()


async def test_admin_answers_are_what_the_openapi_document_declares(
    make_gateway: GatewayFactory, tmp_path: Path
) -> None:
    path = tmp_path / "leadgate.yaml"
    path.write_text(yaml.safe_dump(erasure_network()))
    gateway = await make_gateway(path, admin=True)
    frank = person()
    await gateway.decide("p-mail", {**frank, "campaign": "nova-daily"})
    entries = "/v1/admin/suppression-lists/{list}/entries"
    for method, route, path_, body in (
        ("DELETE", "/v1/admin/identities", "/identities", {"email": frank["email"]}),
        ("DELETE", "/v1/admin/identities", "/identities", {"email": "nope"}),
        ("DELETE", "/v1/admin/identities", "/identities", []),
        ("GET", "/v1/admin/suppression-lists", "/suppression-lists", None),
        ("POST", entries, "/suppression-lists/optout/entries", {"phone": frank["phone"]}),
        ("DELETE", entries, "/suppression-lists/optout/entries", {"phone": frank["phone"]}),
        ("POST", entries, "/suppression-lists/ghost/entries", {"phone": frank["phone"]}),
        ("GET", "/v1/admin/caps", "/caps", None),
        ("GET", "/v1/admin/caps", "/caps?campaign=ghost", None),
        ("POST", "/v1/admin/config/reload", "/config/reload", None),
        ("GET", "/v1/admin/reports/partners", "/reports/partners?since=7d", None),
        ("GET", "/v1/admin/reports/partners", "/reports/partners?since=soon", None),
        ("GET", "/v1/admin/deliveries", "/deliveries", None),
    ):
        reply = await gateway.admin(method, path_, body)
        assert_matches_spec(method, route, reply)
    unauthorized = await gateway.request("GET", "/v1/admin/caps")
    assert_matches_spec("GET", "/v1/admin/caps", unauthorized)
