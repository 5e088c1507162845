"""Delivery settings as frozen data: the root ``delivery:`` section (``DeliverySettings``) and
each advertiser's CRM endpoint (``Endpoint``), with their strict parsers.

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
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

from gateway.config.reader import MISSING, Reader, duration_of, join, opt, show
from gateway.errors import ConfigError, ConfigIssue
from gateway.leads.lead import LEAD_FIELDS

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

DEFAULT_SCHEDULE_S: Final = (0.0, 5.0, 30.0, 120.0, 600.0, 1800.0, 3600.0, 7200.0, 14400.0)
#: What a lead can carry to a CRM besides its person fields (``LEAD_FIELDS``); ``extra.<name>``
#: and ``consent.<name>`` reach into the nested parts.
META_SOURCES: Final = (
    *("lead_id", "campaign", "partner", "channel", "ref", "accepted_at", "extra", "test"),
)
_SOURCE = re.compile(r"(extra|consent)\.[A-Za-z0-9_.-]{1,64}")
#: ``{{ email }}`` in a template body (``gateway.delivery.adapters`` fills them in).
PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z0-9_.-]+)\s*\}\}")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
_HEADER = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,128}")
#: Headers the transport sets itself; a static header must not fake them.
RESERVED_HEADERS: Final = frozenset(
    {
        "host",
        "content-length",
        "content-type",
        "transfer-encoding",
        "connection",
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
        "idempotency-key",
    }
)


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


# --- parsing -----------------------------------------------------------------------------

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
_ENDPOINT_KEYS: Final = (
    "adapter",
    "url",
    "fields",
    "static_fields",
    "headers",
    "auth",
    "secret_env",
    "secret_file",
    "refuse_when",
    "rate_limit",
    "concurrency",
    "breaker",
    "timeout",
    "body",
    "content_type",
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


def parse_endpoint(r: Reader, value: object, path: str) -> Endpoint:
    f = r.mapping(value, path, "a mapping", required=("adapter", "url"), optional=_ENDPOINT_KEYS)
    adapter = r.choice(f.get("adapter", MISSING), join(path, "adapter"), AdapterKind)
    url = _url(r, f.get("url", MISSING), join(path, "url"))
    signing = _secret_ref(r, f, path, required=False)
    named = f.get("secret_env") is not None or f.get("secret_file") is not None
    if adapter is AdapterKind.WEBHOOK and not named and "adapter" in f:
        r.fail(
            join(path, "secret_env"),
            "a webhook endpoint is signed: name the secret's variable (secret_env) or file "
            "(secret_file); the secret is whsec_<base64>",
        )
    body, content_type = "", ""
    if adapter is AdapterKind.TEMPLATE:
        body = _text(r, f.get("body", MISSING), join(path, "body"), required=True)
        content_type = _text(
            r, f.get("content_type", MISSING), join(path, "content_type"), required=True
        )
        for key in ("body", "content_type"):
            if key not in f:
                r.fail(join(path, key), "required by the template adapter")
        for name in PLACEHOLDER.findall(body):
            if not is_source(name):
                r.fail(join(path, "body"), f"placeholder {{{{{name}}}}}: {_unknown_source(name)}")
    else:
        for key in ("body", "content_type"):
            if key in f:
                r.fail(join(path, key), "only the template adapter takes a body and content_type")
    static_fields = _strings(r, opt(f, "static_fields", {}), join(path, "static_fields"))
    if adapter is AdapterKind.SALESFORCE and "adapter" in f and "oid" not in static_fields:
        r.fail(
            join(path, "static_fields.oid"),
            "Web-to-Lead needs your Salesforce organization id: static_fields: {oid: 00D...}",
        )
    concurrency = 16
    if f.get("concurrency") is not None:
        concurrency = r.integer(f["concurrency"], join(path, "concurrency"), 1, fallback=16)
    timeout = None
    if f.get("timeout") is not None:
        timeout = seconds(r, f["timeout"], join(path, "timeout"))
    return Endpoint(
        adapter=adapter,
        url=url,
        fields=_fields(r, opt(f, "fields", {}), join(path, "fields")),
        static_fields=static_fields,
        headers=_headers(r, opt(f, "headers", {}), join(path, "headers")),
        auth=None if f.get("auth") is None else _auth(r, f["auth"], join(path, "auth")),
        signing=signing,
        refuse_when=(
            None
            if f.get("refuse_when") is None
            else _refusal(r, f["refuse_when"], join(path, "refuse_when"))
        ),
        rate_limit=(
            None
            if f.get("rate_limit") is None
            else _rate(r, f["rate_limit"], join(path, "rate_limit"))
        ),
        concurrency=concurrency,
        breaker=_breaker(r, opt(f, "breaker", {}), join(path, "breaker")),
        timeout_s=timeout,
        body_template=body,
        content_type=content_type,
    )


def _text(r: Reader, value: object, path: str, *, required: bool = False) -> str:
    if value is MISSING:
        return ""
    if not isinstance(value, str) or (required and not value.strip()):
        r.fail(path, f"expected text, got {show(value)}")
        return ""
    return value


def _url(r: Reader, value: object, path: str) -> str:
    if not isinstance(value, str):
        if value is not MISSING:
            r.fail(path, f"{show(value)} is not an http:// or https:// URL")
        return ""
    try:
        parts = urlsplit(value)
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        r.fail(path, f"{show(value)} is not an http:// or https:// URL")
        return ""
    if parts.username or parts.password:
        # Never echo it: it holds a password. Credentials belong in auth + secret_env.
        r.fail(path, "must not hold credentials (user:password@): use auth with secret_env")
        return ""
    return value


def _secret_ref(
    r: Reader, f: Mapping[str, object], path: str, *, required: bool
) -> SecretRef | None:
    env, file = f.get("secret_env"), f.get("secret_file")
    if env is not None and file is not None:
        r.fail(join(path, "secret_file"), "give secret_env or secret_file, not both")
        return None
    if env is not None:
        if not isinstance(env, str) or not _ENV_NAME.fullmatch(env):
            r.fail(join(path, "secret_env"), f"{show(env)} is not an environment variable name")
            return None
        return SecretRef(env=env, path=path)
    if file is not None:
        if not isinstance(file, str) or not file.strip():
            r.fail(join(path, "secret_file"), f"expected a file path, got {show(file)}")
            return None
        return SecretRef(file=file, path=path)
    if required:
        r.fail(join(path, "secret_env"), "required: name the variable (or secret_file) holding it")
    return None


def _auth(r: Reader, value: object, path: str) -> Auth:
    f = r.mapping(
        value,
        path,
        "a mapping",
        required=("kind",),
        optional=("secret_env", "secret_file", "username", "header"),
    )
    kind = r.choice(f.get("kind", MISSING), join(path, "kind"), AuthKind)
    secret = _secret_ref(r, f, path, required=True) or SecretRef(env="_", path=path)
    username = _text(r, opt(f, "username", ""), join(path, "username"))
    header = "X-API-Key"
    if kind is AuthKind.BASIC and not username:
        r.fail(join(path, "username"), "required for basic auth")
    if kind is not AuthKind.BASIC and "username" in f:
        r.fail(join(path, "username"), "only basic auth takes a username")
    if f.get("header") is not None:
        if kind is not AuthKind.API_KEY:
            r.fail(join(path, "header"), "only api_key auth takes a header name")
        header = _header_name(r, f["header"], join(path, "header"))
    return Auth(kind, secret, username, header)


def _header_name(r: Reader, value: object, path: str) -> str:
    if not isinstance(value, str) or not _HEADER.fullmatch(value):
        r.fail(path, f"{show(value)} is not an HTTP header name")
        return "X-Invalid"
    if value.lower() in RESERVED_HEADERS:
        r.fail(path, f"{value!r} is set by leadgate itself")
    return value


def _headers(r: Reader, value: object, path: str) -> dict[str, str]:
    headers: dict[str, str] = {}
    for name, item in r.mapping(value, path, "a mapping of header: value").items():
        p = join(path, name)
        _header_name(r, name, p)
        if name.lower() in ("authorization", *(h.lower() for h in headers)):
            r.fail(
                p,
                "set auth (with secret_env) instead"
                if name.lower() == "authorization"
                else "given twice (header names ignore case)",
            )
        if not isinstance(item, str | int | float) or isinstance(item, bool):
            r.fail(p, f"expected text, got {show(item)}")
        elif "\n" in str(item) or "\r" in str(item):
            r.fail(p, "a header value cannot span lines")
        else:
            headers[name] = str(item)
    return headers


def _strings(r: Reader, value: object, path: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, item in r.mapping(value, path, "a mapping of name: value").items():
        if isinstance(item, bool) or not isinstance(item, str | int | float):
            r.fail(join(path, name), f"expected text or a number, got {show(item)}")
        else:
            out[name] = str(item)
    return out


def _sources() -> tuple[str, ...]:
    return (*LEAD_FIELDS, *META_SOURCES)


def is_source(name: str) -> bool:
    """Whether ``name`` is something a lead can carry to a CRM (a field mapping's key, a
    template's placeholder)."""
    return name in _sources() or _SOURCE.fullmatch(name) is not None


def _unknown_source(name: str) -> str:
    return f"{name!r} is not a lead field ({', '.join(_sources())}, extra.<name>, consent.<name>)"


def _fields(r: Reader, value: object, path: str) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name, target in r.mapping(value, path, "a mapping of lead field: CRM field").items():
        p = join(path, name)
        if not is_source(name):
            r.fail(p, _unknown_source(name))
        elif target is None:
            out[name] = None
        elif not isinstance(target, str) or not target.strip():
            r.fail(p, f"expected a CRM field name or null, got {show(target)}")
        else:
            out[name] = target
    return out


def _refusal(r: Reader, value: object, path: str) -> Refusal:
    f = r.mapping(value, path, "a mapping", optional=("json_path", "equals", "in", "regex"))
    if f.get("regex") is not None:
        if any(k in f for k in ("json_path", "equals", "in")):
            r.fail(path, "give either regex, or json_path with equals/in")
        pattern = f["regex"]
        try:
            if not isinstance(pattern, str):
                raise re.error("not text")
            return Refusal(regex=re.compile(pattern), text=f"regex {pattern!r}")
        except re.error as exc:
            r.fail(join(path, "regex"), f"{show(pattern)} is not a regular expression: {exc}")
            return Refusal()
    if f.get("json_path") is None:
        r.fail(path, "give json_path (like $.status) with equals or in, or a regex")
        return Refusal()
    steps = parse_json_path(f["json_path"])
    if steps is None:
        r.fail(
            join(path, "json_path"),
            f"{show(f['json_path'])} is not a path like $.status, $.result.code, $.errors[0]",
        )
        return Refusal()
    if ("equals" in f) == ("in" in f):
        r.fail(path, "give exactly one of equals (a value) or in (a list of values)")
        return Refusal()
    if "in" in f:
        values = tuple(r.items(f["in"], join(path, "in"), "a list of values"))
    else:
        values = (f["equals"],)
    for i, v in enumerate(values):
        if isinstance(v, dict | list):
            where = join(path, "equals") if "equals" in f else f"{join(path, 'in')}[{i}]"
            r.fail(where, "expected a plain value (text, number, true/false, null)")
    return Refusal(json_path=steps, values=values, text=f"{f['json_path']} in {list(values)!r}")


_STEP = re.compile(r"\.([A-Za-z_][A-Za-z0-9_-]*)|\[(\d+)\]|\[['\"]([^'\"]+)['\"]\]")


def parse_json_path(value: object) -> tuple[str | int, ...] | None:
    """``$.a.b[0]['c d']`` -> ``("a", "b", 0, "c d")``; None when it is not such a path."""
    if not isinstance(value, str) or not value.startswith("$"):
        return None
    steps: list[str | int] = []
    at = 1
    while at < len(value):
        match = _STEP.match(value, at)
        if match is None:
            return None
        name, index, quoted = match.groups()
        steps.append(int(index) if index is not None else (name or quoted))
        at = match.end()
    return tuple(steps) if steps else None


def _rate(r: Reader, value: object, path: str) -> EndpointRateLimit:
    f = r.mapping(value, path, "a mapping", required=("per_s",), optional=("burst",))
    per_s = r.number(f.get("per_s", MISSING), join(path, "per_s"), positive=True)
    burst = max(1, math.ceil(per_s))
    if f.get("burst") is not None:
        burst = r.integer(f["burst"], join(path, "burst"), 1, fallback=burst)
    return EndpointRateLimit(per_s, burst)


def _breaker(r: Reader, value: object, path: str) -> BreakerSettings:
    d = BreakerSettings()
    f = r.mapping(
        value,
        path,
        "a mapping",
        optional=("failure_rate", "window", "min_requests", "open_for", "half_open_probes"),
    )
    rate = d.failure_rate
    if f.get("failure_rate") is not None:
        rate = r.number(f["failure_rate"], join(path, "failure_rate"), positive=True)
        if rate > 1:
            r.fail(join(path, "failure_rate"), f"{rate} must be at most 1 (a share of attempts)")
    return BreakerSettings(
        failure_rate=rate,
        window_s=d.window_s
        if f.get("window") is None
        else seconds(r, f["window"], join(path, "window")),
        min_requests=d.min_requests
        if f.get("min_requests") is None
        else r.integer(f["min_requests"], join(path, "min_requests"), 1, fallback=1),
        open_s=d.open_s
        if f.get("open_for") is None
        else seconds(r, f["open_for"], join(path, "open_for")),
        half_open_probes=d.half_open_probes
        if f.get("half_open_probes") is None
        else r.integer(f["half_open_probes"], join(path, "half_open_probes"), 1, fallback=1),
    )
