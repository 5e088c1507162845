"""``leadgate rules check``: verdicts for one lead, a summary over a JSONL file, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from gateway.cli.main import main

RULES_DIR = Path(__file__).resolve().parents[2] / "rules"
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "leadgate.yaml"
NOW = "2026-11-20T10:00:00+00:00"


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["rules", "check", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def _file(tmp_path: Path, name: str, content: object) -> str:
    path = tmp_path / name
    if name.endswith(".jsonl"):
        assert isinstance(content, list)
        path.write_text("".join(json.dumps(item) + "\n" for item in content))
    else:
        path.write_text(content if isinstance(content, str) else json.dumps(content))
    return str(path)


def _rows(out: str) -> dict[str, list[str]]:
    """Table rows by rule id (second column)."""
    rows = {}
    for line in out.splitlines():
        cells = line.split()
        if len(cells) > 3 and cells[0] in ("default", "fr-b2c", "b2b", "consent"):
            rows[cells[1]] = cells
    return rows


def test_one_lead_prints_every_rules_verdict_and_the_decision(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lead = _file(tmp_path, "lead.json", {"email": "info@yopmail.com", "first_name": "Marie",
                                         "phone": "06 12 34 56 78"})  # fmt: skip
    code, out, _ = _run(
        capsys, str(RULES_DIR / "default.yaml"), str(RULES_DIR / "fr-b2c.yaml"), "--lead", lead
    )
    assert code == 1
    rows = _rows(out)
    assert list(rows) == [
        "email_not_disposable", "email_no_typo", "email_not_role_account", "no_placeholder_name",
        "honeypot_empty", "country_fr", "fr_mobile", "fr_postal_code", "adult",
        "birth_date_plausible",
    ]  # fmt: skip
    failed = [rule for rule, cells in rows.items() if cells[3] == "FAIL"]
    assert failed == ["email_not_disposable", "email_not_role_account"]
    assert "decision: rejected: rule.email_not_disposable, rule.email_not_role_account" in out
    assert "score" not in out  # no scoring rule


def test_a_passing_lead_exits_0_and_shows_the_score(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lead = _file(tmp_path, "lead.json", {
        "email": "luc@martin-pain.fr", "last_name": "Martin", "company": "Boulangerie Martin",
        "phone": "+33 1 23 45 67 89", "job_title": "Gérant",
    })  # fmt: skip
    code, out, _ = _run(capsys, str(RULES_DIR / "b2b.yaml"), "--lead", lead, "--min-score", "0")
    assert code == 0, out
    assert _rows(out)["b2b_landline"][4] == "+10"
    assert _rows(out)["b2b_no_phone"][4] == "0"
    assert "score: 20 (minimum 0)" in out
    assert "decision: passes the rules" in out


def test_below_the_minimum_score_is_a_rejection(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lead = _file(tmp_path, "lead.json", {"email": "a@acme.fr", "company": "ACME",
                                         "last_name": "Roux"})  # fmt: skip
    code, out, _ = _run(capsys, str(RULES_DIR / "b2b.yaml"), "--lead", lead, "--min-score", "0")
    assert code == 1
    assert "score: -20 (minimum 0)" in out
    assert "decision: rejected: score.below_minimum, rule.b2b_no_phone" in out


def test_an_invalid_lead_shows_the_422_problems(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lead = _file(tmp_path, "lead.json", {"email": "not-an-email", "phone": "12"})
    code, out, _ = _run(capsys, str(RULES_DIR / "default.yaml"), "--lead", lead)
    assert code == 1
    assert "invalid lead" in out
    assert "  email: not a valid email address" in out
    assert "  phone: not a valid phone number" in out


def test_the_campaign_of_a_config_normalizes_the_lead(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # novabank-credit requires email, phone and last_name.
    lead = _file(tmp_path, "lead.json", {"email": "marie@gmail.com"})
    code, out, _ = _run(
        capsys, str(RULES_DIR / "default.yaml"), "--lead", lead,
        "--config", str(EXAMPLE), "--campaign", "novabank-credit",
    )  # fmt: skip
    assert code == 1
    assert "  phone: required" in out
    assert "  last_name: required" in out


def test_consent_freshness_is_judged_at_now(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    consent = {"given": True, "at": "2026-11-20T08:00:00+00:00", "text": "Oui", "version": "1",
               "certificate_id": "abc"}  # fmt: skip
    lead = _file(tmp_path, "lead.json", {"email": "m@acme.fr", "consent": consent})
    pack = str(RULES_DIR / "consent.yaml")
    assert _run(capsys, pack, "--lead", lead, "--now", NOW)[0] == 0
    code, out, _ = _run(capsys, pack, "--lead", lead, "--now", "2026-11-21T09:00:00+00:00")
    assert code == 1
    assert "decision: rejected: rule.consent_fresh" in out


def test_a_jsonl_file_gives_how_many_leads_fail_each_rule(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    leads = [
        {"email": "a@yopmail.com"},
        {"email": "b@yopmail.com", "first_name": "test"},
        {"email": "info@acme.fr"},
        {"email": "camille@acme.fr"},
        {"email": "broken"},
        ["not", "an", "object"],
    ]
    code, out, _ = _run(capsys, str(RULES_DIR / "default.yaml"), "--leads",
                        _file(tmp_path, "leads.jsonl", leads))  # fmt: skip
    assert code == 0
    assert "leads: 6  invalid (422): 2  rejected by rules: 3  passing: 1" in out
    counts = {rule: (cells[4], cells[5]) for rule, cells in _rows(out).items()}
    assert counts == {
        "email_not_disposable": ("2", "50.0%"),
        "email_no_typo": ("0", "0.0%"),
        "email_not_role_account": ("1", "25.0%"),
        "no_placeholder_name": ("1", "25.0%"),
        "honeypot_empty": ("0", "0.0%"),
    }
    assert "invalid leads by field: " in out
    assert "email 1" in out
    assert "(not a JSON object) 1" in out


def test_a_broken_pack_is_refused_with_its_file_and_rule(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pack = tmp_path / "mine.yaml"
    pack.write_text(yaml.safe_dump({"rules": [
        {"id": "adult", "message": "m", "require": {"kind": "age", "min": 30, "max": 18}},
    ]}))  # fmt: skip
    lead = _file(tmp_path, "lead.json", {"email": "a@acme.fr"})
    code, _, err = _run(capsys, str(pack), "--lead", lead)
    assert code == 2
    assert f"{pack}: rules[0] (adult).require.max: 18 is below min 30" in err


def test_packs_with_the_same_rule_id_cannot_be_combined(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lead = _file(tmp_path, "lead.json", {"email": "a@acme.fr"})
    default = str(RULES_DIR / "default.yaml")
    code, _, err = _run(capsys, default, default, "--lead", lead)
    assert code == 2
    assert "rule id 'email_not_disposable' is in packs 'default' and 'default'" in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--campaign", "x"], "--campaign needs --config"),
        (["--now", "yesterday"], "--now 'yesterday' is not an ISO 8601 date-time"),
        (["--config", str(EXAMPLE), "--campaign", "nope"], "no campaign 'nope'"),
    ],
)
def test_usage_problems_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    lead = _file(tmp_path, "lead.json", {"email": "a@acme.fr"})
    code, _, err = _run(capsys, str(RULES_DIR / "default.yaml"), "--lead", lead, *argv)
    assert code == 2
    assert message in err


def test_a_missing_lead_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys, str(RULES_DIR / "default.yaml"), "--lead", str(tmp_path / "x"))
    assert code == 2
    assert "cannot read" in err
