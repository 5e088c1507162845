"""Pings on campaigns sold to buyers, on the embedded store, one Redis and the real 3-primary
Redis Cluster, with one gateway or three replicas racing (the ``memories`` fixture): a ping
holds a place at each buyer that would buy it, and on the campaign's own caps, exactly under
concurrency; its post is sold on the held place; of two posts naming one ping one commits it;
a post refused in the gateway (its campaign's rules or state, no buyer to offer it to) gives
every place its ping holds back at once.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from support import StoreView

from decision.sale_support import BUYERS, buyers_network, distributed, person
from gateway.config.load import parse_config
from gateway.decision.answer import Answer, PingAnswer
from gateway.decision.engine import DecisionEngine
from gateway.decision.intake import Intake
from gateway.decision.waterfall import Waterfall
from gateway.errors import PingMismatch
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
    """Gateway replicas (intakes with pings) over the stores of one test; ``root``: more keys
    of the config (``rules_dir``)."""

    def __init__(
        self, campaigns: Sequence[Mapping[str, Any]], memories: Memories, **root: Any
    ) -> None:
        stores, _ = memories
        self.config = parse_config(buyers_network(campaigns, **root))
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

    async def ping(
        self, campaign: str, lead: Mapping[str, object], replica: int = 0, *,
        partner: str = "p-one",
    ) -> PingAnswer:  # fmt: skip
        """A ping of ``lead``: its hashed email only (rules and filters on anything else wait
        for the post)."""
        email = normalize_email(str(lead["email"])).identity
        body = {"campaign": campaign, "email_sha256": hashlib.sha256(email.encode()).hexdigest()}
        intake = self.intakes[replica % len(self.intakes)]
        return await intake.ping(self.config.partners[PartnerId(partner)], body)

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


PRO_PACK = """rules:
  - id: pro
    message: No free mail
    reject_if: {kind: email_free_mail}
