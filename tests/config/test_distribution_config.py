"""Distributed campaigns in the configuration: buyers, their dedup, caps, filters, opening
hours and prices, and the campaign's sale keys. Every mistake is refused at its path."""

from __future__ import annotations

import copy
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from gateway.config.buyer_load import DEFAULT_BUYER_DEDUP
from gateway.config.check import hash_api_key
from gateway.config.load import load_config, parse_config
from gateway.config.model import BuyerOrder, CapSubject, DedupScope, SaleMode
from gateway.errors import ConfigError
from gateway.types import AdvertiserId, CampaignId

RULES = Path(__file__).parents[2] / "rules"


def config(campaign: dict[str, Any], **root: Any) -> dict[str, Any]:
    return {
        "channels": [{"id": "email"}, {"id": "coreg"}],
        "advertisers": [{"id": "acme"}, {"id": "nova"}, {"id": "solaris"}],
        "rules_dir": str(RULES),
        "campaigns": [campaign],
        "partners": [
            {
                "id": "p-one",
                "api_keys": [hash_api_key("k")],
                "channels": ["email"],
                "campaigns": [campaign["id"]],
            }
        ],
        **root,
    }


SOLD: dict[str, Any] = {
    "id": "sold",
    "kind": "always_on",
    "timezone": "Europe/Paris",
    "buyers": [
        {
            "advertiser": "acme",
            "price": 12.5,
            "caps": [{"subject": "buyer", "window": "day", "limit": 50}],
            "hours": {"mon-fri": ["09:00-12:30", "14:00-18:00"], "holidays": ["2026-12-25"]},
        },
        {
            "advertiser": "nova",
            "price": 9,
            "dedup": [{"scope": "campaign", "window": "60d"}],
            "filter": {
                "packs": ["default"],
                "rules": [
                    {
                        "id": "paris_area",
                        "message": "Paris and its suburbs only",
                        "require": {"kind": "regex", "field": "postal_code", "pattern": "7[5-8].*"},
                    }
                ],
            },
        },
    ],
    "payout": 4,
}


