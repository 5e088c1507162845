"""The pure part of distribution: the order buyers are offered leads in, opening hours at their
boundaries (daylight saving included), and what an unsold lead is told.

The shares are measured end to end too: 10,000 leads of new people through the intake on the
embedded store, counted from the buyers' delivery streams.
"""

from __future__ import annotations

from collections import Counter
from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest
from support import StoreView

from decision.sale_support import BUYERS, buyers_network, distributed, person, sellers
from gateway.config.model import Buyer, BuyerOrder, Distribution, OpeningHours
from gateway.decision.distribution import BuyerTurns, Refusal, unsold
from gateway.decision.model import Decision
from gateway.storage.memory import MemoryStore
from gateway.types import AdvertiserId

B1, B2, B3, B4, B5 = BUYERS
PARIS = ZoneInfo("Europe/Paris")
LEADS = 10_000


def turns(order: BuyerOrder, *buyers: Buyer) -> BuyerTurns:
    return BuyerTurns(Distribution(tuple(buyers), order=order))


def firsts(t: BuyerTurns, buyers: list[Buyer], n: int) -> Counter[AdvertiserId]:
    return Counter(t.order(buyers)[0].advertiser for _ in range(n))


def test_weighted_order_gives_first_offers_in_proportion_to_weight_evenly_spread() -> None:
    buyers = [Buyer(B1, weight=5), Buyer(B2, weight=3), Buyer(B3, weight=2)]
    t = turns(BuyerOrder.WEIGHTED, *buyers)

    sequence = [t.order(buyers)[0].advertiser for _ in range(10)]

    # Smooth weighted round robin: exact within every cycle of 10, never 5 in a row.
    assert Counter(sequence) == {B1: 5, B2: 3, B3: 2}
    assert sequence == [B1, B2, B3, B1, B1, B2, B1, B3, B2, B1]


def test_weighted_order_lists_the_other_buyers_behind_the_first() -> None:
    buyers = [Buyer(B1, weight=5), Buyer(B2, weight=3), Buyer(B3, weight=2)]
    order = turns(BuyerOrder.WEIGHTED, *buyers).order(buyers)
    assert sorted(b.advertiser for b in order) == [B1, B2, B3]


def test_round_robin_starts_each_lead_with_the_next_buyer_and_keeps_the_rest_in_order() -> None:
    buyers = [Buyer(B1), Buyer(B2), Buyer(B3)]
    t = turns(BuyerOrder.ROUND_ROBIN, *buyers)
    orders = [[b.advertiser for b in t.order(buyers)] for _ in range(4)]
    assert orders == [[B1, B2, B3], [B2, B3, B1], [B3, B1, B2], [B1, B2, B3]]


def test_priority_goes_lowest_first_and_ties_take_turns() -> None:
    buyers = [Buyer(B1, priority=2), Buyer(B2, priority=1), Buyer(B3, priority=1)]
    t = turns(BuyerOrder.PRIORITY, *buyers)
    orders = [[b.advertiser for b in t.order(buyers)] for _ in range(3)]
    assert orders == [[B2, B3, B1], [B3, B2, B1], [B2, B3, B1]]


def test_price_goes_highest_first_and_ties_take_turns() -> None:
    buyers = [Buyer(B1, price=8.0), Buyer(B2, price=12.5), Buyer(B3, price=8.0)]
    t = turns(BuyerOrder.PRICE, *buyers)
    orders = [[b.advertiser for b in t.order(buyers)] for _ in range(2)]
    assert orders == [[B2, B1, B3], [B2, B3, B1]]


def test_a_buyer_that_is_not_offered_keeps_its_weight_for_when_it_is() -> None:
    buyers = [Buyer(B1, weight=1), Buyer(B2, weight=1)]
    t = turns(BuyerOrder.WEIGHTED, *buyers)
    only_b1 = [t.order([buyers[0]])[0].advertiser for _ in range(3)]
    both = firsts(t, buyers, 100)
    assert only_b1 == [B1, B1, B1]
    assert both == {B1: 50, B2: 50}


@pytest.mark.parametrize(
    ("order", "config", "expected"),
    [
        ("weighted", [5, 3, 2], {B1: 0.5, B2: 0.3, B3: 0.2}),
        ("round_robin", [None, None, None], {B1: 1 / 3, B2: 1 / 3, B3: 1 / 3}),
        ("priority", [1, 1, 2], {B1: 0.5, B2: 0.5, B3: 0.0}),
    ],
)
async def test_shares_over_10000_leads_are_within_2_percent_of_the_target(
    order: str, config: list[int | None], expected: dict[AdvertiserId, float]
) -> None:
    key = {"weighted": "weight", "priority": "priority"}.get(order)
    buyers = [
        {"advertiser": b, **({key: n} if key and n is not None else {})}
        for b, n in zip((B1, B2, B3), config, strict=True)
    ]
    store = MemoryStore()
    shop = sellers(
        buyers_network([distributed("split", buyers, order=order)]),
        ([store], StoreView(store, None)),
    )

    for i in range(LEADS):
        await shop.post("split", person(f"share-{order}-{i}"))

    for buyer, share in expected.items():
        received = len(await shop.received(buyer))
        assert abs(received / LEADS - share) <= 0.02, (buyer, received)


