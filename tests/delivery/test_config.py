"""The delivery sections of the config file: every problem reported at its path, all at once;
secrets named, never read at load."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Any

import pytest

from gateway.config.check import hash_api_key
from gateway.config.delivery import (
    AdapterKind,
    AuthKind,
    DeliverySettings,
    SecretRef,
    resolve_secret,
    secret_variables,
)
from gateway.config.load import load_config, parse_config
from gateway.errors import ConfigError
from gateway.types import AdvertiserId

EXAMPLE = Path(__file__).parents[2] / "examples" / "leadgate.yaml"
AT = "advertisers[0].delivery"


def network(endpoint: dict[str, Any] | None = None, **root: Any) -> dict[str, Any]:
    advertiser: dict[str, Any] = {"id": "acme"}
    if endpoint is not None:
        advertiser["delivery"] = endpoint
    return {
        "channels": [{"id": "email"}],
        "advertisers": [advertiser],
        "campaigns": [{"id": "c", "advertiser": "acme", "kind": "always_on"}],
        "partners": [
            {"id": "p", "api_keys": [hash_api_key("k")], "channels": ["email"], "campaigns": ["c"]}
        ],
        **root,
    }


def webhook(**changes: Any) -> dict[str, Any]:
    return {
        "adapter": "webhook",
        "url": "https://crm.example/hook",
        "secret_env": "ACME_SECRET",
        **changes,
    }


def issues(data: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(data)
    return {i.path: i.message for i in caught.value.issues}


def test_a_full_endpoint_is_read() -> None:
    endpoint = webhook(
        fields={"postal_code": "zip", "ip": None, "extra.gclid": "gclid"},
        static_fields={"source": "leadgate", "version": 2},
        headers={"X-Source": "leadgate"},
        auth={"kind": "basic", "username": "u", "secret_file": "/run/secrets/acme"},
        refuse_when={"json_path": "$.result['state'][0]", "in": ["error", False]},
        rate_limit={"per_s": 2.5},
        concurrency=4,
        breaker={"failure_rate": 0.25, "window": "1m", "open_for": 45, "half_open_probes": 2},
        timeout="5s",
    )
    config = parse_config(network(endpoint))
    got = config.advertisers[AdvertiserId("acme")].endpoint
    assert got is not None
    assert got.adapter is AdapterKind.WEBHOOK
    assert got.signing == SecretRef(env="ACME_SECRET", path=AT)
    assert got.fields == {"postal_code": "zip", "ip": None, "extra.gclid": "gclid"}
    assert got.static_fields == {"source": "leadgate", "version": "2"}
    assert got.auth is not None
    assert got.auth.kind is AuthKind.BASIC
    assert got.auth.secret == SecretRef(file="/run/secrets/acme", path=AT + ".auth")
    assert got.refuse_when is not None
    assert got.refuse_when.json_path == ("result", "state", 0)
    assert got.refuse_when.values == ("error", False)
    assert got.rate_limit is not None
    assert (got.rate_limit.per_s, got.rate_limit.burst) == (2.5, 3)
    assert got.breaker.window_s == 60
    assert got.breaker.open_s == 45
    assert got.timeout_s == 5.0
    assert config.delivery == DeliverySettings()


def test_root_settings_are_read() -> None:
    config = parse_config(
        network(
            delivery={
                "retry_schedule": ["0s", "10s", 90, "1h"],
                "jitter": 0,
                "max_lead_age": "2d",
                "request_timeout": 0.5,
                "allow_networks": ["10.0.0.0/8", "::1/128"],
                "reclaim_idle": "1m",
                "max_deliveries": 3,
            }
        )
    )
    settings = config.delivery
    assert settings.retry_schedule_s == (0, 10, 90, 3600)
    assert (settings.jitter, settings.max_lead_age_s, settings.request_timeout_s) == (
        0,
        172800,
        0.5,
    )
    assert settings.allow_networks == (
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("::1/128"),
    )
    assert (settings.reclaim_idle_s, settings.max_deliveries) == (60, 3)


@pytest.mark.parametrize(
    ("endpoint", "path", "message"),
    [
        (webhook(adapter="sap"), AT + ".adapter", "not one of webhook, salesforce"),
        (webhook(url="ftp://x"), AT + ".url", "not an http"),
        (webhook(url="https://u:pw@crm.example/"), AT + ".url", "must not hold credentials"),
        ({"adapter": "webhook", "url": "https://x.example"}, AT + ".secret_env", "is signed"),
        (webhook(secret_env="1-bad"), AT + ".secret_env", "not an environment variable"),
        (webhook(secret_file="/x"), AT + ".secret_file", "not both"),
        (webhook(fields={"mail": "email"}), AT + ".fields.mail", "not a lead field"),
        (webhook(fields={"email": 3}), AT + ".fields.email", "CRM field name or null"),
        (webhook(headers={"Bad Header": "x"}), AT + ".headers.Bad Header", "not an HTTP header"),
        (webhook(headers={"webhook-id": "x"}), AT + ".headers.webhook-id", "set by leadgate"),
        (webhook(headers={"Authorization": "x"}), AT + ".headers.Authorization", "set auth"),
        (webhook(headers={"X-A": "a\nb"}), AT + ".headers.X-A", "span lines"),
        (webhook(auth={"kind": "oauth"}), AT + ".auth.kind", "not one of bearer"),
        (webhook(auth={"kind": "bearer"}), AT + ".auth.secret_env", "required"),
        (webhook(auth={"kind": "basic", "secret_env": "X"}), AT + ".auth.username", "required"),
        (
            webhook(auth={"kind": "bearer", "secret_env": "X", "header": "X-K"}),
            AT + ".auth.header",
            "only api_key",
        ),
        (webhook(auth={"kind": "bearer", "token": "x"}), AT + ".auth.token", "unknown key"),
        (
            webhook(refuse_when={"json_path": "status", "equals": 1}),
            AT + ".refuse_when.json_path",
            "not a path",
        ),
        (webhook(refuse_when={"json_path": "$.s"}), AT + ".refuse_when", "exactly one of"),
        (webhook(refuse_when={"regex": "("}), AT + ".refuse_when.regex", "not a regular"),
        (webhook(refuse_when={"equals": 1}), AT + ".refuse_when", "give json_path"),
        (webhook(rate_limit={"per_s": 0}), AT + ".rate_limit.per_s", "more than 0"),
        (webhook(concurrency=0), AT + ".concurrency", "at least 1"),
        (webhook(breaker={"failure_rate": 2}), AT + ".breaker.failure_rate", "at most 1"),
        (webhook(breaker={"open_for": "soon"}), AT + ".breaker.open_for", "not a duration"),
        (webhook(timeout="-1s"), AT + ".timeout", "not a positive duration"),
        (webhook(timeout="2m"), AT + ".timeout", "must stay under delivery.reclaim_idle"),
        (webhook(body="{}"), AT + ".body", "only the template adapter"),
        (webhook(urll="x"), AT + ".urll", "did you mean 'url'"),
        (
            {"adapter": "salesforce", "url": "https://x.example"},
            AT + ".static_fields.oid",
            "organization id",
        ),
        ({"adapter": "template", "url": "https://x.example"}, AT + ".body", "required"),
        (
            {
                "adapter": "template",
                "url": "https://x.example",
                "body": "{{mail}}",
                "content_type": "text/plain",
            },
            AT + ".body",
            "placeholder {{mail}}",
        ),
        ("https://x.example", AT, "expected a mapping"),
    ],
)
def test_a_bad_endpoint_is_reported_at_its_path(endpoint: Any, path: str, message: str) -> None:
    found = issues(network(endpoint))
    assert path in found, found
    assert message in found[path]


@pytest.mark.parametrize(
    ("settings", "path", "message"),
    [
        ({"retry_schedule": []}, "delivery.retry_schedule", "at least one"),
        ({"retry_schedule": ["0s", "-5s"]}, "delivery.retry_schedule[1]", "positive"),
        ({"retry_schedule": "5s"}, "delivery.retry_schedule", "expected a list"),
        ({"jitter": 1.5}, "delivery.jitter", "at most 1"),
        ({"allow_networks": ["10.0.0.1/8"]}, "delivery.allow_networks[0]", "not a network"),
        ({"max_response_bytes": 0}, "delivery.max_response_bytes", "at least 1"),
        ({"reclaim_idle": "10s"}, "delivery.reclaim_idle", "must be more than"),
        ({"request_timeout": "1x"}, "delivery.request_timeout", "not a duration"),
        ({"retries": 3}, "delivery.retries", "unknown key"),
    ],
)
def test_bad_root_settings_are_reported_at_their_path(
    settings: dict[str, Any], path: str, message: str
) -> None:
    found = issues(network(delivery=settings))
    assert path in found, found
    assert message in found[path]


def test_every_problem_is_reported_at_once() -> None:
    found = issues(network(webhook(url="x", concurrency=0), delivery={"jitter": 7}))
    assert set(found) == {AT + ".url", AT + ".concurrency", "delivery.jitter"}


def test_the_example_loads_without_its_secrets_and_names_them() -> None:
    config = load_config(EXAMPLE)
    endpoints = {str(a.id): a.endpoint for a in config.advertisers.values() if a.endpoint}
    assert {e.adapter for e in endpoints.values()} == {
        AdapterKind.WEBHOOK,
        AdapterKind.SALESFORCE,
        AdapterKind.HUBSPOT,
        AdapterKind.TEMPLATE,
    }
    assert secret_variables(endpoints) == {
        "LEADGATE_WEBHOOK_SECRET_ACME",
        "LEADGATE_NOVABANK_TOKEN",
        "LEADGATE_SOLARIS_API_KEY",
        "LEADGATE_WEBHOOK_SECRET_HELIO",
        "LEADGATE_VOLTAIC_TOKEN",
    }


def test_secrets_resolve_from_the_environment_or_a_file(tmp_path: Path) -> None:
    assert resolve_secret(SecretRef(env="S"), {"S": " value\n"}) == "value"
    secret = tmp_path / "secret"
    secret.write_text("from-file\n")
    assert resolve_secret(SecretRef(file=str(secret)), {}) == "from-file"
    with pytest.raises(ConfigError, match=re.escape("S: not set (named by x.auth)")):
        resolve_secret(SecretRef(env="S", path="x.auth"), {"S": "  "})
    with pytest.raises(ConfigError, match="cannot read"):
        resolve_secret(SecretRef(file=str(tmp_path / "none"), path="x"), {})
