"""Helpers of the rule tests: leads normalized as the intake does, and packs built from dicts.

Leads go through the real ``parse_lead`` in a stand-in campaign (French phone region, nothing
required), so rules see exactly the values they see in the gateway.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from web.conftest import make_embedded_gateway, make_gateway  # noqa: F401 (fixtures, by name)

from gateway.config.model import Campaign, CampaignKind
from gateway.config.reader import Reader
from gateway.leads.lead import Lead
from gateway.leads.parse import parse_lead
from gateway.rules.model import Env, Rule, RuleSet
from gateway.rules.pack import Pack, combine_packs, parse_pack
from gateway.types import AdvertiserId, CampaignId

#: Friday 2026-11-20 10:00 UTC: the instant every rule test evaluates at.
NOW = datetime(2026, 11, 20, 10, tzinfo=UTC).timestamp()
HOUR = 3600.0
CAMPAIGN = Campaign(
    id=CampaignId("c"),
    advertiser=AdvertiserId("a"),
    name="c",
    kind=CampaignKind.ALWAYS_ON,
    timezone=ZoneInfo("UTC"),
    required_fields=(),
    phone_region="FR",
)


def make_lead(**fields: object) -> Lead:
    """A lead normalized by the gateway's parser (an email is added unless one is given)."""
    data: dict[str, object] = {"campaign": "c", **fields}
    if "email" not in data and "phone" not in data:
        data["email"] = "camille.martin@example.com"
    return parse_lead(data, {CAMPAIGN.id: CAMPAIGN}, now_s=NOW)


def compile_pack(data: object, name: str = "p") -> tuple[Pack, list[str]]:
    """The pack compiled from ``data`` and every problem, as ``str(issue)``."""
    r = Reader()
    pack = parse_pack(r, data, name=name, shown=f"rules/{name}.yaml", known_lists={"optouts"})
    return pack, [str(issue) for issue in r.issues]


def rule_set(rules: Sequence[Mapping[str, Any]], *, min_score: float | None = None) -> RuleSet:
    pack, problems = compile_pack({"rules": list(rules)})
    assert problems == []
    r = Reader()
    combined = combine_packs(
        r, [("p", pack)], default_country="FR", min_score=min_score, min_score_path="min_score"
    )
    assert r.issues == []
    assert combined.rule_set is not None
    return combined.rule_set


def condition_rule(condition: Mapping[str, Any]) -> Rule:
    """A ``require:`` rule of ``condition``; its ``test`` is the compiled predicate."""
    pack, problems = compile_pack({"rules": [{"id": "r", "message": "m", "require": condition}]})
    assert problems == [], problems
    (rule,) = pack.rules
    return rule


def holds(condition: Mapping[str, Any], lead: Lead, *, now_s: float = NOW) -> bool:
    """Whether ``condition`` is true of ``lead`` (in a French campaign)."""
    result = condition_rule(condition).test(Env(lead, now_s, "email", "p-mail", "FR"))
    assert isinstance(result, bool)
    return result
