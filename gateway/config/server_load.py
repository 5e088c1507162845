"""Reading the ``server:`` section: HTTP limits and connection deadlines (the reference is
docs/configuration.md, "server")."""

from __future__ import annotations

from gateway.config.model import RateLimit, ServerSettings
from gateway.config.reader import MISSING, Reader, join

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
)


def parse_server(r: Reader, value: object, path: str) -> ServerSettings:
    """The ``server:`` mapping (every key optional) as ``ServerSettings``; problems go to ``r``."""
    fields = r.mapping(value, path, "a mapping", optional=_COUNTS)
    d = ServerSettings()
    counts = {
        name: r.integer(fields[name], join(path, name), minimum=1, fallback=1)
        for name in _COUNTS
        if fields.get(name) is not None
    }
    return ServerSettings(
        max_body_bytes=counts.get("max_body_bytes", d.max_body_bytes),
        batch_max_leads=counts.get("batch_max_leads", d.batch_max_leads),
        batch_max_body_bytes=counts.get("batch_max_body_bytes", d.batch_max_body_bytes),
        idempotency_ttl_s=counts.get("idempotency_ttl_s", d.idempotency_ttl_s),
        head_timeout_s=counts.get("head_timeout_s", d.head_timeout_s),
        body_timeout_s=counts.get("body_timeout_s", d.body_timeout_s),
        keepalive_timeout_s=counts.get("keepalive_timeout_s", d.keepalive_timeout_s),
        max_connections=counts.get("max_connections", d.max_connections),
    )


def parse_rate_limit(r: Reader, value: object, path: str) -> RateLimit:
    """``{per_s: <number > 0>, burst: <whole number >= 1>}``."""
    fields = r.mapping(value, path, "a mapping", required=("per_s", "burst"))
    return RateLimit(
        per_s=r.number(fields.get("per_s", MISSING), path + ".per_s", positive=True),
        burst=r.integer(fields.get("burst", MISSING), path + ".burst", 1, fallback=1),
    )

