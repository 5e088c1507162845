"""``suppression_lists``: declared once at the root; network-wide lists reach every campaign."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.config.load import parse_config
from gateway.config.model import SuppressionList, SuppressionRule
from gateway.errors import ConfigError, ConfigIssue
from gateway.types import CampaignId


def config(lists: object) -> dict[str, Any]:
    return {
        "channels": [{"id": "email"}],
        "advertisers": [{"id": "acme"}],
        "suppression_lists": lists,
        "campaigns": [
            {"id": "one", "advertiser": "acme", "kind": "always_on"},
            {"id": "two", "advertiser": "acme", "kind": "always_on"},
        ],
        "partners": [
            {"id": "p1", "api_keys": ["sha256:" + "a" * 64], "channels": ["email"],
             "campaigns": ["one"]},
        ],
    }  # fmt: skip


def test_lists_and_the_network_ones_on_every_campaign() -> None:
    parsed = parse_config(
        config(
            [
                {"id": "optout", "name": "Opt-outs", "network": True},
                {"id": "litigators", "network": True, "reason": "suppressed.legal"},
                {"id": "customers"},
            ]
        )
    )
    assert parsed.suppression_lists["optout"] == SuppressionList("optout", "Opt-outs", True)
    assert parsed.suppression_lists["customers"] == SuppressionList("customers", "customers")
    for campaign in ("one", "two"):
        assert parsed.campaigns[CampaignId(campaign)].suppression == (
            SuppressionRule("list-optout", "suppressed", "on the Opt-outs list", ("optout",)),
            SuppressionRule(
                "list-litigators", "suppressed.legal", "on the litigators list", ("litigators",)
            ),
        )


def test_no_lists_by_default() -> None:
    data = config([])
    del data["suppression_lists"]
    parsed = parse_config(data)
    assert parsed.suppression_lists == {}
    assert parsed.campaigns[CampaignId("one")].suppression == ()


@pytest.mark.parametrize(
    ("lists", "issue"),
    [
        ([{"id": "Opt Out"}], ConfigIssue("suppression_lists[0].id", "'Opt Out' is not a valid "
         "suppression list id (use 1-63 of a-z 0-9 - _, starting with a letter or digit)")),
        ([{"id": "a"}, {"id": "a"}], ConfigIssue("suppression_lists[1].id",
         "duplicate suppression list id 'a' (first at suppression_lists[0])")),
        ([{"id": "a", "network": "yes"}], ConfigIssue("suppression_lists[0].network",
         "expected true or false, got 'yes'")),
        ([{"id": "a", "reason": "Suppressed!"}], ConfigIssue("suppression_lists[0].reason",
         "'Suppressed!' is not a reason code (dotted lower-case words, e.g. suppressed.optout)")),
        ([{"id": "a", "lists": []}], ConfigIssue("suppression_lists[0].lists", "unknown key")),
        ({"id": "a"}, ConfigIssue("suppression_lists",
         "expected a list of suppression lists, got a mapping")),
    ],
)  # fmt: skip
def test_every_mistake_is_named(lists: object, issue: ConfigIssue) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_config(config(lists))
    assert raised.value.issues == [issue]
