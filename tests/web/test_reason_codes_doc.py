"""docs/reason-codes.md tells the truth about the codes a live gateway answers: each code
comes with the decision the table gives it."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from .conftest import GatewayFactory, network, person

DOC = Path(__file__).resolve().parents[2] / "docs" / "reason-codes.md"
ROW = re.compile(r"^\| (?P<codes>[^|]+) \| `(?P<decision>[a-z]+)` \|")


def documented() -> list[tuple[re.Pattern[str], str]]:
    """(pattern of a code, its decision) for every row of the reason-code table; a ``*`` or
    a ``<placeholder>`` in a code stands for any dotted words."""
    table = []
    for line in DOC.read_text(encoding="utf-8").splitlines():
        match = ROW.match(line)
        if match is None:
            continue
        for code in re.findall(r"`([^`]+)`", match["codes"]):
            pattern = re.sub(r"\\\*|<[^>]+>", r"[a-z0-9_.]+", re.escape(code))
            table.append((re.compile(pattern), match["decision"]))
    return table


def decisions_for(code: str) -> set[str]:
    return {decision for pattern, decision in documented() if pattern.fullmatch(code)}


def with_ip_velocity(tmp_path: Path) -> dict[str, Any]:
    (tmp_path / "velocity.yaml").write_text(
        "rules:\n"
        "  - id: ip_burst\n"
        "    message: Too many leads from one IP address\n"
        "    ip_velocity: {limit: 2, window: 1h}\n"
    )
    config = network()
    config["rules_dir"] = str(tmp_path)
    for campaign in config["campaigns"]:
        if campaign["id"] == "acme-always-on":
            campaign["rules"] = ["velocity"]
    return config


async def test_ip_velocity_answers_capped_as_documented(
    make_gateway: GatewayFactory, tmp_path: Path
) -> None:
    gw = await make_gateway(with_ip_velocity(tmp_path))
    answers = [
        await gw.decide("p-mail", person(campaign="acme-always-on", ip="203.0.113.7"))
        for _ in range(3)
    ]
    assert [a["decision"] for a in answers] == ["accepted", "accepted", "capped"]
    assert answers[2]["reasons"] == ["rule.ip_burst"]
    assert decisions_for("rule.ip_burst") >= {"capped"}
    # A dashboard grouping capped answers by code prefix is told to expect this one.
    text = DOC.read_text(encoding="utf-8")
    assert "only `cap.*` codes" not in text


def test_every_fixed_code_has_one_decision() -> None:
    for code, decision in [
        ("duplicate.advertiser", "duplicate"),
        ("cap.campaign.day", "capped"),
        ("cap.person", "capped"),
        ("campaign.inactive", "rejected"),
        ("score.below_minimum", "rejected"),
    ]:
        assert decisions_for(code) == {decision}, code
