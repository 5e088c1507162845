"""The shipped packs load and do what rules/README.md says; every example there compiles and
every rule kind is documented."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from gateway.config.reader import Reader
from gateway.rules.conditions import KINDS
from gateway.rules.model import RuleSet
from gateway.rules.pack import Pack, combine_packs, parse_pack, read_pack

from .conftest import HOUR, NOW, make_lead

RULES_DIR = Path(__file__).resolve().parents[2] / "rules"
README = (RULES_DIR / "README.md").read_text(encoding="utf-8")
PACKS = ("default", "fr-b2c", "b2b", "consent")


def _load(name: str) -> Pack:
    r = Reader()
    pack = read_pack(r, RULES_DIR / f"{name}.yaml")
    assert r.issues == [], r.issues
    assert pack is not None
    return pack


def _rule_set(pack: Pack, min_score: float | None = None) -> RuleSet:
    r = Reader()
    combined = combine_packs(
        r, [(pack.path, pack)], default_country="FR", min_score=min_score, min_score_path="m"
    )
    assert r.issues == []
    assert combined.rule_set is not None
    return combined.rule_set


def test_the_shipped_packs_are_the_documented_ones() -> None:
    assert sorted(p.stem for p in RULES_DIR.glob("*.yaml")) == sorted(PACKS)


def _documented_rules(pack: str) -> list[str]:
    """The rule ids in the first column of the table under ``### `<pack>.yaml```."""
    section = README.split(f"### `{pack}.yaml`", 1)[1].split("\n### ", 1)[0]
    return re.findall(r"^\| `([a-z0-9_]+)` \|", section, re.M)


@pytest.mark.parametrize("name", PACKS)
def test_each_pack_loads_and_the_readme_lists_its_rules_in_order(name: str) -> None:
    pack = _load(name)
    assert pack.description
    assert [rule.id for rule in pack.rules] == _documented_rules(name)


CONSENT = {
    "given": True,
    "at": NOW - HOUR,
    "text": "J'accepte d'être recontacté.",
    "version": "v3",
    "certificate_id": "https://cert.trustedform.com/0123456789abcdef0123456789abcdef01234567",
}
GOOD: dict[str, dict[str, object]] = {
    "default": {"email": "marie.dupont@gmail.com", "first_name": "Marie", "last_name": "Dupont"},
    "fr-b2c": {"email": "marie@gmail.com", "phone": "06 12 34 56 78", "postal_code": "75011",
               "birth_date": "1988-04-23"},
    "b2b": {"email": "luc@martin-pain.fr", "first_name": "Luc", "last_name": "Martin",
            "company": "Boulangerie Martin", "phone": "+33 1 23 45 67 89"},
    "consent": {"email": "marie@gmail.com", "consent": CONSENT},
}  # fmt: skip
#: For each documented rule: what to change in the pack's good lead to fail (or score) it.
FAILING: dict[str, dict[str, dict[str, object]]] = {
    "default": {
        "email_not_disposable": {"email": "marie@yopmail.com"},
        "email_no_typo": {"email": "marie.dupont@gnail.com"},
        "email_not_role_account": {"email": "contact@acme.fr"},
        "no_placeholder_name": {"last_name": "TOTO"},
        "honeypot_empty": {"honeypot": "http://spam.example"},
    },
    "fr-b2c": {
        "country_fr": {"country": "BE"},
        "fr_mobile": {"phone": "01 23 45 67 89"},
        # French codes that are not 5 digits are refused (422) before any rule: what this rule
        # catches is another country's code, which country_fr catches too.
        "fr_postal_code": {"country": "BE", "postal_code": "1000"},
        "adult": {"birth_date": "2010-01-01"},
        "birth_date_plausible": {"birth_date": "1920-01-01"},
    },
    "b2b": {
        "company_fields": {"company": None},
        "no_free_mail": {"email": "luc.martin@orange.fr"},
        "names_are_letters": {"first_name": "Luc2"},
        "b2b_landline": {},  # scores on the good lead itself
        "b2b_job_title": {"job_title": "Gérant"},
        "b2b_no_phone": {"phone": None},
        "b2b_placeholder_company": {"company": "Particulier"},
    },
    "consent": {
        "consent_given": {"consent": {**CONSENT, "given": False}},
        "consent_fresh": {"consent": {**CONSENT, "at": NOW - 25 * HOUR}},
        "consent_recorded": {"consent": {**CONSENT, "version": None}},
        "consent_certificate": {"consent": {**CONSENT, "certificate_id": None}},
    },
}
#: Rules that cannot fail alone.
ALSO = {"fr_postal_code": ("country_fr",)}


