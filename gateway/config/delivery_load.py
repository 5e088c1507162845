"""Reading the root ``delivery:`` section of the YAML file into ``DeliverySettings``, and the
check that ties an endpoint's timeout to it (``check_timeout``).

Every problem is reported into the ``Reader`` with its path (``delivery.reclaim_idle``); the
section's shape and defaults are in ``config.delivery``.
"""

from __future__ import annotations

import ipaddress
import math
from typing import Final

from gateway.config.delivery import DeliverySettings, Endpoint, Network
from gateway.config.reader import MISSING, Reader, duration_of, join, opt, show

_SETTINGS_KEYS: Final = (
    "retry_schedule",
    "jitter",
    "max_lead_age",
    "request_timeout",
    "max_response_bytes",
    "max_queue_wait",
    "allow_networks",
    "reclaim_idle",
    "max_deliveries",
    "worker_concurrency",
    "read_count",
    "shutdown_grace",
    "dead_letter_retention",
)


def seconds(r: Reader, value: object, path: str, *, zero: bool = False) -> float:
    """A duration (``30s``, ``2m``) or a number of seconds (``0.5``); 0 only when ``zero``."""
    if value is MISSING:
        return 1.0
    if zero and (value == 0 or value in ("0", "0s")) and not isinstance(value, bool):
        return 0.0
    if isinstance(value, float) and not isinstance(value, bool):
        if math.isfinite(value) and value > 0:
            return value
        r.fail(path, f"{show(value)} is not a positive number of seconds")
        return 1.0
    try:
        return float(duration_of(value))
    except ValueError as exc:
        r.fail(path, str(exc))
        return 1.0


def parse_settings(r: Reader, value: object, path: str) -> DeliverySettings:
    d = DeliverySettings()
    f = r.mapping(value, path, "a mapping", optional=_SETTINGS_KEYS)

    def dur(key: str, default: float) -> float:
        given = f.get(key)
        return default if given is None else seconds(r, given, join(path, key))

    def whole(key: str, default: int) -> int:
        given = f.get(key)
        return default if given is None else r.integer(given, join(path, key), 1, fallback=default)

    schedule = d.retry_schedule_s
    if f.get("retry_schedule") is not None:
        at = join(path, "retry_schedule")
        items = r.items(f["retry_schedule"], at, "a list of waits like [0s, 5s, 30s, 2m]")
        schedule = tuple(seconds(r, w, f"{at}[{i}]", zero=True) for i, w in enumerate(items))
        if not schedule and isinstance(f["retry_schedule"], list):
            r.fail(at, "needs at least one entry (the wait before the first attempt, e.g. 0s)")
    jitter = d.jitter
    if f.get("jitter") is not None:
        jitter = r.number(f["jitter"], join(path, "jitter"), positive=False)
        if jitter > 1:
            r.fail(join(path, "jitter"), f"{jitter} must be at most 1 (a share of the wait)")
    networks: list[Network] = []
    at = join(path, "allow_networks")
    for i, item in enumerate(r.items(opt(f, "allow_networks", []), at, "a list of CIDRs")):
        try:
            networks.append(ipaddress.ip_network(str(item), strict=True))
        except ValueError:
            r.fail(f"{at}[{i}]", f"{show(item)} is not a network like 127.0.0.0/8 or ::1/128")
    settings = DeliverySettings(
        retry_schedule_s=schedule,
        jitter=jitter,
        max_lead_age_s=dur("max_lead_age", d.max_lead_age_s),
        request_timeout_s=dur("request_timeout", d.request_timeout_s),
        max_response_bytes=whole("max_response_bytes", d.max_response_bytes),
        max_queue_wait_s=dur("max_queue_wait", d.max_queue_wait_s),
        allow_networks=tuple(networks),
        reclaim_idle_s=dur("reclaim_idle", d.reclaim_idle_s),
        max_deliveries=whole("max_deliveries", d.max_deliveries),
        worker_concurrency=whole("worker_concurrency", d.worker_concurrency),
        read_count=whole("read_count", d.read_count),
        shutdown_grace_s=dur("shutdown_grace", d.shutdown_grace_s),
        dead_letter_retention_s=dur("dead_letter_retention", d.dead_letter_retention_s),
    )
    longest = settings.max_queue_wait_s + settings.request_timeout_s
    if settings.reclaim_idle_s <= longest:
        r.fail(
            join(path, "reclaim_idle"),
            f"{settings.reclaim_idle_s:g}s must be more than max_queue_wait + request_timeout "
            f"({longest:g}s): a live worker's lead would be taken over mid-request",
        )
    return settings


def check_timeout(r: Reader, settings: DeliverySettings, path: str, endpoint: Endpoint) -> None:
    """Report an endpoint (at ``path``) whose timeout would let a live delivery be reclaimed."""
    if endpoint.timeout_s is None:
        return
    longest = settings.max_queue_wait_s + endpoint.timeout_s
    if settings.reclaim_idle_s <= longest:
        r.fail(
            join(path, "timeout"),
            f"{endpoint.timeout_s:g}s + delivery.max_queue_wait must stay under "
            f"delivery.reclaim_idle ({settings.reclaim_idle_s:g}s)",
        )
