"""Delivery settings as frozen data: the root ``delivery:`` section (``DeliverySettings``) and
each advertiser's CRM endpoint (``Endpoint``), and how their secrets are resolved.
``config.delivery_load`` reads the root section from the YAML file, ``config.endpoint_load``
an advertiser's ``delivery:``.

Secrets (signing secrets, auth tokens and passwords) are never in the YAML file: it names an
environment variable (``secret_env``) or a file (``secret_file``). Loading the file records
the NAME only, so ``leadgate check-config`` works on a machine without the secrets; the
transport resolves them from its ``environ`` when it is built (``resolve_secret``) and fails
there with a ``ConfigError`` naming the variable.

YAML shape::

    delivery:                          # root, optional; these are the defaults
      retry_schedule: [0s, 5s, 30s, 2m, 10m, 30m, 1h, 2h, 4h]   # wait before attempt 1, 2, ...
      jitter: 0.1                      # up to +10 % added to each wait (never removed)
      max_lead_age: 1d                 # older undelivered leads go to dead letters
      request_timeout: 10s             # one HTTP request, connect to last byte
      max_response_bytes: 65536        # most bytes of a response body ever read
      max_queue_wait: 5s               # longest wait for a rate-limit token / concurrency slot
      allow_networks: []               # private/loopback networks outgoing requests may reach
      reclaim_idle: 2m                 # a lead held this long by a dead worker is reclaimed
      max_deliveries: 5                # a lead claimed this often without an outcome: dead letter
      worker_concurrency: 64           # deliveries in flight per worker process
      read_count: 100                  # entries per XREADGROUP
      shutdown_grace: 20s              # SIGTERM: in-flight deliveries get this long
      dead_letter_retention: 30d       # dead letters older than this are trimmed

    advertisers:
      - id: acme
        delivery:
          adapter: webhook             # webhook | salesforce | hubspot | template
          url: https://crm.example/hooks/leads
          secret_env: LEADGATE_WEBHOOK_SECRET_ACME    # or secret_file: /run/secrets/acme
          fields: {postal_code: zip, ip: null}          # lead field -> CRM name (null: omit)
          static_fields: {lead_source: Affiliate}       # constant fields added to the body
          headers: {X-Source: leadgate}                 # static, not secret
          auth: {kind: bearer, secret_env: LEADGATE_ACME_TOKEN}
          refuse_when: {json_path: $.status, in: [error, rejected]}   # or {regex: "..."}
          rate_limit: {per_s: 20, burst: 40}
          concurrency: 8
          breaker: {failure_rate: 0.5, window: 30s, min_requests: 10, open_for: 30s,
                    half_open_probes: 1}
          timeout: 5s
          # template adapter only:
          body: '{"mail": {{email}}, "id": {{lead_id}}}'
          content_type: application/json
"""

from __future__ import annotations

import base64
import binascii
import enum
import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from gateway.errors import ConfigError, ConfigIssue

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

DEFAULT_SCHEDULE_S: Final = (0.0, 5.0, 30.0, 120.0, 600.0, 1800.0, 3600.0, 7200.0, 14400.0)
#: ``{{ email }}`` in a template body (``gateway.delivery.adapters`` fills them in).
PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z0-9_.-]+)\s*\}\}")


class AdapterKind(enum.StrEnum):
    WEBHOOK = "webhook"  # JSON, signed per Standard Webhooks
    SALESFORCE = "salesforce"  # application/x-www-form-urlencoded, Web-to-Lead field names
    HUBSPOT = "hubspot"  # HubSpot Forms submission JSON: {"fields": [...], "context": {...}}
    TEMPLATE = "template"  # a body template with {{placeholders}} and a content type


class AuthKind(enum.StrEnum):
    BEARER = "bearer"  # Authorization: Bearer <secret>
    BASIC = "basic"  # Authorization: Basic base64(username:secret)
    API_KEY = "api_key"  # <header>: <secret>


@dataclass(frozen=True, slots=True)
class SecretRef:
    """Where a secret lives: an environment variable or a file. Never the secret itself."""

    env: str | None = None
    file: str | None = None
    #: The config path it was declared at, for messages (``advertisers[0].delivery.auth``).
    path: str = ""

    @property
    def source(self) -> str:
        return self.env if self.env is not None else f"file {self.file!r}"


@dataclass(frozen=True, slots=True)
class Auth:
    kind: AuthKind
    secret: SecretRef
    username: str = ""  # basic only
    header: str = "X-API-Key"  # api_key only


@dataclass(frozen=True, slots=True)
class Refusal:
    """A 2xx answer whose body says the CRM refused the lead. Exactly one of: a JSON path with
    ``values`` (the value found equals one of them), or a ``regex`` searched in the body."""

    json_path: tuple[str | int, ...] | None = None
    values: tuple[object, ...] = ()
    regex: re.Pattern[str] | None = None
    #: As written, for messages and docs.
    text: str = ""


@dataclass(frozen=True, slots=True)
class EndpointRateLimit:
    per_s: float
    burst: int


@dataclass(frozen=True, slots=True)
class BreakerSettings:
    """Opens when, over the last ``window_s``, at least ``min_requests`` attempts were made and
    the share of failures (retryable outcomes) reached ``failure_rate``; stays open
    ``open_s``, then lets ``half_open_probes`` requests through: all succeed → closed, one
    fails → open again."""

    failure_rate: float = 0.5
    window_s: float = 30.0
    min_requests: int = 10
    open_s: float = 30.0
    half_open_probes: int = 1


