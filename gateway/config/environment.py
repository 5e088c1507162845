"""The process environment (``LEADGATE_*`` variables), read once at start into ``Environment``.

Secrets (the Redis URL, which may hold a password, and the fingerprint keys) come only from
here, never from the YAML file, which is reviewed and committed. Each secret can be given
directly or as a ``*_FILE`` path (Docker and Kubernetes secrets are mounted as files).
No message built here ever contains a secret value: they end up in start-up logs.

An empty variable counts as unset (``LEADGATE_REDIS_URL=`` in a compose file means "none").
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

from gateway.config.model import Config
from gateway.errors import ConfigError, ConfigIssue
from gateway.leads.fingerprint import SCHEMES
from gateway.types import FingerprintKey

CONFIG = "LEADGATE_CONFIG"
REDIS_URL = "LEADGATE_REDIS_URL"
FINGERPRINT_KEY = "LEADGATE_FINGERPRINT_KEY"
PREVIOUS_KEYS = "LEADGATE_FINGERPRINT_PREVIOUS_KEYS"
HOST = "LEADGATE_HOST"
PORT = "LEADGATE_PORT"
LOG_LEVEL = "LEADGATE_LOG_LEVEL"
ADMIN_TOKEN = "LEADGATE_ADMIN_TOKEN"  # noqa: S105 (a variable name, not a secret)
ADMIN_HOST = "LEADGATE_ADMIN_HOST"
ADMIN_PORT = "LEADGATE_ADMIN_PORT"
METRICS_HOST = "LEADGATE_METRICS_HOST"
METRICS_PORT = "LEADGATE_METRICS_PORT"
METRICS_TOKEN = "LEADGATE_METRICS_TOKEN"  # noqa: S105 (a variable name, not a secret)
#: Where ``/metrics`` is served unless ``LEADGATE_METRICS_PORT`` says otherwise (never on the
#: public port: it tells every partner's volumes and rates).
DEFAULT_METRICS_PORT = 9101
_SECRETS = (
    REDIS_URL,
    FINGERPRINT_KEY,
    PREVIOUS_KEYS,
    ADMIN_TOKEN,
    METRICS_TOKEN,
)  # each also readable from `<name>_FILE`
#: Read elsewhere at start (``runtime``, ``failpoints``); known so they are not flagged as typos.
_READ_ELSEWHERE = ("LEADGATE_REDIS_ALLOW_EVICTION", "LEADGATE_FAILPOINTS")
_SECRET_FILES = tuple(f"{name}_FILE" for name in _SECRETS)
KNOWN_VARIABLES: Final = frozenset(
    (
        CONFIG,
        HOST,
        PORT,
        LOG_LEVEL,
        ADMIN_HOST,
        ADMIN_PORT,
        METRICS_HOST,
        METRICS_PORT,
        *_SECRETS,
        *_SECRET_FILES,
        *_READ_ELSEWHERE,
    )
)
LOG_LEVELS: Final = ("debug", "info", "warning", "error", "critical")
MIN_SECRET_CHARS: Final = 32

_KEY_ID = re.compile(r"[a-z0-9]{1,8}")
_NOT_SHOWN = "(the value is not shown: it is a secret)"


@dataclass(frozen=True, slots=True)
class Environment:
    """What the environment says: where the config is, the store, the keys, where to listen."""

    config_path: str | None = None
    #: ``redis://``, ``rediss://`` or ``unix://``; ``None`` means the embedded store.
    #: Not in ``repr``: the URL may hold a password.
    redis_url: str | None = field(default=None, repr=False)
    #: ``[0]`` fingerprints new leads; the others are older keys still checked while a
    #: rotation's longest dedup window runs out. Empty when none is configured.
    fingerprint_keys: tuple[FingerprintKey, ...] = ()
    host: str = "127.0.0.1"
    port: int = 8080
    log_level: str = "info"
    #: Bearer token of the admin API (deliveries, dead letters); None: the routes do not exist.
    admin_token: str | None = field(default=None, repr=False)
    #: Where the admin API listens on its own (``LEADGATE_ADMIN_PORT``); ``None``: on the
    #: public listener, behind its token. ``admin_host`` None: the public address.
    admin_port: int | None = None
    admin_host: str | None = None
    #: The ops listener of ``/metrics`` (and ``/healthz``, ``/readyz``); None: no metrics
    #: listener (``LEADGATE_METRICS_PORT=0``). ``metrics_host`` None: the public address.
    metrics_port: int | None = DEFAULT_METRICS_PORT
    metrics_host: str | None = None
    #: Bearer token ``/metrics`` requires; None: none (keep the port private instead).
    metrics_token: str | None = field(default=None, repr=False)

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> Environment:
        """Read ``environ`` (``os.environ`` at start, a dict in tests).

        Raises ``ConfigError`` listing every problem; the issue paths are variable names.
        """
        issues: list[ConfigIssue] = []
        redis_url = _secret(environ, REDIS_URL, issues)
        if redis_url is not None and not _is_redis_url(redis_url[1]):
            issues.append(
                ConfigIssue(
                    redis_url[0],
                    f"expected a redis://, rediss://, unix:// or redis+cluster:// URL {_NOT_SHOWN}",
                )
            )
        keys = _fingerprint_keys(
            _secret(environ, FINGERPRINT_KEY, issues),
            _secret(environ, PREVIOUS_KEYS, issues),
            issues,
        )
        host = _get(environ, HOST) or "127.0.0.1"
        port = _port(_get(environ, PORT), issues)
        given_level = _get(environ, LOG_LEVEL) or "info"
        log_level = given_level.lower()
        if log_level not in LOG_LEVELS:
            issues.append(
                ConfigIssue(LOG_LEVEL, f"{given_level!r} is not one of {', '.join(LOG_LEVELS)}")
            )
        admin = _secret(environ, ADMIN_TOKEN, issues)
        if admin is not None and len(admin[1]) < MIN_SECRET_CHARS:
            issues.append(
                ConfigIssue(admin[0], f"at least {MIN_SECRET_CHARS} characters {_NOT_SHOWN}")
            )
        given_admin_port = _get(environ, ADMIN_PORT)
        admin_port = (
            None if given_admin_port is None else _port(given_admin_port, issues, ADMIN_PORT)
        )
        if admin_port is not None and admin is None:
            issues.append(ConfigIssue(ADMIN_PORT, f"the admin API needs {ADMIN_TOKEN} too"))
        if admin_port is not None and admin_port == port:
            issues.append(ConfigIssue(ADMIN_PORT, f"must differ from {PORT} ({port})"))
        metrics_port = _metrics_port(_get(environ, METRICS_PORT), issues)
        if metrics_port is not None and metrics_port == port:
            issues.append(
                ConfigIssue(METRICS_PORT, f"must differ from {PORT} ({port}): /metrics is private")
            )
        metrics_token = _secret(environ, METRICS_TOKEN, issues)
        if metrics_token is not None and len(metrics_token[1]) < MIN_SECRET_CHARS:
            issues.append(
                ConfigIssue(
                    metrics_token[0], f"at least {MIN_SECRET_CHARS} characters {_NOT_SHOWN}"
                )
            )
        if issues:
            raise ConfigError(issues)
        return cls(
            config_path=_get(environ, CONFIG),
            redis_url=None if redis_url is None else redis_url[1],
            fingerprint_keys=keys,
            host=host,
            port=port,
            log_level=log_level,
            admin_token=None if admin is None else admin[1],
            admin_port=admin_port,
            admin_host=_get(environ, ADMIN_HOST),
            metrics_port=metrics_port,
            metrics_host=_get(environ, METRICS_HOST),
            metrics_token=None if metrics_token is None else metrics_token[1],
        )


def unknown_variables(environ: Mapping[str, str], referenced: Collection[str] = ()) -> list[str]:
    """``LEADGATE_*`` names leadgate does not know: likely typos, worth a warning at start
    (a misspelt ``LEADGATE_REDIS_URL`` would silently select the embedded store).

    ``referenced``: the names the config itself gives its secrets (``referenced_variables``):
    ``LEADGATE_WEBHOOK_SECRET_ACME`` is the docs' own naming style, not a typo."""
    known = KNOWN_VARIABLES | frozenset(referenced)
    return sorted(n for n in environ if n.startswith("LEADGATE_") and n not in known)