@pytest.mark.parametrize("name", PACKS)
def test_the_good_lead_passes_and_each_rule_catches_what_the_readme_says(name: str) -> None:
    rules = _rule_set(_load(name))
    assert set(FAILING[name]) == {rule.id for rule in rules.rules}
    good = rules.evaluate(make_lead(**GOOD[name]), NOW)
    assert good.failed == ()
    for rule in rules.rules:
        lead = make_lead(**{**GOOD[name], **FAILING[name][rule.id]})
        verdict = rules.evaluate(lead, NOW)
        if rule.points:
            assert rule.id in [r.id for r in verdict.scored], rule.id
            assert verdict.failed == ()
        else:
            expected = {rule.id, *ALSO.get(rule.id, ())}
            assert [r.id for r in verdict.failed] == [
                r.id for r in rules.rules if r.id in expected
            ], (rule.id, verdict.failed)


def test_b2b_with_min_score_zero_rejects_a_lead_without_phone_unless_made_up_for() -> None:
    rules = _rule_set(_load("b2b"), min_score=0)
    no_phone = make_lead(**{**GOOD["b2b"], "phone": None})
    verdict = rules.evaluate(no_phone, NOW)
    assert (verdict.score, verdict.reasons) == (-20, ("score.below_minimum", "rule.b2b_no_phone"))
    titled = make_lead(**{**GOOD["b2b"], "phone": None, "job_title": "CTO"})
    assert rules.evaluate(titled, NOW).score == -10
    assert rules.evaluate(make_lead(**GOOD["b2b"]), NOW).score == 10


def test_fr_b2c_judges_only_the_values_that_are_sent() -> None:
    rules = _rule_set(_load("fr-b2c"))
    assert rules.evaluate(make_lead(email="a@acme.fr"), NOW).failed == ()


def _yaml_blocks() -> list[str]:
    return re.findall(r"```yaml\n(.*?)```", README, re.S)


def test_every_rule_example_in_the_readme_compiles() -> None:
    compiled = 0
    for block in _yaml_blocks():
        data = yaml.safe_load(block)
        if isinstance(data, list):
            data = {"rules": data}
        if not (isinstance(data, dict) and "rules" in data):
            continue  # a configuration excerpt or a bare condition
        r = Reader()
        pack = parse_pack(r, data, name="readme", shown="README")
        assert r.issues == [], (block, r.issues)
        compiled += len(pack.rules) + len(pack.suppression) + len(pack.velocity)
    assert compiled >= len(KINDS)


def test_every_kind_is_documented_with_an_example() -> None:
    examples = "\n".join(_yaml_blocks())
    for kind in KINDS:
        assert re.search(rf"^### .*`{kind}`", README, re.M), kind
        assert f"kind: {kind}" in examples, kind


def test_a_pack_file_of_the_wrong_shape_is_refused_with_its_name(tmp_path: Path) -> None:
    path = tmp_path / "odd.yaml"
    path.write_text("- id: x\n")
    r = Reader()
    read_pack(r, path)
    assert [str(i) for i in r.issues] == [
        f"{path}: expected a rule pack (a mapping with rules), got a list"
    ]
