"""Rules in the running gateway: rejected answers list every failed rule, cost no store call,
carry the score when the campaign scores, and match the OpenAPI document."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import orjson
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012
from web.conftest import T0, GatewayFactory, network, person

from gateway.decision.model import DecisionOutcome, DecisionRequest
from gateway.storage.base import ForcedOutcome, ReserveResult
from gateway.storage.memory import MemoryStore
from gateway.types import AdvertiserId

RULES_DIR = Path(__file__).resolve().parents[2] / "rules"
UUID7 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
SPEC: dict[str, Any] = orjson.loads(
    resources.files("gateway.web").joinpath("openapi.json").read_bytes()
)
_REGISTRY: Registry[Any] = Registry().with_resource(
    "urn:spec", Resource.from_contents(SPEC, default_specification=DRAFT202012)
)
DECISION = Draft202012Validator(
    {"$ref": "urn:spec#/components/schemas/LeadDecision"}, registry=_REGISTRY
)


class CountingStore(MemoryStore):
    """The embedded store, counting the calls that decide leads."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: Counter[str] = Counter()

    async def reserve(self, items: Sequence[Any]) -> list[ReserveResult]:
        self.calls["reserve"] += len(items)
        return await super().reserve(items)

    async def decide(
        self, items: Sequence[tuple[DecisionRequest, ForcedOutcome | None]]
    ) -> list[DecisionOutcome | None]:
        self.calls["decide"] += len(items)
        return await super().decide(items)


def _config(campaign: str, packs: list[str], **settings: object) -> dict[str, Any]:
    config = network()
    config["rules_dir"] = str(RULES_DIR)
    for entry in config["campaigns"]:
        if entry["id"] == campaign:
            entry.update(rules=packs, **settings)
    return config


def _valid(answer: dict[str, Any]) -> None:
    errors = [error.message for error in DECISION.iter_errors(answer)]
    assert errors == [], errors


# A lead that fails five rules of default + fr-b2c + consent at once.
BAD = {
    "email": "info@yopmail.com",
    "first_name": "Test",
    "phone": "01 23 45 67 89",
    "birth_date": "2012-05-01",
    "consent": True,
}
BAD_REASONS = [
    "rule.email_not_disposable",
    "rule.email_not_role_account",
    "rule.no_placeholder_name",
    "rule.fr_mobile",
    "rule.adult",
    "rule.consent_fresh",
    "rule.consent_recorded",
    "rule.consent_certificate",
]
GOOD_CONSENT = {
    "given": True,
    "at": T0 - 600,
    "text": "J'accepte d'être recontacté.",
    "version": "v2",
    "certificate_id": "0F8E0F1A-0B6B-4C24-9D1E-5B7B5A6C9E11",
}


async def test_a_rejected_answer_lists_every_failed_rule_and_costs_no_store_call(
    make_embedded_gateway: GatewayFactory,
) -> None:
    store = CountingStore()
    gw = await make_embedded_gateway(
        _config("acme-always-on", ["default", "fr-b2c", "consent"]), store=store
    )
    answer = await gw.decide("p-mail", {**BAD, "campaign": "acme-always-on", "ref": "r-1"})
    assert answer["decision"] == "rejected"
    assert answer["reasons"] == BAD_REASONS
    assert UUID7.fullmatch(answer["lead_id"])
    assert answer["ref"] == "r-1"
    assert "score" not in answer  # these packs do not score
    _valid(answer)
    assert store.calls == Counter()
    assert store.streams == {}

    good = person(campaign="acme-always-on", postal_code="75011", consent=GOOD_CONSENT)
    accepted = await gw.decide("p-mail", good)
    assert (accepted["decision"], accepted["reasons"]) == ("accepted", [])
    _valid(accepted)
    assert store.calls["decide"] == 1


async def test_rule_rejections_in_a_batch_skip_the_store_for_those_leads_only(
    make_gateway: GatewayFactory,
) -> None:
    gw = await make_gateway(_config("nova-ten", ["default"]))
    leads = [
        person(campaign="nova-ten"),
        person(campaign="nova-ten", email="x@mailinator.com"),
        person(campaign="nova-ten", honeypot="https://spam.example"),
    ]
    reply = await gw.batch("p-mail", leads)
    assert reply.status == 200, reply.body
    body = reply.json()
    assert [(r["decision"], r["reasons"]) for r in body["results"]] == [
        ("accepted", []),
        ("rejected", ["rule.email_not_disposable"]),
        ("rejected", ["rule.honeypot_empty"]),
    ]
    assert body["counts"]["rejected"] == 2
    assert len(await gw.view.deliveries(AdvertiserId("nova"))) == 1