def referenced_variables(config: Config) -> frozenset[str]:
    """Every environment variable ``config`` names for a secret: each endpoint's signing
    secret and auth secret given as ``secret_env``."""
    names: set[str] = set()
    for advertiser in config.advertisers.values():
        endpoint = advertiser.endpoint
        if endpoint is None:
            continue
        auth = endpoint.auth.secret if endpoint.auth is not None else None
        for ref in (endpoint.signing, auth):
            if ref is not None and ref.env is not None:
                names.add(ref.env)
    return frozenset(names)


def _get(environ: Mapping[str, str], name: str) -> str | None:
    value = environ.get(name, "").strip()
    return value or None


def _secret(
    environ: Mapping[str, str], name: str, issues: list[ConfigIssue]
) -> tuple[str, str] | None:
    """``(variable it came from, value)`` of a secret given as ``name`` or ``name_FILE``."""
    direct, file_name = _get(environ, name), f"{name}_FILE"
    path = _get(environ, file_name)
    if direct is not None and path is not None:
        issues.append(ConfigIssue(name, f"set {name} or {file_name}, not both"))
        return None
    if path is None:
        return None if direct is None else (name, direct)
    try:
        value = Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        issues.append(ConfigIssue(file_name, f"cannot read {path!r}: {why}"))
        return None
    if not value:
        issues.append(ConfigIssue(file_name, f"{path!r} is empty"))
        return None
    return file_name, value


