"""The feedback keys of the config: advertisers' API keys, campaigns' return windows."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from gateway.config.load import parse_config
from gateway.errors import ConfigError


def _hash(key: str) -> str:
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def _config(**campaign: object) -> dict[str, Any]:
    return {
        "channels": [{"id": "email"}],
        "advertisers": [{"id": "acme", "api_keys": [_hash("adv-key")]}],
        "campaigns": [{"id": "c1", "advertiser": "acme", "kind": "always_on", **campaign}],
        "partners": [
            {"id": "p1", "api_keys": [_hash("p-key")], "channels": ["email"], "campaigns": ["c1"]}
        ],
    }


def _issues(data: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(data)
    return [str(issue) for issue in caught.value.issues]


def test_defaults_and_given_windows() -> None:
    config = parse_config(_config())
    campaign = config.campaigns["c1"]  # type: ignore[index]
    assert (campaign.return_window_s, campaign.feedback_window_s) == (30 * 86_400, 90 * 86_400)
    assert config.advertisers["acme"].api_key_hashes == (  # type: ignore[index]
        hashlib.sha256(b"adv-key").hexdigest(),
    )
    given = parse_config(_config(return_window="14d", feedback_window="14d")).campaigns["c1"]  # type: ignore[index]
    assert (given.return_window_s, given.feedback_window_s) == (14 * 86_400, 14 * 86_400)
    # Without feedback_window, a long return window lengthens it.
    longer = parse_config(_config(return_window="120d")).campaigns["c1"]  # type: ignore[index]
    assert longer.feedback_window_s == 120 * 86_400


@pytest.mark.parametrize(
    ("campaign", "expected"),
    [
        ({"return_window": "2x"}, "campaigns[0].return_window: '2x' is not a duration"),
        (
            {"return_window": "60d", "feedback_window": "30d"},
            "campaigns[0].feedback_window: must be at least",
        ),
    ],
)
def test_bad_windows_are_named(campaign: dict[str, object], expected: str) -> None:
    assert any(issue.startswith(expected) for issue in _issues(_config(**campaign)))


def test_a_key_opens_one_api_only() -> None:
    data = _config()
    data["partners"][0]["api_keys"] = [_hash("adv-key")]
    issues = _issues(data)
    assert any(
        i.startswith("partners[0].api_keys[0]: this key hash is already used") for i in issues
    )
    data = _config()
    data["advertisers"][0]["api_keys"] = ["adv-key"]
    issues = _issues(data)
    assert issues == ["advertisers[0].api_keys[0]: expected 'sha256:' and 64 lower-case hex digits"]
