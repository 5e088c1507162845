"""Concurrent publishers over real HTTP: exactly-once acceptance and exact caps.

Commercial platforms document that 50 concurrent posts of one person can be bought twice; here
the decision of each lead is one atomic check-and-commit, so whatever the interleaving, one
person is accepted once and a cap of 10 lets exactly 10 through. Runs on both stores (the Redis
one auto-pipelines concurrent requests into shared round trips).
"""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from typing import Any
from urllib.parse import urlencode

import pytest

from gateway.types import AdvertiserId

from .conftest import Gateway, GatewayFactory, Reply, network, person

PARTNERS = ("p-mail", "p-coreg", "p-cash", "p-comp")
# Every spelling is the same Gmail mailbox and the same French mobile number.
EMAILS = (
    "jean.morel@gmail.com",
    "Jean.Morel@Gmail.com",
    "JEANMOREL@GMAIL.COM",
    "jean.morel+promo@googlemail.com",
    "j.e.a.n.m.o.r.e.l@gmail.com",
    "Jean.Morel+Black.Friday@gmail.com",
    "  jeanmorel@gmail.com ",
)
PHONES = (
    "06 98 76 54 32",
    "+33 6 98 76 54 32",
    "0033698765432",
    "06.98.76.54.32",
    "+33698765432",
    "06-98-76-54-32",
)


def spellings(n: int, campaign: str) -> list[dict[str, object]]:
    """``n`` leads of one person, each spelled differently (7 x 6 combinations)."""
    pairs = itertools.islice(zip(itertools.cycle(EMAILS), itertools.cycle(PHONES)), n)
    return [
        {"campaign": campaign, "email": email, "phone": phone, "ref": f"r{i}"}
        for i, (email, phone) in enumerate(pairs)
    ]


async def send(gw: Gateway, i: int, lead: dict[str, object]) -> Reply:
    """Lead ``i`` from partner ``i % 4``, through JSON, form or GET in turn."""
    partner = PARTNERS[i % len(PARTNERS)]
    transport = i % 3
    if transport == 0:
        return await gw.post(partner, lead)
    if transport == 1:
        form = urlencode({k: str(v) for k, v in lead.items()})
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        return await gw.request("POST", "/v1/leads", partner=partner, data=form, headers=headers)
    params = {k: str(v) for k, v in lead.items()}
    return await gw.request("GET", "/v1/leads", partner=partner, params=params)


async def send_all(gw: Gateway, leads: list[dict[str, object]]) -> list[dict[str, Any]]:
    replies = await asyncio.gather(*(send(gw, i, lead) for i, lead in enumerate(leads)))
    assert [r.status for r in replies] == [200] * len(leads), [r.body for r in replies]
    return [r.json() for r in replies]


async def test_50_concurrent_posts_of_one_person_accept_exactly_one(
    make_gateway: GatewayFactory,
) -> None:
    gw = await make_gateway()
    answers = await send_all(gw, spellings(50, "acme-always-on"))
    assert Counter(a["decision"] for a in answers) == {"accepted": 1, "duplicate": 49}
    assert {tuple(a["reasons"]) for a in answers if a["decision"] == "duplicate"} == {
        ("duplicate.advertiser",)
    }
    assert len({a["lead_id"] for a in answers}) == 50
    (delivered,) = await gw.view.deliveries(AdvertiserId("acme"))
    (accepted,) = [a for a in answers if a["decision"] == "accepted"]
    assert delivered.lead_id == accepted["lead_id"]


async def test_concurrent_posts_across_advertisers_respect_contact_pressure(
    make_gateway: GatewayFactory,
) -> None:
    """One person, two advertisers, a pressure limit of one advertiser: one sale in total."""
    config = {**network(), "contact_pressure": {"limit": 1, "window": "30d"}}
    gw = await make_gateway(config)
    leads = spellings(50, "acme-always-on")
    for lead in leads[1::2]:
        lead["campaign"] = "nova-ten"
    answers = await send_all(gw, leads)
    decisions = Counter(a["decision"] for a in answers)
    assert decisions["accepted"] == 1, decisions
    refused = {(a["decision"], tuple(a["reasons"])) for a in answers if a["decision"] != "accepted"}
    assert refused <= {
        ("capped", ("cap.person",)),
        ("duplicate", ("duplicate.advertiser",)),
        ("duplicate", ("duplicate.campaign",)),
    }
    delivered = await gw.view.deliveries(AdvertiserId("acme"))
    delivered += await gw.view.deliveries(AdvertiserId("nova"))
    assert len(delivered) == 1


async def test_a_cap_of_10_with_50_concurrent_leads_accepts_exactly_10(
    make_gateway: GatewayFactory,
) -> None:
    gw = await make_gateway()
    answers = await send_all(gw, [person(campaign="nova-ten") for _ in range(50)])
    assert Counter(a["decision"] for a in answers) == {"accepted": 10, "capped": 40}
    assert {tuple(a["reasons"]) for a in answers if a["decision"] == "capped"} == {
        ("cap.campaign.day",)
    }
    assert len(await gw.view.deliveries(AdvertiserId("nova"))) == 10


async def test_a_batch_of_50_against_a_cap_of_10_accepts_the_first_10(
    make_gateway: GatewayFactory,
) -> None:
    gw = await make_gateway()
    reply = await gw.batch("p-coreg", [person(campaign="nova-ten") for _ in range(50)])
    body = reply.json()
    assert [r["decision"] for r in body["results"]] == ["accepted"] * 10 + ["capped"] * 40
    assert body["counts"] == {
        "accepted": 10,
        "duplicate": 0,
        "capped": 40,
        "rejected": 0,
        "invalid": 0,
    }
    assert len(await gw.view.deliveries(AdvertiserId("nova"))) == 10


async def test_a_batch_of_one_person_spelled_50_ways_accepts_one(
    make_gateway: GatewayFactory,
) -> None:
    gw = await make_gateway()
    body = (await gw.batch("p-cash", spellings(50, "acme-always-on"))).json()
    assert body["counts"]["accepted"] == 1
    assert body["counts"]["duplicate"] == 49
    assert body["results"][0]["decision"] == "accepted"  # decided in order
    assert len(await gw.view.deliveries(AdvertiserId("acme"))) == 1


@pytest.mark.parametrize("batches", [5, 10])
async def test_concurrent_batches_and_single_posts_share_one_cap(
    make_gateway: GatewayFactory, batches: int
) -> None:
    gw = await make_gateway()
    size = 50 // batches
    batch_replies, singles = await asyncio.gather(
        asyncio.gather(
            *(
                gw.batch(PARTNERS[b % 4], [person(campaign="nova-ten") for _ in range(size)])
                for b in range(batches)
            )
        ),
        send_all(gw, [person(campaign="nova-ten") for _ in range(20)]),
    )
    decisions: Counter[str] = Counter(a["decision"] for a in singles)
    for reply in batch_replies:
        assert reply.status == 200
        decisions.update(r["decision"] for r in reply.json()["results"])
    assert decisions == {"accepted": 10, "capped": 60}
    assert len(await gw.view.deliveries(AdvertiserId("nova"))) == 10
