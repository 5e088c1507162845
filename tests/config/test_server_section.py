"""The ``server:`` section's deadlines, connection bound, default limits and trusted proxies:
defaults, values, and every bad value refused at its path."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from gateway.config.load import parse_config
from gateway.config.model import RateLimit, ServerSettings
from gateway.errors import ConfigError


def config_with(server: object) -> dict[str, Any]:
    return {
        "server": server,
        "channels": [{"id": "email"}],
        "advertisers": [{"id": "acme"}],
        "campaigns": [],
        "partners": [],
    }


def test_defaults_bound_every_client() -> None:
    server = parse_config(config_with({})).server
    assert server == ServerSettings()
    assert (server.head_timeout_s, server.body_timeout_s, server.keepalive_timeout_s) == (
        10,
        30,
        75,
    )
    assert server.max_connections is None  # derived from the open-file limit at start
    assert server.default_rate_limit == RateLimit(per_s=100.0, burst=1000)
    assert server.auth_failure_limit == RateLimit(per_s=1.0, burst=20)
    assert server.feedback_rate_limit == RateLimit(per_s=100.0, burst=1000)
    assert server.trusted_proxies == ()


def test_every_key_is_read() -> None:
    server = parse_config(
        config_with(
            {
                "head_timeout_s": 5,
                "body_timeout_s": 60,
                "keepalive_timeout_s": 120,
                "max_connections": 2000,
                "default_rate_limit": {"per_s": 20, "burst": 40},
                "auth_failure_limit": {"per_s": 0.5, "burst": 5},
                "feedback_rate_limit": {"per_s": 10, "burst": 100},
                "trusted_proxies": ["10.0.0.0/8", "2001:db8::/32", "192.0.2.7"],
            }
        )
    ).server
    assert (server.head_timeout_s, server.body_timeout_s, server.keepalive_timeout_s) == (
        5,
        60,
        120,
    )
    assert server.max_connections == 2000
    assert server.default_rate_limit == RateLimit(20.0, 40)
    assert server.auth_failure_limit == RateLimit(0.5, 5)
    assert server.feedback_rate_limit == RateLimit(10.0, 100)
    assert server.trusted_proxies == (
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("2001:db8::/32"),
        ipaddress.ip_network("192.0.2.7/32"),
    )


@pytest.mark.parametrize(
    ("server", "expected"),
    [
        ({"head_timeout_s": 0}, "server.head_timeout_s: 0 must be at least 1"),
        ({"body_timeout_s": "30s"}, "server.body_timeout_s: expected a whole number"),
        ({"keepalive_timeout_s": -1}, "server.keepalive_timeout_s: -1 must be at least 1"),
        ({"max_connections": 0}, "server.max_connections: 0 must be at least 1"),
        ({"default_rate_limit": {"per_s": 0, "burst": 1}}, "server.default_rate_limit.per_s"),
        ({"auth_failure_limit": {"per_s": 1}}, "server.auth_failure_limit.burst"),
        ({"feedback_rate_limit": 5}, "server.feedback_rate_limit: expected a mapping"),
        ({"trusted_proxies": "10.0.0.0/8"}, "server.trusted_proxies: expected a list"),
        ({"trusted_proxies": ["10.0.0.1/8"]}, "server.trusted_proxies[0]: '10.0.0.1/8' is not"),
        ({"trusted_proxies": ["proxy.local"]}, "server.trusted_proxies[0]: 'proxy.local' is not"),
        (
            {"trusted_proxies": [f"10.0.0.{n}" for n in range(65)]},
            "server.trusted_proxies: at most",
        ),
        ({"head_timeout": 10}, "server.head_timeout: unknown key"),
    ],
)
def test_a_bad_value_is_refused_at_its_path(server: dict[str, object], expected: str) -> None:
    with pytest.raises(ConfigError) as refused:
        parse_config(config_with(server))
    issues = [str(issue) for issue in refused.value.issues]
    assert any(issue.startswith(expected) for issue in issues), issues
