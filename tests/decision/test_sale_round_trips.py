"""What a distributed campaign's lead costs, in Redis round trips (the issue's speed rule): a
lead sold to its first buyer costs what a single-advertiser decision costs, each further
buyer tried one more round trip, each protocol step one round trip only when the lead needs
it (docs/decision.md, "Distribution"). Counted on a real Redis by the store itself.
"""

from __future__ import annotations

import pytest
import redis.asyncio
from support import StoreView

from decision.sale_support import BUYERS, buyers_network, distributed, person, sellers
from gateway.decision.answer import Answer
from gateway.storage.redis import RedisStore
from gateway.types import PartnerId

B1, B2, B3, _, _ = BUYERS
CAMPAIGN_CHECKS = {
    "dedup": [{"scope": "campaign", "window": "30d"}],
    "caps": [{"subject": "campaign", "window": "day", "limit": 100}],
}


def campaigns() -> list[dict[str, object]]:
    three = [{"advertiser": b} for b in (B1, B2, B3)]
    full = {"advertiser": B1, "caps": [{"subject": "buyer", "window": "day", "limit": 1}]}
    paris = {"rules": [{"id": "paris", "message": "Paris", "require": {
        "kind": "regex", "field": "postal_code", "pattern": "75[0-9]{3}"}}]}  # fmt: skip
    return [
        distributed("plain", three),
        distributed("checked", three, **CAMPAIGN_CHECKS),
        distributed("shared", three, distribution="shared", max_buyers=2),
        distributed("third", [full, {"advertiser": B2}, {"advertiser": B3}]),
        distributed("filtered", [{"advertiser": B1, "filter": paris}]),
        {
            "id": "single",
            "advertiser": B1,
            "kind": "always_on",
            "dedup": [{"scope": "advertiser", "window": "30d"}],
        },
        {
            "id": "b2-own",
            "advertiser": B2,
            "kind": "always_on",
            "dedup": [{"scope": "advertiser", "window": "30d"}],
        },
    ]


#: case -> (what was posted before, then the lead, its campaign and Idempotency-Key)
SETUPS: dict[str, tuple[list[tuple[str, str, str | None]], tuple[str, str, str | None]]] = {
    "single-advertiser": ([], ("ann", "single", None)),
    "sold to the first buyer": ([], ("bob", "plain", None)),
    "sold to two buyers at once (shared)": ([], ("bob", "shared", None)),
    # b1 took its one lead of the day, b2 has Zoe already: b3 buys her.
    "sold to the third buyer": (
        [("filler", "third", None), ("zoe", "b2-own", None)],
        ("zoe", "third", None),
    ),
    "with campaign dedup and caps": ([], ("bob", "checked", None)),
    # b1, b2 and b3 each bought Ann through "plain".
    "unsold, with campaign dedup and caps": (
        [("ann", "plain", None)] * 3,
        ("ann", "checked", None),
    ),
    "with an Idempotency-Key": ([], ("bob", "plain", "K2")),
    "an idempotent replay": ([("kim", "plain", "K")], ("kim", "plain", "K")),
    "no buyer may be offered it": ([], ("bob", "filtered", None)),
}
EXPECTED = {
    "single-advertiser": 1,  # decide: the baseline
    "sold to the first buyer": 1,  # the buyer's script
    "sold to two buyers at once (shared)": 1,  # both scripts in one round trip
    "sold to the third buyer": 3,  # one per buyer tried
    "with campaign dedup and caps": 2,  # reserve, the buyer
    "unsold, with campaign dedup and caps": 5,  # reserve, 3 buyers, give back
    "with an Idempotency-Key": 3,  # claim (and lease), the buyer, the answer
    "an idempotent replay": 1,  # the claim answers it
    "no buyer may be offered it": 0,  # decided in the gateway (its filter)
}


@pytest.mark.parametrize("case", list(SETUPS))
async def test_round_trips_per_case(redis_url: str, case: str) -> None:
    store = RedisStore(redis_url)
    shop = sellers(buyers_network(campaigns()), ([store], StoreView(store, redis_url)))
    before_posts, (name, campaign, key) = SETUPS[case]
    try:
        await shop.post("single", person("warm-up"))  # loads the scripts
        for earlier, where, earlier_key in before_posts:
            await shop.post(where, person(earlier), key=earlier_key)
        before = store.round_trips

        answer = await shop.post(campaign, person(name), key=key)

        assert store.round_trips - before == EXPECTED[case]
        sold = case.startswith(("sold", "single", "with"))
        assert (answer.decision.value == "accepted") == (sold or case.endswith("replay"))
    finally:
        await store.close()


async def test_a_batch_goes_down_its_waterfalls_together_in_its_order(redis_url: str) -> None:
    """A batch's leads are offered together: each round of the waterfall is one round trip,
    and a round's offers to one buyer one ``decide.lua`` call, deciding them in the batch's
    order, each as if alone. Ann's three leads go to b1, b2 and b3 in that order; Bob and Cy
    are sold to b1 in the first round."""
    store = RedisStore(redis_url)
    shop = sellers(buyers_network(campaigns()), ([store], StoreView(store, redis_url)))
    client = redis.asyncio.Redis.from_url(redis_url, decode_responses=True)
    names = ("ann", "ann", "bob", "ann", "cy")
    try:
        await shop.post("single", person("warm-up"))  # loads the scripts
        before, calls_before = store.round_trips, await _script_calls(client)

        answers = await shop.intakes[0].submit_batch(
            shop.config.partners[PartnerId("p-one")],
            [{**person(name), "campaign": "plain"} for name in names],
        )

        round_trips, calls = store.round_trips - before, await _script_calls(client)
    finally:
        await store.close()
        await client.aclose()

    sold = [a.sales[0].buyer if isinstance(a, Answer) and a.sales else None for a in answers]
    assert sold == [B1, B2, B1, B3, B1]
    assert round_trips == 3  # one per round: b1, then b2, then b3
    assert calls - calls_before == 3  # one decide.lua call per buyer and round


async def _script_calls(client: redis.asyncio.Redis) -> int:
    stats = await client.info("commandstats")
    return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))
