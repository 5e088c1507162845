"""What a distributed campaign's lead costs, in Redis round trips (the issue's speed rule): a
lead sold to its first buyer costs what a single-advertiser decision costs, each further
buyer tried one more round trip, each protocol step one round trip only when the lead needs
it (docs/decision.md, "Distribution"). Counted on a real Redis by the store itself.
"""

from __future__ import annotations

import pytest
from support import StoreView

from decision.sale_support import BUYERS, buyers_network, distributed, person, sellers
from gateway.storage.redis import RedisStore

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