async def test_a_rejected_lead_is_not_remembered(make_gateway: GatewayFactory) -> None:
    gw = await make_gateway(_config("nova-ten", ["default"]))
    lead = person(campaign="nova-ten", first_name="asdf")
    answer = await gw.decide("p-mail", lead)
    assert answer["reasons"] == ["rule.no_placeholder_name"]
    assert await gw.view.key_names() == []
    # The same person with a real name is new to dedup and caps.
    fixed = await gw.decide("p-mail", {**lead, "first_name": "Camille"})
    assert fixed["decision"] == "accepted"


async def test_scoring_campaigns_answer_the_score_and_reject_below_the_minimum(
    make_gateway: GatewayFactory,
) -> None:
    gw = await make_gateway(_config("nova-ten", ["default", "b2b"], min_score=0))
    b2b = {"company": "Boulangerie Martin", "last_name": "Martin", "email": "luc@martin-pain.fr"}
    strong = await gw.decide(
        "p-mail",
        {**b2b, "campaign": "nova-ten", "phone": "+33 1 23 45 67 89", "job_title": "Gérant"},
    )
    assert (strong["decision"], strong["score"]) == ("accepted", 20)
    _valid(strong)

    weak = await gw.decide(
        "p-mail", {**b2b, "email": "luc2@martin-pain.fr", "campaign": "nova-ten"}
    )
    assert weak["decision"] == "rejected"
    assert weak["reasons"] == ["score.below_minimum", "rule.b2b_no_phone"]
    assert weak["score"] == -20
    _valid(weak)

    # Gates and the score together: every failed rule, then the score's reasons.
    both = await gw.decide(
        "p-mail", {"email": "a@gmail.com", "company": "n/a", "campaign": "nova-ten"}
    )
    assert both["reasons"] == [
        "rule.company_fields",
        "rule.no_free_mail",
        "score.below_minimum",
        "rule.b2b_no_phone",
        "rule.b2b_placeholder_company",
    ]
    assert both["score"] == -70
    assert len(await gw.view.deliveries(AdvertiserId("nova"))) == 1


async def test_duplicates_and_caps_still_carry_the_score(make_gateway: GatewayFactory) -> None:
    gw = await make_gateway(_config("nova-ten", ["b2b"], min_score=0))
    lead = {
        "company": "ACME", "last_name": "Roux", "email": "c.roux@acme-industrie.fr",
        "phone": "+33 4 78 42 10 20", "campaign": "nova-ten",
    }  # fmt: skip
    first = await gw.decide("p-mail", lead)
    again = await gw.decide("p-mail", lead)
    assert (first["decision"], first["score"]) == ("accepted", 10)
    assert (again["decision"], again["reasons"], again["score"]) == (
        "duplicate",
        ["duplicate.campaign"],
        10,
    )
    _valid(again)


async def test_rule_codes_are_counted_per_partner_in_the_metrics(
    make_embedded_gateway: GatewayFactory,
) -> None:
    gw = await make_embedded_gateway(_config("nova-ten", ["default"]))
    for _ in range(2):
        await gw.decide("p-coreg", person(campaign="nova-ten", email="noreply@acme.fr"))
    metrics = await gw.metrics()
    line = next(
        line
        for line in metrics.splitlines()
        if line.startswith("leadgate_lead_reasons_total{")
        and 'reason="rule.email_not_role_account"' in line
        and 'partner="p-coreg"' in line
    )
    assert line.endswith(" 2.0")


async def test_an_inactive_campaign_answers_inactive_before_any_rule(
    make_embedded_gateway: GatewayFactory,
) -> None:
    gw = await make_embedded_gateway(_config("acme-summer", ["default"]))
    answer = await gw.decide("p-mail", person(campaign="acme-summer", email="x@yopmail.com"))
    assert answer["reasons"] == ["campaign.inactive"]
