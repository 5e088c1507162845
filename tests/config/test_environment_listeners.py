"""The listener variables: where ``/metrics`` is served, and its token."""

from __future__ import annotations

from pathlib import Path
from typing import Final

import pytest

from gateway.config.environment import (
    DEFAULT_METRICS_PORT,
    Environment,
    unknown_variables,
)
from gateway.errors import ConfigError

TOKEN: Final = "metrics-" + "t" * 40


def _issues(environ: dict[str, str]) -> list[str]:
    with pytest.raises(ConfigError) as raised:
        Environment.from_environ(environ)
    return [str(issue) for issue in raised.value.issues]


def test_metrics_have_their_own_port_by_default() -> None:
    env = Environment.from_environ({})
    assert env.metrics_port == DEFAULT_METRICS_PORT != env.port
    assert (env.metrics_host, env.metrics_token) == (None, None)


def test_metrics_port_host_and_token() -> None:
    env = Environment.from_environ(
        {
            "LEADGATE_METRICS_PORT": "9200",
            "LEADGATE_METRICS_HOST": "10.0.0.7",
            "LEADGATE_METRICS_TOKEN": TOKEN,
        }
    )
    assert (env.metrics_port, env.metrics_host, env.metrics_token) == (9200, "10.0.0.7", TOKEN)
    assert TOKEN not in repr(env)
    names = ["LEADGATE_METRICS_PORT", "LEADGATE_METRICS_HOST", "LEADGATE_METRICS_TOKEN"]
    assert unknown_variables(dict.fromkeys([*names, "LEADGATE_METRICS_TOKEN_FILE"], "")) == []


def test_the_token_can_come_from_a_file(tmp_path: Path) -> None:
    (tmp_path / "token").write_text(TOKEN + "\n")
    env = Environment.from_environ({"LEADGATE_METRICS_TOKEN_FILE": str(tmp_path / "token")})
    assert env.metrics_token == TOKEN


def test_port_0_means_no_metrics_listener() -> None:
    assert Environment.from_environ({"LEADGATE_METRICS_PORT": "0"}).metrics_port is None


def test_metrics_and_admin_may_share_an_ops_port() -> None:
    env = Environment.from_environ(
        {
            "LEADGATE_ADMIN_TOKEN": "a" * 40,
            "LEADGATE_ADMIN_PORT": "9300",
            "LEADGATE_METRICS_PORT": "9300",
        }
    )
    assert env.admin_port == env.metrics_port == 9300


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"LEADGATE_METRICS_PORT": "8080"}, "LEADGATE_METRICS_PORT: must differ from"),
        ({"LEADGATE_PORT": "9101"}, "LEADGATE_METRICS_PORT: must differ from"),
        ({"LEADGATE_METRICS_PORT": "metrics"}, "LEADGATE_METRICS_PORT: 'metrics' is not"),
        ({"LEADGATE_METRICS_TOKEN": "short"}, "LEADGATE_METRICS_TOKEN: at least 32"),
    ],
)
def test_a_bad_metrics_variable_is_named(environ: dict[str, str], expected: str) -> None:
    issues = _issues(environ)
    assert any(issue.startswith(expected) for issue in issues), issues
    assert all("short" not in issue for issue in issues)  # a token is never shown