@dataclass(frozen=True, slots=True)
class Endpoint:
    adapter: AdapterKind
    url: str
    #: Lead field (or meta/extra./consent. source) -> CRM field name; ``None`` drops a field
    #: the adapter sends by default. Merged over the adapter's defaults.
    fields: Mapping[str, str | None] = field(default_factory=dict)
    static_fields: Mapping[str, str] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)
    auth: Auth | None = None
    #: Standard Webhooks signing secret(s): required for ``webhook``, optional for the others.
    signing: SecretRef | None = None
    refuse_when: Refusal | None = None
    rate_limit: EndpointRateLimit | None = None
    concurrency: int = 16
    breaker: BreakerSettings = field(default_factory=BreakerSettings)
    #: Overrides ``DeliverySettings.request_timeout_s`` for this endpoint.
    timeout_s: float | None = None
    #: ``template`` only.
    body_template: str = ""
    content_type: str = ""


@dataclass(frozen=True, slots=True)
class DeliverySettings:
    """The root ``delivery:`` section: retry policy, request limits, the worker's knobs."""

    #: Wait before attempt 1, 2, ... (attempt 1 is normally immediate); after the last
    #: attempt the lead is dead-lettered.
    retry_schedule_s: tuple[float, ...] = DEFAULT_SCHEDULE_S
    #: Each wait is lengthened by a random share in [0, jitter] of itself; never shortened.
    jitter: float = 0.1
    #: A lead accepted longer ago than this is dead-lettered with its last response (the
    #: queue checks; HELD attempts do not count but time does).
    max_lead_age_s: float = 86_400.0
    request_timeout_s: float = 10.0
    #: At most this many bytes of a response body are read (the rest is dropped).
    max_response_bytes: int = 65_536
    #: ``EndpointClient.send`` waits at most this long for a rate-limit token or a
    #: concurrency slot, then answers HELD.
    max_queue_wait_s: float = 5.0
    #: Private/loopback/link-local/reserved networks outgoing requests may reach anyway.
    allow_networks: tuple[Network, ...] = ()
    #: XAUTOCLAIM idle time: a lead a worker has held this long is taken over. Must exceed
    #: the longest ``send`` (``max_queue_wait_s`` + the longest request timeout).
    reclaim_idle_s: float = 120.0
    #: A lead claimed this many times without any attempt outcome (it keeps crashing
    #: workers) is dead-lettered.
    max_deliveries: int = 5
    #: Deliveries in flight per worker process (all advertisers together).
    worker_concurrency: int = 64
    #: Stream entries read per XREADGROUP call.
    read_count: int = 100
    #: On SIGTERM, in-flight deliveries get this long to finish.
    shutdown_grace_s: float = 20.0
    #: Dead letters older than this are trimmed from the dead-letter stream.
    dead_letter_retention_s: float = 30 * 86_400.0

    def timeout_for(self, endpoint: Endpoint) -> float:
        return endpoint.timeout_s if endpoint.timeout_s is not None else self.request_timeout_s


# --- secrets -----------------------------------------------------------------------------


def resolve_secret(ref: SecretRef, environ: Mapping[str, str]) -> str:
    """The secret's value, from ``environ`` or the file. Raises ``ConfigError`` naming the
    variable (or file) and the config path; never shows the value."""
    if ref.env is not None:
        value = environ.get(ref.env, "").strip()
        if not value:
            raise ConfigError(
                [ConfigIssue(ref.env, f"not set (named by {ref.path or 'the config'})")]
            )
        return value
    assert ref.file is not None
    try:
        value = Path(ref.file).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError([ConfigIssue(ref.path, f"cannot read {ref.file!r}: {why}")]) from None
    if not value:
        raise ConfigError([ConfigIssue(ref.path, f"{ref.file!r} is empty")])
    return value


def webhook_keys(ref: SecretRef, environ: Mapping[str, str]) -> tuple[bytes, ...]:
    """The signing keys of a Standard Webhooks secret ``whsec_<base64> [whsec_<base64> ...]``
    (several during a rotation: each signs, so the CRM may know either)."""
    keys: list[bytes] = []
    for i, part in enumerate(resolve_secret(ref, environ).split()):
        key = b""
        if part.startswith("whsec_"):
            try:
                key = base64.b64decode(part[len("whsec_") :], validate=True)
            except (binascii.Error, ValueError):
                key = b""
        if not key:
            raise ConfigError(
                [
                    ConfigIssue(
                        ref.source,
                        f"secret #{i + 1} is not whsec_<base64> (the value is not shown)",
                    )
                ]
            )
        keys.append(key)
    return tuple(keys)


def secret_variables(endpoints: Mapping[str, Endpoint]) -> frozenset[str]:
    """The environment variables the endpoints name (so start-up does not flag them as typos)."""
    names: set[str] = set()
    for endpoint in endpoints.values():
        for ref in (endpoint.signing, endpoint.auth.secret if endpoint.auth else None):
            if ref is not None and ref.env is not None:
                names.add(ref.env)
    return frozenset(names)