# -- opening hours ---------------------------------------------------------------------------


def paris(year: int, month: int, day: int, hour: int, minute: int, second: int) -> float:
    return datetime(year, month, day, hour, minute, second, tzinfo=PARIS).timestamp()


OFFICE = OpeningHours(
    weekly=(
        *([((9 * 3600, 12 * 3600 + 30 * 60), (14 * 3600, 18 * 3600))] * 5),
        ((10 * 3600, 12 * 3600),),
        (),
    ),
    holidays=frozenset({date(2026, 12, 25)}),
)


@pytest.mark.parametrize(
    ("instant", "open_"),
    [
        (paris(2026, 11, 20, 8, 59, 59), False),  # Friday, one second before opening
        (paris(2026, 11, 20, 9, 0, 0), True),  # the start is in
        (paris(2026, 11, 20, 12, 29, 59), True),
        (paris(2026, 11, 20, 12, 30, 0), False),  # the end is out
        (paris(2026, 11, 20, 14, 0, 0), True),
        (paris(2026, 11, 20, 17, 59, 59), True),
        (paris(2026, 11, 20, 18, 0, 0), False),
        (paris(2026, 11, 21, 10, 0, 0), True),  # Saturday morning
        (paris(2026, 11, 21, 14, 0, 0), False),  # Saturday afternoon: closed
        (paris(2026, 11, 22, 10, 0, 0), False),  # Sunday: no range
        (paris(2026, 12, 25, 10, 0, 0), False),  # a holiday (a Friday)
        (paris(2026, 12, 24, 10, 0, 0), True),
    ],
)
def test_opening_hours_at_their_boundaries(instant: float, open_: bool) -> None:
    assert OFFICE.open_at(instant, PARIS) is open_


NIGHT = OpeningHours(weekly=tuple([((2 * 3600, 3 * 3600),)] * 7))


def test_a_range_inside_the_hour_skipped_in_spring_is_never_open_that_night() -> None:
    # 2026-03-29 in Paris: 02:00 CET becomes 03:00 CEST; 01:00 UTC is both sides of the gap.
    just_before = datetime(2026, 3, 29, 0, 59, 59, tzinfo=ZoneInfo("UTC")).timestamp()
    just_after = just_before + 1
    assert datetime.fromtimestamp(just_after, PARIS).hour == 3
    assert not NIGHT.open_at(just_before, PARIS)
    assert not NIGHT.open_at(just_after, PARIS)
    # The night before and after, it opens at 02:00 local time.
    assert NIGHT.open_at(paris(2026, 3, 28, 2, 0, 0), PARIS)
    assert NIGHT.open_at(paris(2026, 3, 30, 2, 0, 0), PARIS)


def test_a_range_inside_the_hour_repeated_in_autumn_is_open_both_times() -> None:
    # 2026-10-25 in Paris: 03:00 CEST falls back to 02:00 CET; 02:00-03:00 local happens twice,
    # from 00:00 to 02:00 UTC.
    utc = ZoneInfo("UTC")
    start = datetime(2026, 10, 25, 0, 0, tzinfo=utc).timestamp()
    minutes = [start + 60 * m for m in range(-1, 121)]
    open_minutes = [t for t in minutes if NIGHT.open_at(t, PARIS)]
    assert len(open_minutes) == 120  # two local hours of 02:xx
    assert not NIGHT.open_at(start - 60, PARIS)  # 01:59 CEST
    assert not NIGHT.open_at(start + 120 * 60, PARIS)  # 03:00 CET


def test_hours_follow_the_campaigns_zone_not_utc() -> None:
    new_york = ZoneInfo("America/New_York")
    evening_ny = datetime(2026, 11, 20, 17, 30, tzinfo=new_york).timestamp()
    assert OFFICE.open_at(evening_ny, new_york)
    assert not OFFICE.open_at(evening_ny, PARIS)  # 23:30 in Paris


# -- unsold answers --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("refusals", "decision", "reasons"),
    [
        ([Refusal.DUPLICATE, Refusal.DUPLICATE], Decision.DUPLICATE, ("buyer.duplicate",)),
        ([Refusal.CAPPED], Decision.CAPPED, ("buyer.capped",)),
        ([Refusal.DUPLICATE, Refusal.CAPPED], Decision.CAPPED, ("buyer.capped",)),
        ([Refusal.CLOSED, Refusal.FILTERED], Decision.REJECTED, ("buyer.closed", "buyer.filtered")),
        ([Refusal.DUPLICATE, Refusal.DISABLED], Decision.REJECTED, ("buyer.disabled",)),
        ([Refusal.CAPPED, Refusal.CLOSED, Refusal.CLOSED], Decision.REJECTED, ("buyer.closed",)),
    ],
)
def test_an_unsold_lead_gets_the_codes_of_its_decision_only(
    refusals: list[Refusal], decision: Decision, reasons: tuple[str, ...]
) -> None:
    assert unsold(refusals) == (decision, reasons)
