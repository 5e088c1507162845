"""Reading packs: every problem names the pack file, the rule (index and id) and the key; the
configuration names packs per campaign, and its checksum covers the packs' bytes."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.config.load import load_config, parse_config
from gateway.config.model import SuppressionRule, VelocityRule
from gateway.errors import ConfigError
from gateway.types import CampaignId

from .conftest import compile_pack


def _rule(**fields: object) -> dict[str, object]:
    return {"id": "adult", "message": "18 or older", **fields}


@pytest.mark.parametrize(
    ("rule", "problem"),
    [
        (_rule(require={"kind": "age", "min": -3}),
         "rules/p.yaml: rules[0] (adult).require.min: -3 must be at least 0"),
        (_rule(require={"kind": "age", "min": 30, "max": 18}),
         "rules/p.yaml: rules[0] (adult).require.max: 18 is below min 30"),
        (_rule(require={"kind": "age"}), "rules/p.yaml: rules[0] (adult).require: needs min, max"),
        (_rule(require={"kind": "regex", "field": "phone", "pattern": "+33("}),
         "rules/p.yaml: rules[0] (adult).require.pattern: not a valid regular expression"),
        (_rule(require={"kind": "regex", "field": "telephone", "pattern": "x"}),
         "rules/p.yaml: rules[0] (adult).require.field: 'telephone' is not a field"),
        (_rule(require={"kind": "agee", "min": 18}),
         "rules/p.yaml: rules[0] (adult).require.kind: 'agee' is not a rule kind"),
        (_rule(require={"kind": "age", "minimum": 18}),
         "rules/p.yaml: rules[0] (adult).require.minimum: unknown key (did you mean 'min'?)"),
        (_rule(require={"kind": "age", "min": 18}, colour="red"),
         "rules/p.yaml: rules[0] (adult).colour: unknown key"),
        (_rule(require={"kind": "age", "min": 18}, reject_if={"kind": "email_disposable"}),
         "rules/p.yaml: rules[0] (adult): a rule has exactly one of require, reject_if, when"),
        (_rule(), "rules/p.yaml: rules[0] (adult): a rule has exactly one of"),
        (_rule(when={"kind": "email_free_mail"}),
         "rules/p.yaml: rules[0] (adult).score: a when: rule needs a score"),
        (_rule(when={"kind": "email_free_mail"}, score=0),
         "rules/p.yaml: rules[0] (adult).score: expected whole points other than 0, got 0"),
        (_rule(require={"kind": "email_valid"}, score=5),
         "rules/p.yaml: rules[0] (adult).score: only a when: rule scores"),
        (_rule(require={"kind": "email_valid"}, reason="adult"),
         "rules/p.yaml: rules[0] (adult).reason: 'adult' is not a reason code like rule.adult"),
        ({"id": "adult", "require": {"kind": "email_valid"}},
         "rules/p.yaml: rules[0] (adult).message: every rule needs a message"),
        ({"id": "Adult-1", "message": "m", "require": {"kind": "email_valid"}},
         "rules/p.yaml: rules[0].id: 'Adult-1' is not a rule id"),
        (_rule(require={"kind": "in", "field": "country", "values": []}),
         "rules/p.yaml: rules[0] (adult).require.values: needs at least one value"),
        (_rule(require={"kind": "phone_type", "types": ["cell"]}),
         "rules/p.yaml: rules[0] (adult).require.types[0]: 'cell' is not one of mobile"),
        (_rule(require={"kind": "country", "countries": ["fr"]}),
         "rules/p.yaml: rules[0] (adult).require.countries[0]: 'fr' is not an ISO 3166-1"),
        (_rule(require={"kind": "consent_fresh", "max_age": "1 day"}),
         "rules/p.yaml: rules[0] (adult).require.max_age:"),
        (_rule(require={"kind": "date_range", "min": "31/12/1990"}),
         "rules/p.yaml: rules[0] (adult).require.min: '31/12/1990' is not a date like 1990-12-31"),
        (_rule(require={"kind": "honeypot_empty", "field": "email"}),
         "rules/p.yaml: rules[0] (adult).require.field: 'email' cannot be a honeypot"),
        (_rule(require={"all": [{"kind": "email_valid"}, {"kind": "age", "min": "x"}]}),
         "rules/p.yaml: rules[0] (adult).require.all[1].min: expected a whole number, got 'x'"),
        (_rule(require={"any": []}), "rules/p.yaml: rules[0] (adult).require.any: needs at least"),
        (_rule(require={"not": {"kind": "nope"}}),
         "rules/p.yaml: rules[0] (adult).require.not.kind: 'nope' is not a rule kind"),
        (_rule(require={"kind": "postal_code", "patterns": {"XX": "\\d+"}}),
         "rules/p.yaml: rules[0] (adult).require.patterns.XX: 'XX' is not an ISO 3166-1"),
        (_rule(suppression={"lists": ["customers"]}),
         "rules/p.yaml: rules[0] (adult).suppression.lists[0]: unknown suppression list"),
        (_rule(ip_velocity={"limit": 0, "window": "1h"}),
         "rules/p.yaml: rules[0] (adult).ip_velocity.limit: 0 must be at least 1"),
        (_rule(ip_velocity={"limit": 2**53, "window": "1h"}),
         "rules/p.yaml: rules[0] (adult).ip_velocity.limit: 9007199254740992 must be at most "
         "9,007,199,254,740,991"),
        (_rule(ip_velocity={"limit": 3}),
         "rules/p.yaml: rules[0] (adult).ip_velocity.window: required key is missing"),
    ],
)  # fmt: skip
def test_a_problem_names_the_file_the_rule_and_the_key(rule: dict[str, Any], problem: str) -> None:
    _, problems = compile_pack({"rules": [rule]})
    assert any(p.startswith(problem) for p in problems), problems


def test_every_problem_is_reported_at_once() -> None:
    _, problems = compile_pack(
        {
            "rules": [
                _rule(require={"kind": "age", "min": -1}),
                {"id": "adult", "message": "again", "require": {"kind": "email_valid"}},
                {"id": "b", "message": "m", "reject_if": {"kind": "regex", "field": "x"}},
            ],
            "colour": 1,
        }
    )
    assert problems == [
        "rules/p.yaml: colour: unknown key",
        "rules/p.yaml: rules[0] (adult).require.min: -1 must be at least 0",
        "rules/p.yaml: rules[1] (adult).id: rule id 'adult' is already used by rules[0]",
        "rules/p.yaml: rules[2] (b).reject_if.pattern: required key is missing",
        "rules/p.yaml: rules[2] (b).reject_if.field: 'x' is not a field (email, phone, first_name, "
        "last_name, postal_code, city, country, birth_date, company, ip, consent, ref, channel, "
        "partner, email.domain, email.local, consent.given, consent.at, consent.text, "
        "consent.version, consent.certificate_id, or extra.<name>)",
    ]


def test_store_decided_rules_compile_to_the_store_rule_types() -> None:
    pack, problems = compile_pack(
        {
            "rules": [
                {"id": "optout", "message": "opted out", "suppression": {"lists": ["optouts"]}},
                {"id": "ip_burst", "message": "too many", "reason": "rule.ip.burst",
                 "ip_velocity": {"limit": 5, "window": "1h"}},
            ]
        }
    )  # fmt: skip
    assert problems == []
    assert pack.rules == ()
    assert pack.suppression == (
        SuppressionRule("optout", "rule.optout", "opted out", ("optouts",)),
    )
    assert pack.velocity == (VelocityRule("ip_burst", "rule.ip.burst", "too many", 5, 3600),)


# --- in the configuration ------------------------------------------------------------------


def _config(tmp_path: Path, campaign: dict[str, Any], **root: Any) -> Path:
    data = {
        "channels": [{"id": "email"}],
        "advertisers": [{"id": "acme"}],
        "campaigns": [{"id": "c1", "advertiser": "acme", "kind": "always_on", **campaign}],
        "partners": [],
        **root,
    }
    path = tmp_path / "conf" / "leadgate.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _pack(directory: Path, name: str, rules: list[dict[str, Any]]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"rules": rules}, sort_keys=False))
    return path


ADULT = {"id": "adult", "message": "18+", "require": {"kind": "age", "min": 18}}
FREE = {"id": "free", "message": "free mail", "when": {"kind": "email_free_mail"}, "score": -5}


def test_a_campaign_combines_packs_from_rules_dir_next_to_the_config(tmp_path: Path) -> None:
    _pack(tmp_path / "conf" / "rules", "a", [ADULT])
    _pack(tmp_path / "conf" / "rules", "b", [FREE])
    path = _config(tmp_path, {"rules": ["a", "b"], "min_score": -1, "phone_region": "BE"})
    campaign = load_config(path).campaigns[CampaignId("c1")]
    assert campaign.rules is not None
    assert [(rule.pack, rule.id) for rule in campaign.rules.rules] == [
        ("a", "adult"),
        ("b", "free"),
    ]
    assert campaign.rules.packs == ("a", "b")
    assert campaign.rules.default_country == "BE"
    assert campaign.min_score == campaign.rules.min_score == -1.0


def test_a_relative_rules_dir_is_read_from_the_config_files_directory(tmp_path: Path) -> None:
    _pack(tmp_path / "packs", "a", [ADULT])
    path = _config(tmp_path, {"rules": ["a"]}, rules_dir="../packs")
    assert load_config(path).campaigns[CampaignId("c1")].rules is not None


def test_parse_config_reads_rules_dir_from_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _pack(tmp_path / "rules", "a", [ADULT])
    monkeypatch.chdir(tmp_path)
    data = yaml.safe_load(_config(tmp_path, {"rules": ["a"]}).read_text())
    assert parse_config(data).campaigns[CampaignId("c1")].rules is not None


def test_a_campaign_without_rules_has_none(tmp_path: Path) -> None:
    assert load_config(_config(tmp_path, {})).campaigns[CampaignId("c1")].rules is None


def test_pack_problems_are_config_issues_naming_the_pack_file(tmp_path: Path) -> None:
    pack = _pack(tmp_path / "conf" / "rules", "a", [{**ADULT, "require": {"kind": "age"}}])
    path = _config(tmp_path, {"rules": ["a", "missing", "a", "../x"]})
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    shown = [str(issue) for issue in raised.value.issues]
    missing = tmp_path / "conf" / "rules" / "missing.yaml"
    assert shown == [
        f"{pack}: rules[0] (adult).require: needs min, max or both",
        f"{missing}: cannot read rule pack: No such file or directory",
        "campaigns[0].rules[2]: 'a' is listed twice",
        "campaigns[0].rules[3]: '../x' is not a rule pack name (a file in rules_dir)",
    ]


def test_a_pack_with_a_yaml_error_names_the_line(tmp_path: Path) -> None:
    directory = tmp_path / "conf" / "rules"
    directory.mkdir(parents=True)
    (directory / "a.yaml").write_text("rules:\n  - id: x\n    id: y\n")
    with pytest.raises(ConfigError) as raised:
        load_config(_config(tmp_path, {"rules": ["a"]}))
    (issue,) = raised.value.issues
    assert issue.path == f"{directory / 'a.yaml'}:3:5"
    assert "duplicate key 'id'" in issue.message


def test_rule_ids_must_be_unique_across_a_campaigns_packs(tmp_path: Path) -> None:
    _pack(tmp_path / "conf" / "rules", "a", [ADULT])
    _pack(tmp_path / "conf" / "rules", "b", [ADULT])
    with pytest.raises(ConfigError, match=r"campaigns\[0\].rules\[1\]: rule id 'adult' is in "
                       r"packs 'a' and 'b'"):  # fmt: skip
        load_config(_config(tmp_path, {"rules": ["a", "b"]}))


@pytest.mark.parametrize(
    ("campaign", "problem"),
    [
        ({"min_score": 10}, "campaigns[0].min_score: needs a rule pack with scoring rules"),
        ({"rules": ["a"], "min_score": 10},
         "campaigns[0].min_score: needs a rule pack with scoring rules"),
        ({"rules": ["a"], "min_score": "ten"}, "campaigns[0].min_score: expected a number"),
        ({"rules": "a"}, "campaigns[0].rules: expected a list of rule pack names"),
    ],
)  # fmt: skip
def test_campaign_rule_settings_are_checked(
    tmp_path: Path, campaign: dict[str, Any], problem: str
) -> None:
    _pack(tmp_path / "conf" / "rules", "a", [ADULT])
    with pytest.raises(ConfigError) as raised:
        load_config(_config(tmp_path, campaign))
    assert any(str(i).startswith(problem) for i in raised.value.issues), raised.value.issues


def test_suppression_rules_name_the_configs_lists_and_reach_the_campaign(tmp_path: Path) -> None:
    rule = {"id": "optout", "message": "opted out", "suppression": {"lists": ["optouts"]}}
    velocity = {"id": "burst", "message": "m", "ip_velocity": {"limit": 3, "window": "10m"}}
    _pack(tmp_path / "conf" / "rules", "a", [rule, velocity])
    lists = [{"id": "optouts", "name": "Opt-outs"}]
    campaign = load_config(_config(tmp_path, {"rules": ["a"]}, suppression_lists=lists)).campaigns[
        CampaignId("c1")
    ]
    assert campaign.suppression == (
        SuppressionRule("optout", "rule.optout", "opted out", ("optouts",)),
    )
    assert campaign.velocity == (VelocityRule("burst", "rule.burst", "m", 3, 600),)
    assert campaign.rules is None  # nothing for the pure evaluator
    with pytest.raises(ConfigError, match=r"unknown suppression list 'optouts' \(known: none\)"):
        load_config(_config(tmp_path, {"rules": ["a"]}))


def test_the_checksum_changes_when_a_referenced_pack_changes(tmp_path: Path) -> None:
    pack = _pack(tmp_path / "conf" / "rules", "a", [ADULT])
    unused = _pack(tmp_path / "conf" / "rules", "unused", [ADULT])
    path = _config(tmp_path, {"rules": ["a"]})
    first = load_config(path).checksum
    assert first != hashlib.sha256(path.read_bytes()).hexdigest()
    assert load_config(path).checksum == first  # stable
    unused.write_text(unused.read_text() + "# edited\n")
    assert load_config(path).checksum == first  # a pack nobody names does not count
    pack.write_text(pack.read_text() + "# edited\n")
    assert load_config(path).checksum != first
    # Without packs the checksum stays the file's own digest.
    plain = _config(tmp_path, {})
    assert load_config(plain).checksum == hashlib.sha256(plain.read_bytes()).hexdigest()
