"""Properties of the pure evaluator, over generated leads and generated rule sets.

- composition follows boolean logic: ``all``, ``any``, ``not`` and De Morgan;
- a lead's score is the sum of the points of the scoring rules whose condition holds;
- every failed rule is reported (not only the first), and only those;
- evaluation never raises, whatever the lead carries.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.config.reader import Reader
from gateway.leads.lead import Consent, Lead
from gateway.rules.model import Action, Env, Verdict
from gateway.rules.pack import combine_packs, read_pack
from gateway.types import CampaignId

from .conftest import NOW, condition_rule, rule_set

RULES_DIR = Path(__file__).resolve().parents[2] / "rules"

#: Atomic conditions of every family, compiled once.
ATOMS: list[dict[str, Any]] = [
    {"kind": "email_free_mail"},
    {"kind": "email_disposable"},
    {"kind": "email_role_account"},
    {"kind": "present", "fields": ["phone"]},
    {"kind": "absent", "fields": ["company"]},
    {"kind": "age", "min": 18},
    {"kind": "age", "max": 30, "if_absent": True},
    {"kind": "regex", "field": "first_name", "pattern": "[A-Z].*"},
    {"kind": "in", "field": "country", "values": ["FR", "BE"]},
    {"kind": "consent_given"},
    {"kind": "consent_fresh", "max_age": "24h"},
    {"kind": "honeypot_empty", "field": "website"},
    {"kind": "phone_type", "types": ["mobile"]},
    {"kind": "length", "field": "last_name", "max": 5},
]
TESTS = [condition_rule(atom).test for atom in ATOMS]

emails = st.one_of(
    st.none(),
    st.sampled_from(
        ["marie@gmail.com", "info@acme.fr", "x@mailinator.com", "jo@gmial.com", "a@acme.fr"]
    ),
    st.text(max_size=30),
)
phones = st.one_of(
    st.none(),
    st.sampled_from(["+33612345678", "+33123456789", "+14155552671"]),
    st.text(max_size=20),
)
texts = st.one_of(st.none(), st.text(max_size=20))
birth_dates = st.one_of(
    st.none(),
    st.dates().map(lambda d: d.isoformat()),
    st.text(max_size=12),
)
consents = st.one_of(
    st.none(),
    st.builds(
        Consent,
        given=st.booleans(),
        at=st.one_of(st.none(), st.floats(min_value=946_684_800.0, max_value=NOW + 86_400)),
        text=texts,
        version=texts,
        certificate_id=texts,
    ),
)
leads = st.builds(
    Lead,
    campaign=st.just(CampaignId("c")),
    channel=st.none(),
    ref=texts,
    test=st.booleans(),
    email=emails,
    phone=phones,
    first_name=texts,
    last_name=texts,
    postal_code=texts,
    city=texts,
    country=st.one_of(st.none(), st.sampled_from(["FR", "BE", "DE", "JP"])),
    birth_date=birth_dates,
    company=texts,
    ip=st.none(),
    consent=consents,
    extra=st.dictionaries(
        st.sampled_from(["website", "honeypot", "job_title", "sub_id"]), st.text(max_size=10)
    ),
    identities=st.just({}),
)
atoms = st.integers(min_value=0, max_value=len(ATOMS) - 1)


def _env(lead: Lead) -> Env:
    return Env(lead, NOW, "email", "p-mail", "FR")


@given(lead=leads, a=atoms, b=atoms)
def test_all_any_not_follow_boolean_logic(lead: Lead, a: int, b: int) -> None:
    env = _env(lead)
    x, y = TESTS[a](env), TESTS[b](env)
    both = condition_rule({"all": [ATOMS[a], ATOMS[b]]}).test(env)
    either = condition_rule({"any": [ATOMS[a], ATOMS[b]]}).test(env)
    negated = condition_rule({"not": ATOMS[a]}).test(env)
    de_morgan = condition_rule({"any": [{"not": ATOMS[a]}, {"not": ATOMS[b]}]}).test(env)
    assert both is (x and y)
    assert either is (x or y)
    assert negated is (not x)
    assert condition_rule({"not": {"all": [ATOMS[a], ATOMS[b]]}}).test(env) is de_morgan


@settings(max_examples=60)
@given(
    lead=leads,
    rules=st.lists(
        st.tuples(
            atoms,
            st.sampled_from(["require", "reject_if", "when"]),
            st.integers(-50, 50).filter(bool),
        ),
        min_size=1,
        max_size=8,
    ),
    min_score=st.one_of(st.none(), st.integers(-60, 60)),
)
def test_score_is_the_sum_of_matching_rules_and_every_failure_is_reported(
    lead: Lead, rules: list[tuple[int, str, int]], min_score: int | None
) -> None:
    specs: list[dict[str, Any]] = []
    for i, (atom, action, points) in enumerate(rules):
        spec: dict[str, Any] = {"id": f"r{i}", "message": "m", action: ATOMS[atom]}
        if action == "when":
            spec["score"] = points
        specs.append(spec)
    scoring = any(action == "when" for _, action, _ in rules)
    compiled = rule_set(specs, min_score=min_score if scoring else None)
    verdict = compiled.evaluate(lead, NOW, channel="email", partner="p-mail")

    env = _env(lead)
    held = [TESTS[atom](env) for atom, _, _ in rules]
    expected_failed = [
        f"r{i}"
        for i, ((_, action, _), ok) in enumerate(zip(rules, held, strict=True))
        if (action == "require" and not ok) or (action == "reject_if" and ok)
    ]
    matched = [
        (f"r{i}", points)
        for i, ((_, action, points), ok) in enumerate(zip(rules, held, strict=True))
        if action == "when" and ok
    ]
    assert [rule.id for rule in verdict.failed] == expected_failed
    assert [(rule.id, rule.points) for rule in verdict.scored] == matched
    if scoring:
        assert verdict.score == sum(points for _, points in matched)
        below = min_score is not None and verdict.score < min_score
        assert verdict.below_minimum is below
    else:
        assert verdict.score is None
    assert verdict.rejected is (bool(expected_failed) or verdict.below_minimum)
    codes = [f"rule.{rule_id}" for rule_id in expected_failed]
    if verdict.below_minimum:
        codes += ["score.below_minimum"] + [f"rule.{rid}" for rid, p in matched if p < 0]
    assert list(verdict.reasons) == codes
    # The explanation agrees with the verdict, rule by rule.
    explained = compiled.explain(lead, NOW, channel="email", partner="p-mail")
    assert [ok for _, ok in explained] == held


def _shipped() -> Any:
    r = Reader()
    packs = [(p.name, read_pack(r, p)) for p in sorted(RULES_DIR.glob("*.yaml"))]
    combined = combine_packs(
        r, [(at, p) for at, p in packs if p is not None], default_country="FR", min_score=0,
        min_score_path="min_score",
    )  # fmt: skip
    assert r.issues == []
    return combined.rule_set


SHIPPED = _shipped()


@settings(max_examples=300)
@given(lead=leads, now_s=st.floats(min_value=946_684_800.0, max_value=4_102_444_800.0))
def test_evaluation_never_raises_on_any_lead(lead: Lead, now_s: float) -> None:
    verdict = SHIPPED.evaluate(lead, now_s, channel=None, partner=None)
    assert isinstance(verdict, Verdict)
    assert len(set(verdict.reasons)) == len(verdict.reasons)
    assert all(rule.action is not Action.SCORE for rule in verdict.failed)
