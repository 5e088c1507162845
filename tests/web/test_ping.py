"""Ping/post through HTTP on both stores: an accepted ping reserves cap room for its post,
exactly under concurrency; expired reservations return their room; the post naming the ping
commits it, or says why it was decided afresh (expired, used, unknown); a post that is not
the pinged lead is a 422 naming what differs, never quoting it; pings have their own limits
and metrics; hashed and full identities meet in one dedup memory."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from .conftest import (
    Gateway,
    GatewayFactory,
    assert_problem,
    error_fields,
    network,
    person,
)
from .test_check import hashed
from .test_distribution_http import metric
from .test_openapi import assert_matches_spec

PING = "/v1/ping"
TTL_S = 60


PARIS_PACK = """rules:
  - id: paris
    message: Paris only
    require: {kind: regex, field: postal_code, pattern: "75[0-9]{3}"}
  - id: pro
    message: No free mail
    reject_if: {kind: email_free_mail}
"""


def ping_network(
    *, limit: int = 10, max_pings_per_post: int | None = None, rules_dir: Path | None = None
) -> dict[str, Any]:
    """``network()`` and ``zeta-ping``: advertiser zeta, pings held 60 s, at most ``limit``
    leads a day, nobody twice in 30 days; ``zeta-plain``: zeta's campaign without pings,
    sharing an advertiser-wide day cap of ``limit``; with ``rules_dir``, ``zeta-paris``:
    pings, and the ``paris`` pack (a Paris postal code, no free mail)."""
    config = network()
    config["advertisers"].append({"id": "zeta"})
    config["campaigns"] += [
        {
            "id": "zeta-ping",
            "advertiser": "zeta",
            "kind": "always_on",
            "timezone": "Europe/Paris",
            "ping_ttl_s": TTL_S,
            "payout": 7.5,
            "dedup": [{"scope": "advertiser", "window": "30d"}],
            "caps": [
                {"subject": "campaign", "window": "day", "limit": limit},
                {"subject": "advertiser", "window": "day", "limit": limit},
            ],
        },
        {
            "id": "zeta-plain",
            "advertiser": "zeta",
            "kind": "always_on",
            "timezone": "Europe/Paris",
            "dedup": [{"scope": "advertiser", "window": "30d"}],
            "caps": [{"subject": "advertiser", "window": "day", "limit": limit}],
        },
    ]
    added = ["zeta-ping", "zeta-plain"]
    if rules_dir is not None:
        (rules_dir / "paris.yaml").write_text(PARIS_PACK)
        config["rules_dir"] = str(rules_dir)
        config["campaigns"].append(
            {
                "id": "zeta-paris",
                "advertiser": "zeta",
                "kind": "always_on",
                "timezone": "Europe/Paris",
                "ping_ttl_s": TTL_S,
                "rules": ["paris"],
            }
        )
        added.append("zeta-paris")
    for partner in config["partners"]:
        partner["campaigns"] = [*partner["campaigns"], *added]
    if max_pings_per_post is not None:
        config["server"] = {"max_pings_per_post": max_pings_per_post}
    return config


def ping_of(lead: dict[str, object], **fields: object) -> dict[str, object]:
    """The ping a publisher sends for ``lead``: its campaign and place, hashed identifiers."""
    body = {"campaign": lead["campaign"], **hashed(lead)}
    for name in ("postal_code", "country"):
        if name in lead:
            body[name] = lead[name]
    return {**body, **fields}


async def ping(gw: Gateway, partner: str, body: dict[str, object]) -> dict[str, Any]:
    reply = await gw.post(partner, body, path=PING)
    assert reply.status == 200, reply.body
    assert_matches_spec("POST", PING, reply)
    answer: dict[str, Any] = reply.json()
    return answer


async def test_a_ping_holds_room_its_post_commits(make_gateway: GatewayFactory) -> None:
    gw = await make_gateway(ping_network())
    lead = person(campaign="zeta-ping", postal_code="75011", country="FR")
    pinged = await ping(gw, "p-mail", ping_of(lead, ref="r-7"))
    assert pinged["status"] == "open"
    assert (pinged["expires_in_s"], pinged["payout"], pinged["reasons"]) == (TTL_S, 7.5, [])
    assert pinged["ping_id"].startswith("pg_")
    # The ping left nothing of the person: a second ping of them is open too.
    assert (await ping(gw, "p-coreg", ping_of(lead)))["status"] == "open"

    reply = await gw.post("p-mail", {**lead, "ping_id": pinged["ping_id"]})
    assert_matches_spec("POST", "/v1/leads", reply)
    answer = reply.json()
    assert (answer["decision"], answer["ping_status"]) == ("accepted", "committed")
    # The post's marks are found by hash and in full, like any accepted lead's.
    again = await ping(gw, "p-cash", ping_of(lead))
    assert (again["status"], again["reasons"]) == ("duplicate", ["duplicate.advertiser"])
    assert "ping_id" not in again
    assert (await gw.decide("p-comp", {**lead, "campaign": "zeta-plain"}))[
        "decision"
    ] == "duplicate"
    assert metric(gw, "leadgate_ping_reservations_total", partner="p-mail", event="made") == 1
    assert metric(gw, "leadgate_ping_reservations_total", partner="p-mail", event="committed") == 1
    assert metric(gw, "leadgate_probes_total", partner="p-mail", kind="ping", status="open") == 1


async def test_50_concurrent_pings_against_a_cap_of_10_hold_exactly_10(
    make_gateway: GatewayFactory,
) -> None:
    gw = await make_gateway(ping_network(limit=10))
    leads = [person(campaign="zeta-ping") for _ in range(50)]
    answers = await asyncio.gather(*(ping(gw, "p-mail", ping_of(lead)) for lead in leads))
    held = [(lead, a["ping_id"]) for lead, a in zip(leads, answers, strict=True) if "ping_id" in a]
    assert len(held) == 10
    assert sorted({a["status"] for a in answers if "ping_id" not in a}) == ["capped"]
    # The room is held: a plain post, here or in another campaign of the advertiser, is
    # capped; each pinged lead is accepted on its reservation.
    assert (await gw.decide("p-coreg", person(campaign="zeta-ping")))["decision"] == "capped"
    assert (await gw.decide("p-coreg", person(campaign="zeta-plain")))["decision"] == "capped"
    posts = await asyncio.gather(
        *(gw.decide("p-mail", {**lead, "ping_id": ping_id}) for lead, ping_id in held)
    )
    assert [(p["decision"], p["ping_status"]) for p in posts] == [("accepted", "committed")] * 10
    assert (await gw.decide("p-coreg", person(campaign="zeta-ping")))["decision"] == "capped"


async def test_expired_reservations_return_their_room_and_a_late_post_is_decided_afresh(
    make_gateway: GatewayFactory,
) -> None:
    gw = await make_gateway(ping_network(limit=2))
    leads = [person(campaign="zeta-ping") for _ in range(2)]
    ids = [(await ping(gw, "p-mail", ping_of(lead)))["ping_id"] for lead in leads]
    assert (await ping(gw, "p-mail", ping_of(person(campaign="zeta-ping"))))["status"] == "capped"
    gw.clock.advance(TTL_S + 1)
    # The room is back: a plain post takes one place...
    assert (await gw.decide("p-coreg", person(campaign="zeta-ping")))["decision"] == "accepted"
    # ...the late post is decided afresh, on what is left, and says so.
    late = await gw.decide("p-mail", {**leads[0], "ping_id": ids[0]})
    assert (late["decision"], late["ping_status"]) == ("accepted", "expired")
    later = await gw.decide("p-mail", {**leads[1], "ping_id": ids[1]})
    assert (later["decision"], later["ping_status"]) == ("capped", "expired")


async def test_a_post_that_is_not_the_pinged_lead_is_refused_naming_what_differs(
    make_gateway: GatewayFactory,
) -> None:
    gw = await make_gateway(ping_network(limit=1))
    lead = person(campaign="zeta-ping", postal_code="75011", country="FR")
    ping_id = (await ping(gw, "p-mail", ping_of(lead)))["ping_id"]
    other = person()
    changed = {**lead, "phone": other["phone"], "postal_code": "69001", "ping_id": ping_id}
    reply = await gw.post("p-mail", changed)
    problem = assert_problem(reply, 422, "ping-mismatch")
    assert_matches_spec("POST", "/v1/leads", reply)
    assert sorted(error_fields(problem)) == ["phone", "postal_code"]
    body = reply.body.decode()
    assert "69001" not in body
    assert "75011" not in body
    assert str(other["phone"]).replace(" ", "") not in body.replace(" ", "")
    # The reservation stays for the right post (the cap of 1 is still held for it).
    assert (await gw.decide("p-coreg", person(campaign="zeta-ping")))["decision"] == "capped"
    right = await gw.decide("p-mail", {**lead, "ping_id": ping_id})
    assert (right["decision"], right["ping_status"]) == ("accepted", "committed")


async def test_used_unknown_and_foreign_pings_are_decided_afresh(
    make_gateway: GatewayFactory,
) -> None:
    gw = await make_gateway(ping_network())
    lead = person(campaign="zeta-ping")
    ping_id = (await ping(gw, "p-mail", ping_of(lead)))["ping_id"]
    # Another partner naming it: not its ping.
    foreign = await gw.decide("p-coreg", {**person(campaign="zeta-ping"), "ping_id": ping_id})
    assert (foreign["decision"], foreign["ping_status"]) == ("accepted", "unknown")
    first = await gw.decide("p-mail", {**lead, "ping_id": ping_id})
    assert first["ping_status"] == "committed"
    second = await gw.decide("p-mail", {**lead, "ping_id": ping_id})
    assert (second["decision"], second["ping_status"]) == ("duplicate", "used")
    unknown = await gw.decide(
        "p-mail", {**person(campaign="zeta-ping"), "ping_id": "pg_" + "A" * 22}
    )
    assert unknown["ping_status"] == "unknown"
    # A campaign that takes no pings: any ping id is unknown there.
    plain = await gw.decide(
        "p-mail", {**person(campaign="zeta-plain"), "ping_id": "pg_" + "B" * 22}
    )
    assert plain["ping_status"] == "unknown"
    bad = await gw.post("p-mail", {**person(campaign="zeta-ping"), "ping_id": "12"})
    assert error_fields(assert_problem(bad, 422, "invalid-lead")) == ["ping_id"]
    batch = await gw.batch("p-mail", [{**person(campaign="zeta-ping"), "ping_id": ping_id}])
    assert batch.json()["results"][0]["error"]["errors"][0]["field"] == "leads/0/ping_id"


async def test_a_refused_post_gives_the_room_back(make_gateway: GatewayFactory) -> None:
    gw = await make_gateway(ping_network(limit=2))
    lead = person(campaign="zeta-ping")
    ping_id = (await ping(gw, "p-mail", ping_of(lead)))["ping_id"]
    # The person is bought meanwhile through another campaign of the advertiser: the day's
    # advertiser-wide room is one lead and one hold.
    assert (await gw.decide("p-coreg", {**lead, "campaign": "zeta-plain"}))[
        "decision"
    ] == "accepted"
    assert (await gw.decide("p-coreg", person(campaign="zeta-ping")))["decision"] == "capped"
    post = await gw.decide("p-mail", {**lead, "ping_id": ping_id})
    assert (post["decision"], post["ping_status"]) == ("duplicate", "released")
    # The hold is given back: the last place is free again.
    assert (await gw.decide("p-coreg", person(campaign="zeta-ping")))["decision"] == "accepted"
    assert metric(gw, "leadgate_ping_reservations_total", partner="p-mail", event="released") == 1


async def test_replays_keep_the_ping_status(make_gateway: GatewayFactory) -> None:
    gw = await make_gateway(ping_network())
    lead = person(campaign="zeta-ping")
    ping_id = (await ping(gw, "p-mail", ping_of(lead)))["ping_id"]
    key = {"Idempotency-Key": "ping-replay-1"}
    first = await gw.decide("p-mail", {**lead, "ping_id": ping_id}, headers=key)
    reply = await gw.post("p-mail", {**lead, "ping_id": ping_id}, headers=key)
    assert reply.headers.get("Idempotent-Replayed") == "true"
    assert reply.json() == first
    assert first["ping_status"] == "committed"
    assert metric(gw, "leadgate_ping_reservations_total", partner="p-mail", event="committed") == 1


async def test_pings_are_refused_what_they_cannot_take(make_gateway: GatewayFactory) -> None:
    gw = await make_gateway(ping_network())
    lead = person(campaign="zeta-ping")
    keyed = await gw.post("p-mail", ping_of(lead), path=PING, headers={"Idempotency-Key": "k"})
    assert_problem(keyed, 400, "bad-request")
    raw = await gw.post("p-mail", {**ping_of(lead), "email": lead["email"]}, path=PING)
    assert error_fields(assert_problem(raw, 422, "invalid-lead")) == ["email"]
    assert str(lead["email"]) not in raw.body.decode()
    none = await gw.post("p-mail", ping_of(person(campaign="zeta-plain")), path=PING)
    assert error_fields(assert_problem(none, 422, "invalid-lead")) == ["campaign"]
    assert_matches_spec("POST", PING, none)


async def test_rules_judge_a_ping_on_what_it_carries(
    make_gateway: GatewayFactory, tmp_path: Path
) -> None:
    gw = await make_gateway(ping_network(rules_dir=tmp_path))
    outside = await ping(gw, "p-mail", ping_of(person(campaign="zeta-paris"), postal_code="69001"))
    assert (outside["status"], outside["reasons"]) == ("rejected", ["rule.paris"])
    # The free-mail rule needs the email: judged at the post, where it refuses this one.
    lead = person(campaign="zeta-paris", postal_code="75002", email="camille.r@gmail.com")
    inside = await ping(gw, "p-mail", ping_of(lead))
    assert inside["status"] == "open"
    post = await gw.decide("p-mail", {**lead, "ping_id": inside["ping_id"]})
    assert (post["decision"], post["reasons"], post["ping_status"]) == (
        "rejected", ["rule.pro"], "released",
    )  # fmt: skip


async def test_pings_per_post_are_bounded(make_gateway: GatewayFactory) -> None:
    gw = await make_gateway(ping_network(limit=100, max_pings_per_post=3))
    leads = [person(campaign="zeta-ping") for _ in range(4)]
    ids = [(await ping(gw, "p-mail", ping_of(lead)))["ping_id"] for lead in leads[:3]]
    limited = await gw.post("p-mail", ping_of(leads[3]), path=PING)
    assert_problem(limited, 429, "ping-limit")
    assert_matches_spec("POST", PING, limited)
    assert int(limited.headers["Retry-After"]) >= 1
    # Another partner pings on; a post naming a ping brings this one back.
    assert (await ping(gw, "p-coreg", ping_of(leads[3])))["status"] == "open"
    await gw.decide("p-mail", {**leads[0], "ping_id": ids[0]})
    assert (await ping(gw, "p-mail", ping_of(leads[3])))["status"] == "open"
