"""Ping/post through HTTP on a campaign sold to buyers, on both stores: a ping answers how
many buyers would buy and the payout, and holds a place at each of them, exactly under
concurrency; the post naming it is sold on the held place (``committed``); expired holds
return their room; a post refused in the gateway gives its places back (``released``)."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

from .conftest import GatewayFactory, person, sold_network
from .test_distribution_http import metric
from .test_openapi import assert_matches_spec
from .test_ping import ping, ping_of

TTL_S = 60


def pinged_network(*, b_one: int = 1, b_two: int | None = None) -> dict[str, Any]:
    """``sold_network()`` whose two campaigns take pings (held 60 s); ``b_one``: b-one's day
    cap in ``sold-excl``; ``b_two``: a day cap for b-two there too."""
    config = sold_network()
    for campaign in config["campaigns"]:
        if campaign["id"] in ("sold-excl", "sold-shared"):
            campaign["ping_ttl_s"] = TTL_S
        if campaign["id"] == "sold-excl":
            one, two, _ = campaign["buyers"]
            one["caps"] = [{"subject": "buyer", "window": "day", "limit": b_one}]
            if b_two is not None:
                two["caps"] = [{"subject": "buyer", "window": "day", "limit": b_two}]
    return config


def lyon(campaign: str) -> dict[str, object]:
    """A lead outside Paris: b-three's filter passes it over."""
    return person(campaign=campaign, postal_code="69001", country="FR")


async def test_a_ping_answers_how_many_buyers_would_buy_and_the_payout_and_its_post_commits(
    make_gateway: GatewayFactory,
) -> None:
    gw = await make_gateway(pinged_network())
    lead = lyon("sold-excl")

    pinged = await ping(gw, "p-mail", ping_of(lead))
    assert pinged["status"] == "open"
    assert (pinged["buyers"], pinged["payout"], pinged["expires_in_s"]) == (1, 4.5, TTL_S)
    assert "sold_to" not in pinged

    reply = await gw.post("p-mail", {**lead, "ping_id": pinged["ping_id"]})
    assert_matches_spec("POST", "/v1/leads", reply)
    answer = reply.json()
    assert (answer["decision"], answer["buyers"], answer["ping_status"]) == (
        "accepted",
        1,
        "committed",
    )
    # Shared to two buyers: the ping says two would buy it, and its post goes to both.
    shared = lyon("sold-shared")
    pinged = await ping(gw, "p-mail", ping_of(shared))
    assert (pinged["status"], pinged["buyers"]) == ("open", 2)
    answer = await gw.decide("p-mail", {**shared, "ping_id": pinged["ping_id"]})
    assert (answer["buyers"], answer["sold_to"], answer["ping_status"]) == (
        2,
        ["b-one", "b-two"],
        "committed",
    )


async def test_50_concurrent_pings_hold_exactly_the_room_of_an_exclusive_waterfall(
    make_gateway: GatewayFactory,
) -> None:
    gw = await make_gateway(pinged_network(b_one=5, b_two=5))
    leads = [lyon("sold-excl") for _ in range(50)]

    answers = await asyncio.gather(*(ping(gw, "p-mail", ping_of(lead)) for lead in leads))

    held = [(lead, a["ping_id"]) for lead, a in zip(leads, answers, strict=True) if "ping_id" in a]
    assert len(held) == 10  # 5 on b-one, then 5 on b-two
    # The others found both full, and b-three's filter (Paris only) passes them over: no
    # buyer may take them now (docs/distribution.md, "What publishers see").
    refused = Counter((a["status"], tuple(a["reasons"])) for a in answers if "ping_id" not in a)
    assert refused == {("rejected", ("buyer.filtered",)): 40}
    # The room is held: a plain post finds both buyers full...
    plain = await gw.decide("p-coreg", lyon("sold-excl"))
    assert (plain["decision"], plain["buyers"]) == ("rejected", 0)
    # ...and each pinged lead is sold on its held place.
    posts = await asyncio.gather(
        *(gw.decide("p-mail", {**lead, "ping_id": ping_id}) for lead, ping_id in held)
    )
    assert [(p["decision"], p["ping_status"]) for p in posts] == [("accepted", "committed")] * 10
    assert (await gw.decide("p-coreg", lyon("sold-excl")))["buyers"] == 0