"""
#: A buyer's filter of the same rule.
PRO_ONLY = {"rules": [{"id": "pro", "message": "No free mail", "reject_if": {
    "kind": "email_free_mail"}}]}  # fmt: skip
#: A day cap of one lead on the campaign's own slot.
ONE_A_DAY = [{"subject": "campaign", "window": "day", "limit": 1}]


def free_mail(n: int | str) -> dict[str, object]:
    """A lead the ``pro`` rule refuses, but only at its post: its ping hashes the email."""
    return person(n, email=f"camille.{n}@gmail.com")


def ruled(memories: Memories, rules_dir: Path) -> Pingers:
    """``ruled``: no free mail (the campaign's rules), one lead a day, sold to B1 (one a day)."""
    (rules_dir / "pro.yaml").write_text(PRO_PACK)
    campaign = distributed(
        "ruled", [capped(B1, 1)], ping_ttl_s=TTL_S, rules=["pro"], caps=ONE_A_DAY
    )
    return Pingers([campaign], memories, rules_dir=str(rules_dir))


async def test_a_post_the_rules_reject_gives_back_its_buyers_and_campaign_places_at_once(
    memories: Memories, tmp_path: Path
) -> None:
    shop = ruled(memories, tmp_path)
    lead = free_mail("ruled")
    ping_id = (await shop.ping("ruled", lead)).ping_id  # the rule waits for the email
    assert ping_id is not None
    assert (await shop.post("ruled", person("early"))).decision.value == "capped"

    post = await shop.post("ruled", lead, ping_id)

    assert (post.decision.value, post.reasons, post.ping_status) == (
        "rejected", ("rule.pro",), "released",
    )  # fmt: skip
    # B1's place and the campaign's are both back: the next lead sells at once.
    assert buyer_of(await shop.post("ruled", person("next"))) == B1


async def test_a_post_to_an_ended_campaign_gives_back_its_buyers_places_at_once(
    memories: Memories,
) -> None:
    ends = datetime.fromtimestamp(Clock().now_s + TTL_S / 2, UTC).isoformat()
    ending = distributed(
        "ending", [capped(B1, 1)], ping_ttl_s=TTL_S, kind="peak", start="2026-01-01", end=ends
    )
    # B1's cap counts every lead it buys (advertiser-wide), through either campaign.
    shop = Pingers([ending, distributed("always", [capped(B1, 1)])], memories)
    lead = person("ending")
    ping_id = (await shop.ping("ending", lead)).ping_id
    assert ping_id is not None
    assert (await shop.post("always", person("early"))).decision.value == "capped"
    shop.clock.now_s += TTL_S / 2 + 1  # the campaign ended; the ping's hold has not

    post = await shop.post("ending", lead, ping_id)

    assert (post.decision.value, post.reasons, post.ping_status) == (
        "rejected", ("campaign.inactive",), "released",
    )  # fmt: skip
    assert buyer_of(await shop.post("always", person("next"))) == B1


async def test_a_post_no_buyer_may_be_offered_now_gives_back_its_ping_places_at_once(
    memories: Memories,
) -> None:
    filtered = {**capped(B1, 1), "filter": PRO_ONLY}
    campaign = distributed("filtered", [filtered], ping_ttl_s=TTL_S, caps=ONE_A_DAY)
    shop = Pingers([campaign], memories)
    lead = free_mail("filtered")
    ping_id = (await shop.ping("filtered", lead)).ping_id  # the filter waits for the post
    assert ping_id is not None
    assert (await shop.post("filtered", person("early"))).decision.value == "capped"

    post = await shop.post("filtered", lead, ping_id)

    assert (post.decision.value, post.reasons, post.ping_status) == (
        "rejected", ("buyer.filtered",), "released",
    )  # fmt: skip
    assert post.offers == ((B1, "buyer.filtered"),)
    assert buyer_of(await shop.post("filtered", person("next"))) == B1


async def test_a_keyed_post_refused_in_the_gateway_replays_its_answer(
    memories: Memories, tmp_path: Path
) -> None:
    shop = ruled(memories, tmp_path)
    lead = free_mail("keyed")
    ping_id = (await shop.ping("ruled", lead)).ping_id

    first = await shop.post("ruled", lead, ping_id, key="k-refused")
    again = await shop.post("ruled", lead, ping_id, key="k-refused", replica=1)

    assert (first.decision.value, first.ping_status, first.replayed) == (
        "rejected", "released", False,
    )  # fmt: skip
    assert (again.decision.value, again.reasons, again.ping_status) == (
        "rejected", ("rule.pro",), "released",
    )  # fmt: skip
    assert (again.replayed, again.lead_id) == (True, first.lead_id)
    assert buyer_of(await shop.post("ruled", person("next"))) == B1


async def test_a_refused_test_post_says_what_a_real_one_would_and_gives_nothing_back(
    memories: Memories, tmp_path: Path
) -> None:
    """Test mode writes nothing: the refused test post names its ping's fate as a real post's
    answer would (``released``, as on a single-advertiser campaign), and the places stay held
    for the real post."""
    shop = ruled(memories, tmp_path)
    lead = free_mail("trial")
    ping_id = (await shop.ping("ruled", lead)).ping_id
    assert ping_id is not None

    post = await shop.post("ruled", {**lead, "test": True}, ping_id)

    assert (post.decision.value, post.ping_status, post.test) == ("rejected", "released", True)
    assert (await shop.post("ruled", person("next"))).decision.value == "capped"


async def test_a_refused_post_naming_another_partners_ping_gives_nothing_back(
    memories: Memories, tmp_path: Path
) -> None:
    shop = ruled(memories, tmp_path)
    lead = free_mail("theirs")
    ping_id = (await shop.ping("ruled", lead, partner="p-two")).ping_id
    assert ping_id is not None

    post = await shop.post("ruled", lead, ping_id)  # p-one's post

    assert (post.decision.value, post.ping_status) == ("rejected", "unknown")
    # The ping still holds its places: for its own partner's post, not for another lead.
    assert (await shop.post("ruled", person("next"))).decision.value == "capped"


async def test_a_refused_post_that_differs_from_its_live_ping_is_a_ping_mismatch(
    memories: Memories, tmp_path: Path
) -> None:
    shop = ruled(memories, tmp_path)
    ping_id = (await shop.ping("ruled", free_mail("pinged"))).ping_id

    with pytest.raises(PingMismatch) as refused:
        await shop.post("ruled", free_mail("someone-else"), ping_id)

    assert [p.field for p in refused.value.problems] == ["email"]
    # Its places stay, for a corrected post.
    assert (await shop.post("ruled", person("next"))).decision.value == "capped"


class CountedReads:
    """A store's ping records, every read of them counted."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.reads: list[list[str]] = []

    async def read_pings(self, keys: Sequence[str], now_ms: int) -> list[str | None]:
        self.reads.append(list(keys))
        result: list[str | None] = await self.store.read_pings(keys, now_ms)
        return result


async def test_a_post_naming_a_ping_on_a_campaign_that_takes_none_reads_no_record(
    memories: Memories,
) -> None:
    shop = Pingers([distributed("plain", [capped(B1, 5)])], memories)
    counted = [CountedReads(intake._pings) for intake in shop.intakes]
    for intake, reads in zip(shop.intakes, counted, strict=True):
        intake._pings = reads

    post = await shop.post("plain", person("no-pings"), "pg_" + "A" * 22)

    assert (post.decision.value, post.ping_status, buyer_of(post)) == ("accepted", "unknown", B1)
    assert [r.reads for r in counted] == [[] for _ in counted]  # no ping could be held
