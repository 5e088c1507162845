"""Pings on campaigns sold to buyers, on the embedded store, one Redis and the real 3-primary
Redis Cluster, with one gateway or three replicas racing (the ``memories`` fixture): a ping
holds a place at each buyer that would buy it, and on the campaign's own caps, exactly under
concurrency; its post is sold on the held place; of two posts naming one ping one commits it.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from support import StoreView

from decision.sale_support import BUYERS, buyers_network, distributed, person
from gateway.config.load import parse_config
from gateway.decision.answer import Answer, PingAnswer
from gateway.decision.engine import DecisionEngine
from gateway.decision.intake import Intake
from gateway.decision.waterfall import Waterfall
from gateway.leads.email import normalize_email
from gateway.leads.fingerprint import Fingerprinter
from gateway.storage.base import Store
from gateway.types import FingerprintKey, PartnerId

RACERS = 50
TTL_S = 60
B1, B2, B3 = BUYERS[:3]
Memories = tuple[Sequence[Store], StoreView]
KEY = FingerprintKey("k1", b"leadgate-ping-sale-fingerprint!!", "sha256")


class Clock:
    def __init__(self) -> None:
        self.now_s = 1_790_000_000.0

    def __call__(self) -> float:
        return self.now_s


class Pingers:
    """Gateway replicas (intakes with pings) over the stores of one test."""

    def __init__(self, campaigns: Sequence[Mapping[str, Any]], memories: Memories) -> None:
        stores, _ = memories
        self.config = parse_config(buyers_network(campaigns))
        self.clock = Clock()
        fingerprinter = Fingerprinter([KEY])
        self.intakes = [
            Intake(
                self.config,
                DecisionEngine(s),
                fingerprinter,
                waterfall=Waterfall(s),
                pings=s,
                clock=self.clock,
            )
            for s in stores
        ]
        self.partner = self.config.partners[PartnerId("p-one")]

    async def ping(self, campaign: str, lead: Mapping[str, object], replica: int = 0) -> PingAnswer:
        email = normalize_email(str(lead["email"])).identity
        body = {"campaign": campaign, "email_sha256": hashlib.sha256(email.encode()).hexdigest()}
        return await self.intakes[replica % len(self.intakes)].ping(self.partner, body)

    async def post(
        self, campaign: str, lead: Mapping[str, object], ping_id: str | None = None, *,
        replica: int = 0, key: str | None = None,
    ) -> Answer:  # fmt: skip
        data = {**lead, "campaign": campaign, **({"ping_id": ping_id} if ping_id else {})}
        intake = self.intakes[replica % len(self.intakes)]
        return await intake.submit(
            self.partner, data, idempotency_key=key, body=repr(data).encode()
        )

    async def race(self, campaign: str, leads: Sequence[Mapping[str, object]]) -> list[PingAnswer]:
        return list(
            await asyncio.gather(*(self.ping(campaign, lead, i) for i, lead in enumerate(leads)))
        )


def capped(buyer: str, limit: int) -> dict[str, Any]:
    return {"advertiser": buyer, "caps": [{"subject": "buyer", "window": "day", "limit": limit}]}


def buyer_of(answer: PingAnswer | Answer) -> str:
    inner = answer.answer if isinstance(answer, PingAnswer) else answer
    assert inner.sales is not None, inner
    (sale,) = inner.sales
    return sale.buyer


async def test_fifty_pings_hold_exactly_ten_places_on_a_buyer_capped_at_ten(
    memories: Memories,
) -> None:
    shop = Pingers([distributed("solo", [capped(B1, 10)], ping_ttl_s=TTL_S)], memories)

    answers = await shop.race("solo", [person(f"p{i}") for i in range(RACERS)])

    held = [a for a in answers if a.ping_id is not None]
    assert len(held) == 10
    assert all(a.answer.sales is not None and len(a.answer.sales) == 1 for a in held)
    refused = Counter((a.answer.decision.value, a.answer.reasons) for a in answers if not a.ping_id)
    assert refused == {("capped", ("buyer.capped",)): RACERS - 10}
    # Nothing was sold or counted: the room is held, not taken.
    assert (await shop.post("solo", person("plain"))).decision.value == "capped"


async def test_an_exclusive_waterfall_of_two_buyers_capped_at_five_holds_five_on_each(
    memories: Memories,
) -> None:
    campaign = distributed("pair", [capped(B1, 5), capped(B2, 5)], ping_ttl_s=TTL_S)
    shop = Pingers([campaign], memories)

    answers = await shop.race("pair", [person(f"q{i}") for i in range(RACERS)])

    held = Counter(buyer_of(a) for a in answers if a.ping_id is not None)
    assert held == {B1: 5, B2: 5}
    assert sum(1 for a in answers if a.answer.decision.value == "capped") == RACERS - 10


async def test_expired_holds_return_the_buyers_room(memories: Memories) -> None:
    shop = Pingers([distributed("solo", [capped(B1, 2)], ping_ttl_s=TTL_S)], memories)
    for i in range(2):
        assert (await shop.ping("solo", person(f"e{i}"))).ping_id is not None
    assert (await shop.ping("solo", person("e2"))).ping_id is None

    shop.clock.now_s += TTL_S + 1

    assert (await shop.ping("solo", person("e3"))).ping_id is not None
    assert (await shop.post("solo", person("e4"))).decision.value == "accepted"


async def test_the_post_is_sold_on_its_held_buyer_when_other_pings_fill_it(
    memories: Memories,
) -> None:
    shop = Pingers([distributed("pair", [capped(B1, 2), {"advertiser": B2}], ping_ttl_s=TTL_S)],
                   memories)  # fmt: skip
    mine, other = person("mine"), person("other")
    ping_id = (await shop.ping("pair", mine)).ping_id
    assert ping_id is not None
    assert buyer_of(await shop.ping("pair", other)) == B1  # B1 is now full of holds
    assert buyer_of(await shop.post("pair", person("plain"))) == B2

    post = await shop.post("pair", mine, ping_id)

    assert (post.decision.value, buyer_of(post), post.ping_status) == ("accepted", B1, "committed")


async def test_two_posts_naming_one_ping_commit_it_once(memories: Memories) -> None:
    shop = Pingers([distributed("pair", [capped(B1, 1), {"advertiser": B2}], ping_ttl_s=TTL_S)],
                   memories)  # fmt: skip
    lead = person("twice")
    ping_id = (await shop.ping("pair", lead)).ping_id

    posts = await asyncio.gather(*(shop.post("pair", lead, ping_id, replica=i) for i in range(2)))

    assert sorted(p.ping_status or "" for p in posts) == ["committed", "used"]
    committed = next(p for p in posts if p.ping_status == "committed")
    assert buyer_of(committed) == B1


async def test_a_shared_ping_answers_how_many_buyers_would_buy_and_the_payout(
    memories: Memories,
) -> None:
    shared = distributed(
        "both", [{"advertiser": b} for b in (B1, B2, B3)], distribution="shared",
        max_buyers=2, payout=4.5, ping_ttl_s=TTL_S,
    )  # fmt: skip
    shop = Pingers([shared], memories)
    lead = person("shared")

    pinged = await shop.ping("both", lead)

    body = pinged.to_json()
    assert (body["status"], body["buyers"], body["payout"]) == ("open", 2, 4.5)
    post = await shop.post("both", lead, pinged.ping_id)
    assert post.sales is not None
    assert {s.buyer for s in post.sales} == {s.buyer for s in pinged.answer.sales or ()}
    assert post.ping_status == "committed"


async def test_the_campaigns_own_caps_hold_places_and_a_ping_no_buyer_takes_gives_them_back(
    memories: Memories,
) -> None:
    campaign = distributed(
        "capped", [{"advertiser": B1}], ping_ttl_s=TTL_S,
        caps=[{"subject": "campaign", "window": "day", "limit": 3}],
    )  # fmt: skip
    shop = Pingers([campaign], memories)
    bought = person("bought")
    assert (await shop.post("capped", bought)).decision.value == "accepted"  # 1 of 3 taken
    # A ping of a person B1 already has: no buyer would buy it, its campaign place returns.
    assert (await shop.ping("capped", bought)).answer.reasons == ("buyer.duplicate",)

    answers = await shop.race("capped", [person(f"c{i}") for i in range(10)])

    assert sum(1 for a in answers if a.ping_id is not None) == 2
    refused = Counter(a.answer.reasons for a in answers if a.ping_id is None)
    assert refused == {("cap.campaign.day",): 8}


async def test_a_held_buyer_the_post_never_reaches_gets_its_room_back(memories: Memories) -> None:
    campaign = distributed(
        "dedup", [capped(B1, 1), {"advertiser": B2}], ping_ttl_s=TTL_S,
        dedup=[{"scope": "campaign", "window": "30d"}],
    )  # fmt: skip
    shop = Pingers([campaign], memories)
    lead = person("dup")
    ping_id = (await shop.ping("dedup", lead)).ping_id  # holds B1's only place
    assert buyer_of(await shop.post("dedup", lead)) == B2  # a plain post of her, B1 full

    post = await shop.post("dedup", lead, ping_id)

    assert (post.decision.value, post.ping_status) == ("duplicate", "released")
    assert buyer_of(await shop.post("dedup", person("next"))) == B1  # B1's place is back


async def test_a_keyed_post_naming_a_ping_replays_its_status(memories: Memories) -> None:
    shop = Pingers([distributed("solo", [capped(B1, 1)], ping_ttl_s=TTL_S)], memories)
    lead = person("keyed")
    ping_id = (await shop.ping("solo", lead)).ping_id

    first = await shop.post("solo", lead, ping_id, key="k-1")
    again = await shop.post("solo", lead, ping_id, key="k-1", replica=1)

    assert (first.ping_status, first.replayed) == ("committed", False)
    assert (again.ping_status, again.replayed, again.lead_id) == ("committed", True, first.lead_id)