async def test_expired_holds_on_buyers_return_their_room(make_gateway: GatewayFactory) -> None:
    gw = await make_gateway(pinged_network(b_one=1, b_two=1))
    first = lyon("sold-excl")
    ping_id = (await ping(gw, "p-mail", ping_of(first)))["ping_id"]
    assert (await ping(gw, "p-mail", ping_of(lyon("sold-excl"))))["status"] == "open"  # b-two
    assert (await ping(gw, "p-mail", ping_of(lyon("sold-excl"))))["status"] == "rejected"

    gw.clock.advance(TTL_S + 1)

    # Both places are free again: a new ping takes b-one's...
    assert (await ping(gw, "p-mail", ping_of(lyon("sold-excl"))))["status"] == "open"
    late = await gw.decide("p-mail", {**first, "ping_id": ping_id})
    # ...and the late post is decided afresh on what is left (b-two), and says so.
    assert (late["decision"], late["buyers"], late["ping_status"]) == ("accepted", 1, "expired")


PRO_PACK = """rules:
  - id: pro
    message: No free mail
    reject_if: {kind: email_free_mail}
"""


def free_mail(campaign: str) -> dict[str, object]:
    """A lead outside Paris the ``pro`` rule refuses at its post (its ping hashes the email)."""
    lead = lyon(campaign)
    return {**lead, "email": str(lead["email"]).replace("@example.com", "@gmail.com")}


async def test_a_post_the_rules_reject_gives_its_buyers_places_back_and_replays(
    make_gateway: GatewayFactory, tmp_path: Path
) -> None:
    config = pinged_network(b_one=1, b_two=1)
    (tmp_path / "pro.yaml").write_text(PRO_PACK)
    config["rules_dir"] = str(tmp_path)
    excl = next(c for c in config["campaigns"] if c["id"] == "sold-excl")
    excl["rules"] = ["pro"]
    gw = await make_gateway(config)
    lead = free_mail("sold-excl")
    ping_id = (await ping(gw, "p-mail", ping_of(lead)))["ping_id"]  # b-one's only place
    key = {"Idempotency-Key": "refused-post-1"}

    post = await gw.decide("p-mail", {**lead, "ping_id": ping_id}, headers=key)

    assert (post["decision"], post["reasons"], post["ping_status"]) == (
        "rejected", ["rule.pro"], "released",
    )  # fmt: skip
    replay = await gw.post("p-mail", {**lead, "ping_id": ping_id}, headers=key)
    assert replay.headers.get("Idempotent-Replayed") == "true"
    assert replay.json() == post
    assert metric(gw, "leadgate_ping_reservations_total", partner="p-mail", event="released") == 1
    # b-one's place is free again: two more pings hold b-one's and b-two's.
    again = [await ping(gw, "p-mail", ping_of(lyon("sold-excl"))) for _ in range(2)]
    assert [a["status"] for a in again] == ["open", "open"]


async def test_a_post_no_buyer_may_be_offered_gives_its_buyers_places_back(
    make_gateway: GatewayFactory,
) -> None:
    config = pinged_network(b_one=1)
    one, two, _ = next(c for c in config["campaigns"] if c["id"] == "sold-excl")["buyers"]
    pro = {"id": "pro", "message": "No free mail", "reject_if": {"kind": "email_free_mail"}}
    one["filter"] = {"rules": [pro]}
    two["hours"] = {"sat-sun": ["09:00-18:00"]}  # closed on the tests' Friday
    gw = await make_gateway(config)
    lead = free_mail("sold-excl")
    ping_id = (await ping(gw, "p-mail", ping_of(lead)))["ping_id"]  # b-one's only place

    post = await gw.decide("p-mail", {**lead, "ping_id": ping_id})

    assert (post["decision"], post["reasons"], post["ping_status"]) == (
        "rejected", ["buyer.filtered", "buyer.closed"], "released",
    )  # fmt: skip
    after = await gw.decide("p-mail", lyon("sold-excl"))
    assert (after["decision"], after["buyers"]) == ("accepted", 1)