def issues(data: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as raised:
        parse_config(data)
    return [str(issue) for issue in raised.value.issues]


def test_a_campaign_with_buyers_reads_every_key() -> None:
    campaign = parse_config(config(SOLD)).campaigns[CampaignId("sold")]

    assert campaign.advertiser is None
    assert campaign.payout == 4.0
    distribution = campaign.distribution
    assert distribution is not None
    assert distribution.mode is SaleMode.EXCLUSIVE
    assert distribution.max_buyers == 1
    assert distribution.order is BuyerOrder.PRIORITY
    assert distribution.show_buyers is False
    acme, nova = distribution.buyers
    assert acme.advertiser == AdvertiserId("acme")
    assert acme.price == 12.5
    assert [acme.priority, nova.priority] == [1, 2]  # their positions
    assert acme.dedup == DEFAULT_BUYER_DEDUP  # advertiser-wide, 30 days
    assert acme.caps[0].subject is CapSubject.ADVERTISER  # "buyer" is the advertiser's cap
    assert acme.hours is not None
    assert acme.hours.weekly[0] == ((9 * 3600, 12 * 3600 + 1800), (14 * 3600, 18 * 3600))
    assert acme.hours.weekly[5] == ()
    assert acme.hours.holidays == frozenset({date(2026, 12, 25)})
    assert nova.dedup[0].scope is DedupScope.CAMPAIGN
    assert nova.filter is not None
    assert "paris_area" in {rule.id for rule in nova.filter.rules}
    assert "email_not_disposable" in {rule.id for rule in nova.filter.rules}


def test_a_shared_campaign_sells_to_max_buyers() -> None:
    buyers = [{**b, "weight": 2} for b in copy.deepcopy(SOLD["buyers"])]
    shared = {**SOLD, "distribution": "shared", "max_buyers": 2, "order": "weighted"}
    shared["buyers"] = buyers
    distribution = parse_config(config(shared)).campaigns[CampaignId("sold")].distribution
    assert distribution is not None
    assert (distribution.mode, distribution.max_buyers) == (SaleMode.SHARED, 2)
    assert [b.weight for b in distribution.buyers] == [2, 2]


def broken(**changes: Any) -> dict[str, Any]:
    campaign = copy.deepcopy(SOLD)
    for key, value in changes.items():
        if value is None:
            campaign.pop(key, None)
        else:
            campaign[key] = value
    return config(campaign)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (
            broken(advertiser="acme"),
            "campaigns[0].advertiser: a campaign names one advertiser, or buyers (a list), not "
            "both",
        ),
        (
            broken(buyers=None),
            "campaigns[0].advertiser: required key is missing (or list buyers instead)",
        ),
        (broken(buyers=[]), "campaigns[0].buyers: needs at least one buyer"),
        (
            broken(buyers=[{"advertiser": "acme"}, {"advertiser": "acme"}]),
            "campaigns[0].buyers[1].advertiser: 'acme' is already a buyer at campaigns[0].buyers[0]"
            ": a lead is never sold twice to the same buyer",
        ),
        (
            broken(buyers=[{"advertiser": "globex"}]),
            "campaigns[0].buyers[0].advertiser: unknown advertiser 'globex' (known: acme, nova, "
            "solaris)",
        ),
        (
            broken(distribution="shared"),
            "campaigns[0].max_buyers: a shared campaign says how many buyers a lead may go to",
        ),
        (
            broken(distribution="shared", max_buyers=3),
            "campaigns[0].max_buyers: 3 is more than the 2 buyers",
        ),
        (
            broken(max_buyers=2),
            "campaigns[0].max_buyers: only a shared campaign (distribution: shared) sells to "
            "several",
        ),
        (
            broken(order="cheapest"),
            "campaigns[0].order: 'cheapest' is not one of priority, weighted, round_robin, price",
        ),
        (
            broken(cpl=10),
            "campaigns[0].cpl: a campaign sold to buyers is priced per buyer (buyers[i].price)",
        ),
        (
            broken(dedup=[{"scope": "advertiser", "window": "30d"}]),
            "campaigns[0].dedup[0].scope: a campaign sold to buyers has no advertiser of its "
            "own: advertiser-wide dedup is each buyer's (buyers[i].dedup, the default)",
        ),
        (
            broken(caps=[{"subject": "advertiser", "window": "day", "limit": 5}]),
            "campaigns[0].caps[0].subject: a campaign sold to buyers has no advertiser of its "
            "own: cap each buyer (buyers[i].caps, subject buyer)",
        ),
        (
            broken(buyers=[{"advertiser": "acme",
                            "dedup": [{"scope": "network", "window": "1d"}]}]),
            "campaigns[0].buyers[0].dedup[0].scope: a buyer's dedup lives in its advertiser's "
            "slot: network dedup is set on the campaign (dedup: [{scope: network, …}])",
        ),
        (
            broken(buyers=[{"advertiser": "acme", "weight": 3}]),
            "campaigns[0].buyers[0].weight: only used with order: weighted (this campaign's: "
            "priority)",
        ),
        (
            broken(order="price", buyers=[{"advertiser": "acme"}]),
            "campaigns[0].buyers[0].price: order: price needs every buyer's price",
        ),
        (
            broken(buyers=[{"advertiser": "acme", "hours": {"weekdays": ["09:00-18:00"]}}]),
            "campaigns[0].buyers[0].hours.weekdays: not a day or day range like mon, sat, "
            "mon-fri (mon, tue, wed, thu, fri, sat, sun), nor holidays",
        ),
        (
            broken(buyers=[{"advertiser": "acme", "hours": {"fri": ["22:00-02:00"]}}]),
            "campaigns[0].buyers[0].hours.fri[0]: '22:00-02:00' ends before it starts: write a "
            'range over midnight on both days ("22:00-24:00" and the next day "00:00-02:00")',
        ),
        (
            broken(buyers=[{"advertiser": "acme", "hours": {"mon": ["9h-18h"]}}]),
            'campaigns[0].buyers[0].hours.mon[0]: \'9h-18h\' is not a range like "09:00-12:30"',
        ),
        (
            broken(buyers=[{"advertiser": "acme", "hours": {"mon-fri": ["09:00-18:00"],
                                                            "fri": ["10:00-11:00"]}}]),
            "campaigns[0].buyers[0].hours.fri: fri is already given by "
            "campaigns[0].buyers[0].hours.mon-fri",
        ),
        (
            broken(buyers=[{"advertiser": "acme", "hours": {"holidays": ["2026-12-25"]}}]),
            "campaigns[0].buyers[0].hours: opens on no day: name at least one day with its ranges",
        ),
        (
            broken(buyers=[{"advertiser": "acme", "filter": {"packs": ["no-such-pack"]}}]),
            "cannot read rule pack",
        ),
        (
            broken(buyers=[{"advertiser": "acme", "filter": {"packs": ["b2b"]}}]),
            "campaigns[0].buyers[0].filter: a filter takes or passes a lead: scoring rules "
            "(when: + score:) have no minimum here",
        ),
    ],
)  # fmt: skip
def test_mistakes_are_refused_at_their_path(data: dict[str, Any], expected: str) -> None:
    found = issues(data)
    assert any(expected in issue for issue in found), found


