"""The sale guarantees of distributed campaigns, on the embedded store, one Redis, and the real
3-primary Redis Cluster (each buyer an advertiser, so a different slot, often another
primary), with one gateway or three replicas racing (the ``memories`` fixture).

What must hold whatever the interleaving (issue 19): an exclusive lead is sold to at most one
buyer, a shared one to at most N and never twice to one buyer; a person is sold to a buyer at
most once within the buyer's window; a buyer cap of 10 sells exactly 10; a lead that ends
unsold leaves no buyer mark and consumes no buyer cap. Who received what is read back from
the buyers' delivery streams, as their CRMs would receive it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from zoneinfo import ZoneInfo

from support import StoreView

from decision.sale_support import BUYERS, buyers_network, distributed, person, sellers
from gateway.decision.answer import Answer
from gateway.errors import RequestError
from gateway.storage.base import Store
from gateway.types import PartnerId

RACERS = 50
B1, B2, B3, B4, B5 = BUYERS
Memories = tuple[Sequence[Store], StoreView]


def answered(results: Sequence[Answer | RequestError]) -> list[Answer]:
    assert all(isinstance(r, Answer) for r in results), results
    return [r for r in results if isinstance(r, Answer)]


async def test_fifty_posts_of_one_person_sell_them_to_each_of_three_buyers_at_most_once(
    memories: Memories,
) -> None:
    exclusive = distributed("three", [{"advertiser": b} for b in (B1, B2, B3)])
    shop = sellers(buyers_network([exclusive]), memories)

    answers = answered(await shop.race([("three", person("ann"))] * RACERS))

    sold = [a for a in answers if a.decision.value == "accepted"]
    # Each buyer's advertiser-wide dedup (the default) lets it buy the person once: three
    # sales, one per buyer; every other post finds all three already have her.
    assert len(sold) == 3
    assert all(a.sales is not None and len(a.sales) == 1 for a in sold)
    assert sorted(a.sales[0].buyer for a in sold if a.sales) == [B1, B2, B3]
    refused = Counter((a.decision.value, a.reasons) for a in answers if a not in sold)
    assert refused == {("duplicate", ("buyer.duplicate",)): RACERS - 3}
    for buyer in (B1, B2, B3):
        assert len(await shop.received(buyer)) == 1
    for answer in sold:
        assert len(await shop.sold_to(answer.lead_id)) == 1  # exclusive: one buyer each


async def test_with_campaign_dedup_fifty_posts_of_one_person_sell_once(memories: Memories) -> None:
    exclusive = distributed(
        "three",
        [{"advertiser": b} for b in (B1, B2, B3)],
        dedup=[{"scope": "campaign", "window": "30d"}],
    )
    shop = sellers(buyers_network([exclusive]), memories)

    answers = answered(await shop.race([("three", person("bea"))] * RACERS))

    decisions = Counter((a.decision.value, a.reasons) for a in answers)
    assert decisions == {("accepted", ()): 1, ("duplicate", ("duplicate.campaign",)): RACERS - 1}
    (winner,) = [a for a in answers if a.decision.value == "accepted"]
    assert await shop.sold_to(winner.lead_id) == [B1]
    assert [len(await shop.received(b)) for b in (B2, B3)] == [0, 0]


async def test_a_buyer_cap_of_10_sells_exactly_10_of_50_leads_from_several_campaigns(
    memories: Memories,
) -> None:
    capped = {"advertiser": B1, "caps": [{"subject": "buyer", "window": "day", "limit": 10}]}
    campaigns = [
        distributed("first", [capped, {"advertiser": B2}]),
        distributed("second", [capped, {"advertiser": B3}]),
    ]
    shop = sellers(buyers_network(campaigns), memories)
    posts = [("first" if i % 2 else "second", person(f"cap-{i}")) for i in range(RACERS)]

    answers = answered(await shop.race(posts))

    assert all(a.decision.value == "accepted" for a in answers)
    assert len(await shop.received(B1)) == 10
    # The other 40 went on down their campaign's waterfall, each to that campaign's next buyer.
    down = [a for a in answers if a.sales and a.sales[0].buyer != B1]
    assert len(down) == RACERS - 10
    for a in down:
        assert (B1, "buyer.capped") in a.offers
        assert a.sales is not None
        assert a.sales[0].buyer == (B2 if a.campaign == "first" else B3)
    assert len(await shop.received(B2)) + len(await shop.received(B3)) == RACERS - 10


async def test_shared_sells_to_at_most_n_buyers_and_never_twice_to_one(memories: Memories) -> None:
    shared = distributed(
        "pair",
        [{"advertiser": b} for b in (B1, B2, B3, B4)],
        distribution="shared",
        max_buyers=2,
        order="round_robin",
        show_buyers=True,
    )
    shop = sellers(buyers_network([shared]), memories)
    # Five people, ten posts each, all at once.
    posts = [("pair", person(f"shared-{i % 5}", ref=f"person-{i % 5}")) for i in range(RACERS)]

    answers = answered(await shop.race(posts))

    person_of: dict[str, str | None] = {a.lead_id: a.ref for a in answers}
    for answer in answers:
        assert answer.sales is not None
        buyers = await shop.sold_to(answer.lead_id)
        assert len(buyers) <= 2
        assert sorted(buyers) == sorted(s.buyer for s in answer.sales)
    for buyer in (B1, B2, B3, B4):
        people = [person_of[lead_id] for lead_id in await shop.received(buyer)]
        assert len(people) == len(set(people)), f"{buyer} bought someone twice: {people}"
    # Each of the four buyers bought each of the five people once: 20 sales in all.
    assert [len(await shop.received(b)) for b in (B1, B2, B3, B4)] == [5, 5, 5, 5]


class Clock:
    def __init__(self, now_s: float) -> None:
        self.now_s = now_s

    def __call__(self) -> float:
        return self.now_s


#: Friday 2026-11-20 10:00 in Paris.
T0 = datetime(2026, 11, 20, 10, 0, tzinfo=ZoneInfo("Europe/Paris")).timestamp()


async def test_a_lead_no_buyer_takes_leaves_no_buyer_mark_or_count_and_gives_back_the_campaigns(
    memories: Memories,
) -> None:
    b1 = {"advertiser": B1, "caps": [{"subject": "buyer", "window": "day", "limit": 2}]}
    b2 = {"advertiser": B2, "caps": [{"subject": "buyer", "window": "day", "limit": 1}]}
    main = distributed(
        "main",
        [b1, b2],
        dedup=[{"scope": "campaign", "window": "30d"}],
        caps=[{"subject": "campaign", "window": "day", "limit": 2}],
    )
    fill = distributed("fill", [b2])
    b1_own = {
        "id": "b1-own",
        "advertiser": B1,
        "kind": "always_on",
        "dedup": [{"scope": "advertiser", "window": "30d"}],
    }
    clock = Clock(T0)
    shop = sellers(buyers_network([main, fill, b1_own]), memories, clock)
    # b1 already bought Yann through its own campaign; b2 is full for the day.
    assert (await shop.post("b1-own", person("yann"))).decision.value == "accepted"
    assert (await shop.post("fill", person("xavier"))).sales

    yann = await shop.post("main", person("yann"))

    assert (yann.decision.value, yann.reasons) == ("capped", ("buyer.capped",))
    assert yann.offers == ((B1, "buyer.duplicate"), (B2, "buyer.capped"))
    assert await shop.sold_to(yann.lead_id) == []
    # The campaign's own mark of Yann was given back: a test post of him is not a duplicate
    # of this campaign (it would be "duplicate.campaign")...
    probe = await shop.post("main", person("yann", test=True))
    assert probe.reasons == ("buyer.capped",)
    # ... nor its campaign-cap count: two new people still fit in its cap of 2, and b1's cap
    # of 2 was not touched by Yann either: both go to b1.
    for name in ("zoe", "zack"):
        sold = await shop.post("main", person(name))
        assert sold.sales is not None
        assert [s.buyer for s in sold.sales] == [B1]
    full = await shop.post("main", person("zelda"))
    assert full.reasons == ("cap.campaign.day",)
    # b2 holds no mark of Yann: the next day (its cap reset), b2 buys him.
    clock.now_s += 86_400
    again = await shop.post("fill", person("yann"))
    assert again.sales is not None
    assert [s.buyer for s in again.sales] == [B2]


async def test_one_key_posted_twenty_times_at_once_sells_one_lead_once(memories: Memories) -> None:
    exclusive = distributed("three", [{"advertiser": b} for b in (B1, B2, B3)])
    shop = sellers(buyers_network([exclusive]), memories)

    results = await shop.race([("three", person("kim"))] * 20, key="kim-once")

    answers = [r for r in results if isinstance(r, Answer)]
    waiting = [r for r in results if not isinstance(r, Answer)]
    assert all(r.status == 409 for r in waiting), waiting
    assert {a.lead_id for a in answers} == {answers[0].lead_id}
    assert {a.decision.value for a in answers} == {"accepted"}
    assert await shop.sold_to(answers[0].lead_id) == [B1]
    assert sum([len(await shop.received(b)) for b in (B1, B2, B3)]) == 1
    # Once decided, the key replays its answer.
    replay = await shop.post("three", person("kim"), key="kim-once")
    assert replay.replayed
    assert replay.lead_id == answers[0].lead_id
    assert replay.sales is not None
    assert [s.buyer for s in replay.sales] == [B1]


async def test_a_batchs_leads_are_offered_in_its_order_each_as_if_alone(
    memories: Memories,
) -> None:
    """One batch, one person three times among others: each round offers the leads to a buyer
    together (one script call on Redis), in the batch's order, and each sees what the ones
    before it bought: the person goes to b1, b2, b3 in turn, never twice to one buyer."""
    exclusive = distributed("three", [{"advertiser": b} for b in (B1, B2, B3)])
    shop = sellers(buyers_network([exclusive]), memories)
    names = ("ann", "bob", "ann", "ann", "ann", "cy")

    results = await shop.intakes[0].submit_batch(
        shop.config.partners[PartnerId("p-one")],
        [{**person(name), "campaign": "three"} for name in names],
    )

    answers = answered(results)
    sold = [a.sales[0].buyer if a.sales else a.reasons for a in answers]
    assert sold == [B1, B1, B2, B3, ("buyer.duplicate",), B1]
    for buyer, count in ((B1, 3), (B2, 1), (B3, 1)):
        assert len(await shop.received(buyer)) == count
