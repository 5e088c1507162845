"""Reading an advertiser's ``delivery:`` (its CRM endpoint) from the YAML file into an
``Endpoint``: adapter, URL, field mapping, headers, auth, refusal test, rate limit, breaker.

Every problem is reported into the ``Reader`` with its path
(``advertisers[0].delivery.auth.username``); secrets are recorded by name only (a
``SecretRef``). The endpoint's shape is in ``config.delivery``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Final
from urllib.parse import urlsplit

from gateway.config.delivery import (
    PLACEHOLDER,
    AdapterKind,
    Auth,
    AuthKind,
    BreakerSettings,
    Endpoint,
    EndpointRateLimit,
    Refusal,
    SecretRef,
)
from gateway.config.delivery_load import seconds
from gateway.config.reader import MISSING, Reader, join, opt, show
from gateway.leads.lead import LEAD_FIELDS

#: What a lead can carry to a CRM besides its person fields (``LEAD_FIELDS``); ``extra.<name>``
#: and ``consent.<name>`` reach into the nested parts.
META_SOURCES: Final = (
    *("lead_id", "campaign", "partner", "channel", "ref", "accepted_at", "extra", "test"),
    "price",
)
_SOURCE = re.compile(r"(extra|consent)\.[A-Za-z0-9_.-]{1,64}")
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
