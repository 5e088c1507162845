"""``leadgate check-config`` and ``leadgate hash-key``: exit codes and what the user reads."""

from __future__ import annotations

import hashlib
import io
import re
from pathlib import Path
from typing import Final

import pytest
from processes import run_leadgate

from gateway.config.check import check_config, hash_api_key, new_api_key
from gateway.config.load import load_config, parse_config

EXAMPLE: Final = Path(__file__).parents[2] / "examples" / "leadgate.yaml"


def _check(path: Path | str) -> tuple[int, list[str]]:
    out = io.StringIO()
    code = check_config(str(path), out)
    return code, out.getvalue().splitlines()


def test_a_valid_file_prints_a_summary_and_exits_0() -> None:
    code, lines = _check(EXAMPLE)
    checksum = load_config(EXAMPLE).checksum  # of the file and the rule packs it names
    assert code == 0
    assert lines == [f"OK: 4 partners, 7 campaigns, 5 advertisers, 8 channels, checksum {checksum}"]


def test_singular_counts(tmp_path: Path) -> None:
    path = tmp_path / "one.yaml"
    path.write_text(
        "channels: [{id: email}]\n"
        "advertisers: [{id: acme}]\n"
        "campaigns: [{id: c, advertiser: acme, kind: always_on}]\n"
        f"partners: [{{id: p, api_keys: ['{hash_api_key('k')}'], channels: [email],"
        " campaigns: [c]}]\n"
    )
    code, lines = _check(path)
    assert code == 0
    assert lines[0].startswith("OK: 1 partner, 1 campaign, 1 advertiser, 1 channel, checksum ")


def test_an_invalid_file_prints_every_issue_one_per_line_and_exits_1(tmp_path: Path) -> None:
    (tmp_path / "rules").symlink_to(EXAMPLE.parents[1] / "rules")  # its rules_dir: ../rules
    (tmp_path / "examples").mkdir()
    path = tmp_path / "examples" / "bad.yaml"
    text = EXAMPLE.read_text(encoding="utf-8")
    for good, bad in [
        ("window: day, limit: 500", "window: 1x, limit: 500"),
        ("required: [email, phone, last_name]", "required: [email, phone, last_name, fax]"),
        ("campaigns: [acme-always-on, novabank-credit]", "campaigns: abc"),
    ]:
        assert text.count(good) == 1
        text = text.replace(good, bad)
    path.write_text(text, encoding="utf-8")
    code, lines = _check(path)
    assert code == 1
    assert lines == [
        "campaigns[0].caps[0].window: '1x' is not a duration like 30m, 1h, 1d,"
        " nor one of hour, day, week, month",
        "campaigns[3].required[3]: 'fax' is not one of email, phone, first_name, last_name,"
        " postal_code, city, country, birth_date, company, ip, consent",
        "partners[3].campaigns: expected a list of campaign ids, got 'abc'",
    ]


def test_a_missing_file_exits_1_and_names_it(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    code, lines = _check(path)
    assert code == 1
    assert lines == [f"{path}: cannot read: No such file or directory"]


def test_a_directory_exits_1(tmp_path: Path) -> None:
    code, lines = _check(tmp_path)
    assert code == 1
    assert lines[0].startswith(f"{tmp_path}: cannot read")


def test_a_yaml_syntax_error_exits_1_with_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("channels: []\nadvertisers: [\ncampaigns: []\n: x\n")
    code, lines = _check(path)
    assert code == 1
    assert len(lines) == 1
    assert re.match(rf"{re.escape(str(path))}:\d+:\d+: YAML syntax error", lines[0])


def test_an_empty_file_exits_1_and_names_it(tmp_path: Path) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text("# nothing yet\n")
    code, lines = _check(path)
    assert code == 1
    assert lines == [
        f"{path}: expected a mapping with channels, advertisers, campaigns and partners,"
        " got nothing"
    ]


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        # echo -n demo-mailfox-key | sha256sum
        ("demo-mailfox-key", "9fd268cfdc37c44891fc4fb23408a0eae39b587d18636e32ecf2786cdb187ae4"),
        ("é", hashlib.sha256("é".encode()).hexdigest()),
    ],
)
def test_hash_api_key(key: str, expected: str) -> None:
    assert hash_api_key(key) == f"sha256:{expected}"


def test_an_empty_key_cannot_be_hashed() -> None:
    with pytest.raises(ValueError, match="cannot be empty"):
        hash_api_key("")


def test_a_new_key_is_random_and_its_hash_is_accepted_by_the_config() -> None:
    keys = {new_api_key() for _ in range(20)}
    assert len(keys) == 20
    key = keys.pop()
    assert len(key) >= 43  # 32 random bytes, base64url
    config = parse_config(
        {
            "channels": [{"id": "email"}],
            "advertisers": [{"id": "a"}],
            "campaigns": [],
            "partners": [
                {"id": "p", "api_keys": [hash_api_key(key)], "channels": ["email"], "campaigns": []}
            ],
        }
    )
    assert next(iter(config.partners.values())).api_key_hashes == (
        hashlib.sha256(key.encode()).hexdigest(),
    )


SHORT_TOKEN = "admin-token-too-short"


def test_the_environment_is_checked_as_serve_checks_it() -> None:
    out = io.StringIO()
    assert check_config(str(EXAMPLE), out, {"LEADGATE_ADMIN_TOKEN": SHORT_TOKEN}) == 1
    (line,) = out.getvalue().splitlines()
    assert line.startswith("LEADGATE_ADMIN_TOKEN: at least 32 characters")
    assert SHORT_TOKEN not in line
    good = {"LEADGATE_ADMIN_TOKEN": "a" * 32, "LEADGATE_PORT": "8080"}
    assert check_config(str(EXAMPLE), io.StringIO(), good) == 0


def test_check_config_refuses_what_serve_refuses() -> None:
    """The commands, as ops run them: one validation, so never OK from one and a refusal
    from the other."""
    env = {"LEADGATE_ADMIN_TOKEN": SHORT_TOKEN}
    checked = run_leadgate("check-config", str(EXAMPLE), env=env)
    served = run_leadgate("serve", "--config", str(EXAMPLE), "--port", "0", env=env)
    assert checked.returncode == 1, checked.stdout
    assert served.returncode != 0, served.stderr
    for output in (checked.stdout, served.stderr):
        assert "LEADGATE_ADMIN_TOKEN: at least 32 characters" in output
        assert SHORT_TOKEN not in output
    assert run_leadgate("check-config", str(EXAMPLE), env={}).returncode == 0
