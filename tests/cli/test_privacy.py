"""``leadgate suppress``: lists filled from CSV by the real command, read by the decision.

The command runs as its own process (as ops run it) against the test's redis-server; the
decision then runs in-process on the same Redis with the same fingerprint key."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml
from processes import FINGERPRINT_KEY, run_leadgate

from gateway.config.environment import Environment
from gateway.config.load import load_config
from gateway.decision.engine import DecisionEngine
from gateway.decision.model import Decision
from gateway.decision.plan import build_request
from gateway.leads.fingerprint import Fingerprinter
from gateway.leads.ids import new_lead_id
from gateway.leads.parse import parse_lead
from gateway.storage.redis import RedisStore
from gateway.types import CampaignId, ChannelId, PartnerId

CANARIES = ("marie.canary", "jean.canary", "612345678", "0612", "example.org")
CSV = """Email,Phone
marie.canary@gmail.com,06 12 34 56 78
jean.canary@example.org,
not-an-email,
,07 00
M.A.R.I.E.CANARY+news@googlemail.com,
"""
#: Row 1's email is row 5's mailbox: 3 valid identities (+1 phone), 2 invalid values.


def config(tmp_path: Path) -> Path:
    data: dict[str, Any] = {
        "channels": [{"id": "email"}],
        "advertisers": [{"id": "acme"}],
        "suppression_lists": [
            {"id": "optout", "name": "Opt-outs", "network": True},
            {"id": "customers"},
        ],
        "campaigns": [
            {"id": "acme-on", "advertiser": "acme", "kind": "always_on", "identity": ["email"]}
        ],
        "partners": [
            {
                "id": "p1",
                "api_keys": ["sha256:" + "0" * 64],
                "channels": ["email"],
                "campaigns": ["acme-on"],
            }
        ],
    }
    path = tmp_path / "leadgate.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def suppress(redis_url: str | None, *args: str) -> subprocess.CompletedProcess[str]:
    """``leadgate suppress ARGS`` with the test fingerprint key, on ``redis_url`` if any."""
    key = {"LEADGATE_FINGERPRINT_KEY": FINGERPRINT_KEY}
    return run_leadgate("suppress", *args, redis_url=redis_url, env=key)


async def decide(redis_url: str, cfg: Path, lead: dict[str, object]) -> tuple[str, list[str]]:
    config = load_config(cfg)
    campaign = config.campaigns[CampaignId("acme-on")]
    keys = Environment.from_environ({"LEADGATE_FINGERPRINT_KEY": FINGERPRINT_KEY}).fingerprint_keys
    store = RedisStore(redis_url)
    try:
        rq = build_request(
            lead=parse_lead({"campaign": "acme-on", **lead}, config.campaigns, now_s=1.8e9),
            lead_id=new_lead_id(),
            campaign=campaign,
            partner=config.partners[PartnerId("p1")],
            channel=ChannelId("email"),
            pressure=None,
            fingerprinter=Fingerprinter(keys),
            now_s=1.8e9,
        )
        (outcome,) = await DecisionEngine(store).run([rq])
    finally:
        await store.close()
    assert outcome is not None
    return outcome.decision.value, list(outcome.reasons)


async def test_load_a_csv_then_the_gateway_refuses_those_people(
    redis_url: str, tmp_path: Path
) -> None:
    cfg = config(tmp_path)
    csv_path = tmp_path / "optout.csv"
    csv_path.write_text(CSV)

    loaded = suppress(redis_url, "load", "--config", str(cfg), "--list", "optout", str(csv_path))
    assert loaded.returncode == 0, loaded.stdout + loaded.stderr
    out = loaded.stdout
    assert "5 rows, 4 valid identities: 3 newly put on 'optout'" in out
    assert "2 values skipped as invalid" in out
    assert "line 4, email: not a valid email address" in out
    assert "line 5, phone: not a valid phone number" in out
    for canary in (*CANARIES, "not-an-email", "07 00"):
        assert canary not in out + loaded.stderr

    size = suppress(redis_url, "size", "--config", str(cfg), "--list", "optout")
    assert size.stdout.strip() == "3"

    # Stored: keyed fingerprints only, in key names and in values.
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        dump = " ".join(
            f"{key}={client.get(key)!s}" for key in client.scan_iter(match="lg:{p:*}:sup")
        )
    finally:
        client.close()
    assert dump.count(":sup=") == 3
    for canary in CANARIES:
        assert canary not in dump

    # The network-wide list applies to every campaign, under the list's neutral reason.
    assert await decide(redis_url, cfg, {"email": "marieCANARY@gmail.com"}) == (
        "rejected",
        ["suppressed"],
    )
    assert await decide(redis_url, cfg, {"email": "x@example.com", "phone": "+33612345678"}) == (
        "rejected",
        ["suppressed"],
    )
    assert (await decide(redis_url, cfg, {"email": "someone.else@example.org"}))[0] == (
        Decision.ACCEPTED.value
    )

    removed = suppress(
        redis_url, "remove", "--config", str(cfg), "--list", "optout", "--email",
        "marie.canary@gmail.com",
    )  # fmt: skip
    assert removed.returncode == 0
    assert "'optout': 1 identities taken off" in removed.stdout
    assert await decide(redis_url, cfg, {"email": "marie.canary@gmail.com"}) == ("accepted", [])

    unloaded = suppress(
        redis_url, "unload", "--config", str(cfg), "--list", "optout", str(csv_path)
    )
    assert unloaded.returncode == 0, unloaded.stdout
    assert suppress(redis_url, "size", "--config", str(cfg), "--list", "optout").stdout == "0\n"


@pytest.mark.parametrize(
    ("args", "with_redis", "message"),
    [
        (
            ["size", "--list", "nope"],
            True,
            "unknown suppression list 'nope' (known: optout, customers)",
        ),
        (["size", "--list", "optout"], False, "suppression lists live in Redis"),
        (["add", "--list", "optout"], True, "give --email and/or --phone"),
        (["add", "--list", "optout", "--phone", "12"], True, "not a valid phone number"),
    ],
)
def test_refusals_are_clear(
    redis_url: str, tmp_path: Path, args: list[str], with_redis: bool, message: str
) -> None:
    done = suppress(
        redis_url if with_redis else None, args[0], "--config", str(config(tmp_path)), *args[1:]
    )
    assert done.returncode == 2
    assert message in done.stdout


def test_a_file_without_a_header_is_refused(redis_url: str, tmp_path: Path) -> None:
    csv_path = tmp_path / "raw.csv"
    csv_path.write_text("marie@example.org\njean@example.org\n")
    done = suppress(
        redis_url, "load", "--config", str(config(tmp_path)), "--list", "customers", str(csv_path)
    )
    assert done.returncode == 2
    assert "the first line must name the columns" in done.stdout
    assert "marie" not in done.stdout


def test_a_broken_csv_line_is_named_by_its_number(redis_url: str, tmp_path: Path) -> None:
    csv_path = tmp_path / "broken.csv"
    # An over-long field (a file that is not the list it claims to be) stops the csv module.
    csv_path.write_bytes(b"email\nmarie@example.org\njean" + b"x" * 200_000 + b"@example.org\n")
    done = suppress(redis_url, "load", "--config", str(config(tmp_path)), "--list", "customers",
                    str(csv_path))  # fmt: skip
    assert done.returncode == 2
    assert "after line 2: not CSV (field larger than field limit" in done.stdout
    assert "jean" not in done.stdout + done.stderr
