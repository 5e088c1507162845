"""Reading the ``server:`` section: HTTP limits, connection deadlines, default rate limits and
the trusted reverse proxies (the reference is docs/configuration.md, "server")."""

from __future__ import annotations

import ipaddress

from gateway.config.model import IPNetwork, RateLimit, ServerSettings
from gateway.config.reader import MISSING, Reader, join, show

#: Keys that are a whole number of bytes, leads or seconds, at least 1.
_COUNTS = (
    "max_body_bytes",
    "batch_max_leads",
    "batch_max_body_bytes",
    "idempotency_ttl_s",
    "head_timeout_s",
    "body_timeout_s",
    "keepalive_timeout_s",
    "max_connections",
    "sale_lease_s",
    "max_pings_per_post",
)
_RATES = (
    "default_rate_limit",
    "default_check_rate_limit",
    "default_ping_rate_limit",
    "auth_failure_limit",
    "feedback_rate_limit",
)
#: The largest ``trusted_proxies`` list: each entry is checked for every proxied request.
MAX_TRUSTED_PROXIES = 64


def parse_server(r: Reader, value: object, path: str) -> ServerSettings:
    """The ``server:`` mapping (every key optional) as ``ServerSettings``; problems go to ``r``."""
    fields = r.mapping(value, path, "a mapping", optional=(*_COUNTS, *_RATES, "trusted_proxies"))
    d = ServerSettings()
    counts = {
        name: r.integer(fields[name], join(path, name), minimum=1, fallback=1)
        for name in _COUNTS
        if fields.get(name) is not None
    }
    rates = {
        name: parse_rate_limit(r, fields[name], join(path, name))
        for name in _RATES
        if fields.get(name) is not None
    }
    proxies = _networks(r, fields.get("trusted_proxies", MISSING), join(path, "trusted_proxies"))
    return ServerSettings(
        max_body_bytes=counts.get("max_body_bytes", d.max_body_bytes),
        batch_max_leads=counts.get("batch_max_leads", d.batch_max_leads),
        batch_max_body_bytes=counts.get("batch_max_body_bytes", d.batch_max_body_bytes),
        idempotency_ttl_s=counts.get("idempotency_ttl_s", d.idempotency_ttl_s),
        head_timeout_s=counts.get("head_timeout_s", d.head_timeout_s),
        body_timeout_s=counts.get("body_timeout_s", d.body_timeout_s),
        keepalive_timeout_s=counts.get("keepalive_timeout_s", d.keepalive_timeout_s),
        max_connections=counts.get("max_connections", d.max_connections),
        sale_lease_s=counts.get("sale_lease_s", d.sale_lease_s),
        max_pings_per_post=counts.get("max_pings_per_post", d.max_pings_per_post),
        default_rate_limit=rates.get("default_rate_limit", d.default_rate_limit),
        default_check_rate_limit=rates.get("default_check_rate_limit", d.default_check_rate_limit),
        default_ping_rate_limit=rates.get("default_ping_rate_limit", d.default_ping_rate_limit),
        auth_failure_limit=rates.get("auth_failure_limit", d.auth_failure_limit),
        feedback_rate_limit=rates.get("feedback_rate_limit", d.feedback_rate_limit),
        trusted_proxies=d.trusted_proxies if proxies is None else proxies,
    )


def parse_rate_limit(r: Reader, value: object, path: str) -> RateLimit:
    """``{per_s: <number > 0>, burst: <whole number >= 1>}``."""
    fields = r.mapping(value, path, "a mapping", required=("per_s", "burst"))
    return RateLimit(
        per_s=r.number(fields.get("per_s", MISSING), path + ".per_s", positive=True),
        burst=r.integer(fields.get("burst", MISSING), path + ".burst", 1, fallback=1),
    )


def _networks(r: Reader, value: object, path: str) -> tuple[IPNetwork, ...] | None:
    """A list of addresses or networks (``10.0.0.0/8``, ``2001:db8::/32``, ``127.0.0.1``)."""
    if value is MISSING or value is None:
        return None
    items = r.items(value, path, "a list of addresses or networks (CIDR)")
    if len(items) > MAX_TRUSTED_PROXIES:
        r.fail(path, f"at most {MAX_TRUSTED_PROXIES} networks")
        return None
    networks: list[IPNetwork] = []
    for i, item in enumerate(items):
        try:
            if not isinstance(item, str):
                raise ValueError
            networks.append(ipaddress.ip_network(item.strip(), strict=True))
        except ValueError:
            r.fail(
                f"{path}[{i}]",
                f"{show(item)} is not an address or a network such as 10.0.0.0/8 "
                "(no host bits set after the prefix)",
            )
    return tuple(networks)