def test_a_shared_campaign_under_network_contact_pressure_must_opt_out() -> None:
    shared = {**copy.deepcopy(SOLD), "distribution": "shared", "max_buyers": 2}
    pressure = {"limit": 2, "window": "30d"}
    found = issues(config(shared, contact_pressure=pressure))
    assert any(
        i.startswith("campaigns[0].contact_pressure: a shared campaign sells") for i in found
    )
    parse_config(config({**shared, "contact_pressure": False}, contact_pressure=pressure))


def test_an_exclusive_campaign_under_contact_pressure_sells_a_person_once_per_window() -> None:
    """It counts as one unit of pressure: exact only if it sells a person once per window."""
    pressure = {"limit": 2, "window": "30d"}
    found = issues(config(copy.deepcopy(SOLD), contact_pressure=pressure))
    assert any("needs a campaign-scope dedup at least as long as the pressure window (30d)" in i
               for i in found), found  # fmt: skip
    short = {**copy.deepcopy(SOLD), "dedup": [
        {"scope": "campaign", "window": "60d", "channels": {"coreg": "7d"}}]}  # fmt: skip
    assert any("contact_pressure" in i for i in issues(config(short, contact_pressure=pressure)))
    exact = {**copy.deepcopy(SOLD), "dedup": [{"scope": "campaign", "window": "30d"}]}
    parse_config(config(exact, contact_pressure=pressure))


def test_a_campaign_with_one_advertiser_takes_no_sale_keys() -> None:
    single = {"id": "single", "advertiser": "acme", "kind": "always_on", "show_buyers": True}
    found = issues(config(single))
    assert found == [
        "campaigns[0].show_buyers: only a campaign with buyers (instead of an advertiser) sells"
    ]


def test_the_example_configuration_sells_to_buyers() -> None:
    example = load_config(Path(__file__).parents[2] / "examples" / "leadgate.yaml")
    sold = [c for c in example.campaigns.values() if c.distribution is not None]
    modes = sorted(c.distribution.mode.value for c in sold if c.distribution is not None)
    assert modes == ["exclusive", "shared"]


def test_a_campaign_sold_to_buyers_takes_pings_within_the_same_range() -> None:
    sold = parse_config(config({**SOLD, "ping_ttl_s": 60})).campaigns[CampaignId("sold")]
    assert sold.ping_ttl_s == 60
    with pytest.raises(ConfigError) as refused:
        parse_config(config({**SOLD, "ping_ttl_s": 4}))

    (issue,) = [i for i in refused.value.issues if i.path == "campaigns[0].ping_ttl_s"]
    assert "is not a whole number of seconds from 5 to 3600" in issue.message