def _is_redis_url(url: str) -> bool:
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an unclosed IPv6 bracket
        return False
    if parts.scheme in ("redis+cluster", "rediss+cluster"):  # a node of a Redis Cluster
        return bool(parts.hostname)
    return parts.scheme in ("redis", "rediss", "unix") and bool(parts.netloc or parts.path)


def _fingerprint_keys(
    current: tuple[str, str] | None,
    previous: tuple[str, str] | None,
    issues: list[ConfigIssue],
) -> tuple[FingerprintKey, ...]:
    if current is None:
        if previous is not None:
            issues.append(
                ConfigIssue(previous[0], f"previous keys need a current key: set {FINGERPRINT_KEY}")
            )
        return ()
    keys: list[FingerprintKey] = []
    used_by: dict[str, str] = {}
    items = [(current[0], current[1])]
    if previous is not None:
        texts = [t.strip() for t in re.split(r"[,\n]", previous[1]) if t.strip()]
        items += [(f"{previous[0]}[{i}]", text) for i, text in enumerate(texts)]
    for where, text in items:
        key = _parse_key(where, text, issues)
        if key is None:
            continue
        if key.id in used_by:
            issues.append(
                ConfigIssue(where, f"key id {key.id!r} is already used by {used_by[key.id]}")
            )
            continue
        used_by[key.id] = where
        keys.append(key)
    return tuple(keys)


def _parse_key(where: str, text: str, issues: list[ConfigIssue]) -> FingerprintKey | None:
    """``<id>:<secret>`` (a ``raw`` key) or ``<id>:sha256:<secret>`` (a ``sha256`` key, which
    hashed identifiers can be checked against: ``leads.fingerprint``); the id is shown in
    messages only once the whole key is valid, since a value written the wrong way round
    would put part of the secret there."""
    key_id, colon, secret = text.partition(":")
    scheme = "raw"
    for named in SCHEMES:
        if secret.startswith(f"{named}:"):
            scheme, secret = named, secret[len(named) + 1 :]
    if not colon:
        problem = "expected <id>:sha256:<secret>, e.g. k2:sha256:<32 or more characters>"
    elif not _KEY_ID.fullmatch(key_id):
        problem = "the key id (before ':') must be 1-8 of a-z 0-9"
    elif len(secret) < MIN_SECRET_CHARS:
        problem = f"the secret (after ':') must have at least {MIN_SECRET_CHARS} characters"
    else:
        return FingerprintKey(key_id, secret.encode("utf-8"), scheme)
    issues.append(ConfigIssue(where, f"{problem} {_NOT_SHOWN}"))
    return None


def _port(text: str | None, issues: list[ConfigIssue], name: str = PORT) -> int:
    if text is None:
        return 8080
    if text.isascii() and text.isdigit() and 1 <= int(text) <= 65535:
        return int(text)
    issues.append(ConfigIssue(name, f"{text!r} is not a TCP port (1-65535)"))
    return 8080


def _metrics_port(text: str | None, issues: list[ConfigIssue]) -> int | None:
    """``LEADGATE_METRICS_PORT``: a port, ``0`` for no metrics listener, unset for the
    default."""
    if text is None:
        return DEFAULT_METRICS_PORT
    if text == "0":
        return None
    return _port(text, issues, METRICS_PORT)
