"""Reading the YAML configuration into ``config.model`` objects, reporting every problem at once.

A typo in this file can silently disable a cap or a dedup window, and money is paid per lead,
so reading is strict: unknown keys, duplicate keys, wrong types and dangling references are
all errors. Every problem is collected (with its path, ``campaigns[2].caps[0].window``, and
the bad value) before one ``ConfigError`` is raised, so a user fixes the file in one pass.

Validators never stop at the first problem: each one reports into a ``_Reader`` and returns
a harmless fallback, so the rest of the file is still checked. The objects built from
fallbacks are thrown away: ``parse_config`` raises whenever anything was reported.
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import math
import re
from collections.abc import Collection, Hashable, Iterator, Mapping
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any, Final, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
import yaml

from gateway.config.durations import parse_duration_s
from gateway.config.model import (
    IDENTITY_FIELDS,
    LEAD_FIELDS,
    Advertiser,
    CalendarPeriod,
    Campaign,
    CampaignKind,
    CapRule,
    CapSubject,
    CapWindow,
    Channel,
    Config,
    ContactPressure,
    DedupRule,
    DedupScope,
    Partner,
    PressureUnit,
    RateLimit,
    ServerSettings,
)
from gateway.errors import ConfigError, ConfigIssue
from gateway.types import AdvertiserId, CampaignId, ChannelId, PartnerId

# Ids end up in Redis keys and Prometheus labels: short, lower-case, no separators of either.
_ID = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
_ID_RULE = "use 1-63 of a-z 0-9 - _, starting with a letter or digit"
_KEY_HASH = re.compile(r"sha256:([0-9a-f]{64})")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_PERIODS: Final = tuple(period.value for period in CalendarPeriod)
_MISSING: Final = object()  # a required key that is absent (already reported)

_E = TypeVar("_E", bound=StrEnum)


def load_config(path: str | Path) -> Config:
    """Read, parse and validate the YAML file at ``path``.

    Raises ``ConfigError`` for everything that can go wrong, including a missing file and a
    YAML syntax error (the issue's path is then ``file:line:column``).
    """
    name = str(path)
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError([ConfigIssue(name, f"cannot read: {exc.strerror or exc}")]) from None
    try:
        data = _load_yaml(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError([ConfigIssue(name, f"not UTF-8 text (byte {exc.start})")]) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{name}:{mark.line + 1}:{mark.column + 1}" if mark is not None else name
        why = ": ".join(part for part in (exc.context, exc.problem) if part)
        raise ConfigError([ConfigIssue(where, f"YAML syntax error: {why}")]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([ConfigIssue(name, f"YAML error: {exc}")]) from None
    return parse_config(data, checksum=hashlib.sha256(raw).hexdigest())


def parse_config(data: object, *, checksum: str = "") -> Config:
    """Validate ``data`` (what ``yaml.safe_load`` returned) and build the ``Config``.

    Raises ``ConfigError`` listing every problem found.
    """
    r = _Reader()
    root = r.mapping(
        data,
        "",
        "a mapping with channels, advertisers, campaigns and partners",
        required=("channels", "advertisers", "campaigns", "partners"),
        optional=("server", "contact_pressure"),
    )
    server = _server(r, _opt(root, "server", {}), "server")
    channels = {
        ChannelId(id_): Channel(ChannelId(id_), name)
        for id_, name in _named(r, root.get("channels", _MISSING), "channels", "channel").items()
    }
    advertisers = {
        AdvertiserId(id_): Advertiser(AdvertiserId(id_), name)
        for id_, name in _named(
            r, root.get("advertisers", _MISSING), "advertisers", "advertiser"
        ).items()
    }
    pressure_data = _opt(root, "contact_pressure", None)
    pressure = None if pressure_data is None else _pressure(r, pressure_data, "contact_pressure")
    campaigns: dict[CampaignId, Campaign] = {}
    for path, id_, fields in _entries(r, root.get("campaigns", _MISSING), "campaigns", "campaign"):
        campaign = _campaign(r, path, id_, fields, advertisers, channels)
        if id_:
            campaigns[CampaignId(id_)] = campaign
    partners: dict[PartnerId, Partner] = {}
    key_owners: dict[str, str] = {}
    for path, id_, fields in _entries(r, root.get("partners", _MISSING), "partners", "partner"):
        partner = _partner(r, path, id_, fields, channels, campaigns, key_owners)
        if id_:
            partners[PartnerId(id_)] = partner
    if r.issues:
        raise ConfigError(r.issues)
    return Config(server, channels, advertisers, campaigns, partners, pressure, checksum)


# --- sections ----------------------------------------------------------------------------


def _server(r: _Reader, value: object, path: str) -> ServerSettings:
    defaults = ServerSettings()
    names = ("max_body_bytes", "batch_max_leads", "batch_max_body_bytes", "idempotency_ttl_s")
    fields = r.mapping(value, path, "a mapping", optional=names)
    given = {
        name: r.integer(fields[name], _join(path, name), minimum=1, fallback=1)
        for name in names
        if fields.get(name) is not None
    }
    return ServerSettings(**{name: given.get(name, getattr(defaults, name)) for name in names})


def _named(r: _Reader, value: object, path: str, kind: str) -> dict[str, str]:
    """Channels and advertisers: ``{id, name}`` entries, as id → display name."""
    return {
        id_: _name(r, fields, p, id_) for p, id_, fields in _entries(r, value, path, kind) if id_
    }


def _pressure(r: _Reader, value: object, path: str) -> ContactPressure:
    fields = r.mapping(value, path, "a mapping", required=("limit", "window"), optional=("per",))
    return ContactPressure(
        limit=r.integer(fields.get("limit", _MISSING), _join(path, "limit"), 1, fallback=1),
        window_s=r.duration(fields.get("window", _MISSING), _join(path, "window")),
        per=r.choice(_opt(fields, "per", "advertiser"), _join(path, "per"), PressureUnit),
    )


def _campaign(
    r: _Reader,
    path: str,
    id_: str,
    fields: dict[str, object],
    advertisers: Collection[str],
    channels: Collection[str],
) -> Campaign:
    at = path + "."
    advertiser = r.ref(
        fields.get("advertiser", _MISSING), at + "advertiser", "advertiser", advertisers
    )
    name = _name(r, fields, path, id_)
    kind = r.choice(fields.get("kind", _MISSING), at + "kind", CampaignKind)
    zone = _zone(r, _opt(fields, "timezone", "UTC"), at + "timezone")
    start_at = _instant(r, _opt(fields, "start", None), at + "start", zone, end=False)
    end_at = _instant(r, _opt(fields, "end", None), at + "end", zone, end=True)
    if kind is CampaignKind.PEAK:
        for key in ("start", "end"):
            if fields.get(key) is None:
                r.fail(at + key, "a peak campaign needs a start and an end (ISO 8601 with offset)")
    if start_at is not None and end_at is not None and end_at <= start_at:
        r.fail(at + "end", f"{_show(fields['end'])} is not after start {_show(fields['start'])}")
    identity = _field_names(
        r, _opt(fields, "identity", list(IDENTITY_FIELDS)), at + "identity", IDENTITY_FIELDS
    )
    if fields.get("identity") == []:
        r.fail(at + "identity", f"needs at least one of {', '.join(IDENTITY_FIELDS)}")
    required = _field_names(r, _opt(fields, "required", ["email"]), at + "required", LEAD_FIELDS)
    region = _region(r, _opt(fields, "phone_region", "FR"), at + "phone_region")
    pressure = r.boolean(_opt(fields, "contact_pressure", True), at + "contact_pressure")
    cpl = _opt(fields, "cpl", None)
    return Campaign(
        id=CampaignId(id_),
        advertiser=AdvertiserId(advertiser),
        name=name,
        kind=kind,
        timezone=zone,
        identity_fields=identity,
        required_fields=required,
        phone_region=region,
        contact_pressure=pressure,
        start_at=start_at,
        end_at=end_at,
        cpl=None if cpl is None else r.number(cpl, at + "cpl", positive=False),
        dedup=_dedup_rules(r, _opt(fields, "dedup", []), at + "dedup", channels),
        caps=_cap_rules(r, _opt(fields, "caps", []), at + "caps"),
    )


def _dedup_rules(
    r: _Reader, value: object, path: str, channels: Collection[str]
) -> tuple[DedupRule, ...]:
    rules: list[DedupRule] = []
    scopes_at: dict[DedupScope, str] = {}
    for i, item in enumerate(r.items(value, path, "a list of {scope, window} rules")):
        p = f"{path}[{i}]"
        fields = r.mapping(
            item, p, "a mapping", required=("scope", "window"), optional=("channels",)
        )
        before = len(r.issues)
        scope = r.choice(fields.get("scope", _MISSING), p + ".scope", DedupScope)
        if len(r.issues) == before and "scope" in fields:
            if scope in scopes_at:
                r.fail(
                    p + ".scope", f"scope {scope.value!r} already has a rule at {scopes_at[scope]}"
                )
            scopes_at.setdefault(scope, p)
        window_s = r.duration(fields.get("window", _MISSING), p + ".window")
        per_channel: dict[ChannelId, int] = {}
        overrides = r.mapping(
            _opt(fields, "channels", {}), p + ".channels", "a mapping of channel: window"
        )
        for channel, window in overrides.items():
            cp = f"{p}.channels.{channel}"
            per_channel[ChannelId(r.ref(channel, cp, "channel", channels))] = r.duration(window, cp)
        rules.append(DedupRule(scope, window_s, per_channel))
    return tuple(rules)


def _cap_rules(r: _Reader, value: object, path: str) -> tuple[CapRule, ...]:
    rules: list[CapRule] = []
    reasons_at: dict[str, str] = {}
    for i, item in enumerate(r.items(value, path, "a list of {subject, window, limit} caps")):
        p = f"{path}[{i}]"
        before = len(r.issues)
        fields = r.mapping(item, p, "a mapping", required=("subject", "window", "limit"))
        rule = CapRule(
            subject=r.choice(fields.get("subject", _MISSING), p + ".subject", CapSubject),
            window=_cap_window(r, fields.get("window", _MISSING), p + ".window"),
            limit=r.integer(fields.get("limit", _MISSING), p + ".limit", 1, fallback=1),
        )
        if len(r.issues) > before:
            continue  # a rule built from fallbacks would report a false duplicate
        # One reason code per cap: publishers, metrics and the decision script key on it.
        if rule.reason in reasons_at:
            r.fail(p, f"a second {rule.reason} cap (the first is {reasons_at[rule.reason]})")
        reasons_at.setdefault(rule.reason, p)
        rules.append(rule)
    return tuple(rules)


def _cap_window(r: _Reader, value: object, path: str) -> CapWindow:
    if value is _MISSING:
        return CapWindow(rolling_s=1)
    if isinstance(value, str) and value in _PERIODS:
        return CapWindow(period=CalendarPeriod(value))
    try:
        return CapWindow(rolling_s=_duration(value))
    except ValueError as exc:
        r.fail(path, f"{exc}, nor one of {', '.join(_PERIODS)}")
        return CapWindow(rolling_s=1)


def _partner(
    r: _Reader,
    path: str,
    id_: str,
    fields: dict[str, object],
    channels: Collection[str],
    campaigns: Collection[str],
    key_owners: dict[str, str],
) -> Partner:
    at = path + "."
    hashes: list[str] = []
    keys = r.items(fields.get("api_keys", _MISSING), at + "api_keys", "a list of sha256:<hex>")
    if fields.get("api_keys") == []:
        r.fail(at + "api_keys", "needs at least one key hash (make one with `leadgate hash-key`)")
    for i, key in enumerate(keys):
        p = f"{at}api_keys[{i}]"
        match = _KEY_HASH.fullmatch(key) if isinstance(key, str) else None
        if match is None:
            # Never echo the value: people paste the plain key here by mistake.
            r.fail(p, "expected 'sha256:' and 64 lower-case hex digits (`leadgate hash-key`)")
        elif match.group(1) in hashes:
            r.fail(p, "this key hash is listed twice")
        elif match.group(1) in key_owners:
            r.fail(p, f"this key hash is already used by partner {key_owners[match.group(1)]!r}")
        else:
            hashes.append(match.group(1))
            key_owners[match.group(1)] = id_
    rate = _opt(fields, "rate_limit", None)
    return Partner(
        id=PartnerId(id_),
        name=_name(r, fields, path, id_),
        api_key_hashes=tuple(hashes),
        channels=tuple(
            ChannelId(c)
            for c in r.refs(fields.get("channels", _MISSING), at + "channels", "channel", channels)
        ),
        campaigns=tuple(
            CampaignId(c)
            for c in r.refs(
                fields.get("campaigns", _MISSING),
                at + "campaigns",
                "campaign",
                campaigns,
                empty=True,
            )
        ),
        rate_limit=None if rate is None else _rate_limit(r, rate, at + "rate_limit"),
    )


def _rate_limit(r: _Reader, value: object, path: str) -> RateLimit:
    fields = r.mapping(value, path, "a mapping", required=("per_s", "burst"))
    return RateLimit(
        per_s=r.number(fields.get("per_s", _MISSING), path + ".per_s", positive=True),
        burst=r.integer(fields.get("burst", _MISSING), path + ".burst", 1, fallback=1),
    )


# --- values ------------------------------------------------------------------------------


_ENTRY_KEYS: Final[dict[str, tuple[tuple[str, ...], tuple[str, ...]]]] = {
    "channel": (("id",), ("name",)),
    "advertiser": (("id",), ("name",)),
    "campaign": (
        ("id", "advertiser", "kind"),
        (
            *("name", "start", "end", "timezone", "identity", "required", "phone_region"),
            *("contact_pressure", "cpl", "dedup", "caps"),
        ),
    ),
    "partner": (("id", "api_keys", "channels", "campaigns"), ("name", "rate_limit")),
}


def _entries(
    r: _Reader, value: object, path: str, kind: str
) -> Iterator[tuple[str, str, dict[str, object]]]:
    """Yield ``(path, id, fields)`` of each entry; ``id`` is ``""`` when invalid (reported)."""
    allowed = _ENTRY_KEYS[kind]
    first_at: dict[str, str] = {}
    for i, item in enumerate(r.items(value, path, f"a list of {kind}s")):
        p = f"{path}[{i}]"
        fields = r.mapping(
            item, p, f"a {kind} (a mapping)", required=allowed[0], optional=allowed[1]
        )
        id_ = r.id(fields.get("id", _MISSING), p + ".id", kind)
        if id_ in first_at:
            r.fail(p + ".id", f"duplicate {kind} id {id_!r} (first at {first_at[id_]})")
        elif id_:
            first_at[id_] = p
        yield p, id_, fields


def _name(r: _Reader, fields: Mapping[str, object], path: str, id_: str) -> str:
    name = _opt(fields, "name", id_)
    if not isinstance(name, str) or not name.strip():
        r.fail(path + ".name", f"expected a display name (text), got {_show(name)}")
        return id_
    return name


def _zone(r: _Reader, value: object, path: str) -> ZoneInfo:
    try:
        if isinstance(value, str):
            return ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        pass  # ValueError: "../x" or "" are not even zone names; OSError: "Europe" is a folder
    r.fail(path, f"{_show(value)} is not an IANA time zone like Europe/Paris or UTC")
    return ZoneInfo("UTC")


def _instant(r: _Reader, value: object, path: str, zone: ZoneInfo, *, end: bool) -> float | None:
    """Epoch seconds of a start/end. A naive time is in the campaign's zone; a bare date
    means the start of that day, or for an end the end of that day (the whole day counts)."""
    if value is None:
        return None
    if isinstance(value, str):
        with contextlib.suppress(ValueError):  # not ISO 8601: reported below with the value
            value = (date if _DATE.fullmatch(value) else datetime).fromisoformat(value)
    if isinstance(value, date) and not isinstance(value, datetime):
        value = datetime.combine(value + timedelta(days=1 if end else 0), time())
    if not isinstance(value, datetime):
        r.fail(path, f"{_show(value)} is not an ISO 8601 date-time like 2026-11-20T00:00:00+01:00")
        return None
    return (value if value.tzinfo is not None else value.replace(tzinfo=zone)).timestamp()


def _field_names(r: _Reader, value: object, path: str, allowed: tuple[str, ...]) -> tuple[str, ...]:
    names: list[str] = []
    for i, name in enumerate(r.items(value, path, f"a list of fields among {', '.join(allowed)}")):
        if not isinstance(name, str) or name not in allowed:
            r.fail(f"{path}[{i}]", f"{_show(name)} is not one of {', '.join(allowed)}")
        elif name in names:
            r.fail(f"{path}[{i}]", f"{name!r} is listed twice")
        else:
            names.append(name)
    return tuple(names)


def _region(r: _Reader, value: object, path: str) -> str:
    if isinstance(value, str) and value in phonenumbers.SUPPORTED_REGIONS:
        return value
    hint = ""
    if isinstance(value, str) and value.upper() in phonenumbers.SUPPORTED_REGIONS:
        hint = f" (write {value.upper()!r})"
    r.fail(path, f"{_show(value)} is not a phone region code like FR, BE, CH{hint}")
    return "FR"


def _duration(value: object) -> int:
    """``parse_duration_s`` for a value of any type YAML may produce."""
    if isinstance(value, str | int):
        return parse_duration_s(value)
    raise ValueError(f"{_show(value)} is not a duration like 30m, 1h, 1d")


def _opt(fields: Mapping[str, object], key: str, default: object) -> object:
    """An optional key's value; an empty value (``key:`` with everything below commented
    out) counts as absent, which is what the user meant."""
    value = fields.get(key)
    return default if value is None else value


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _show(value: object) -> str:
    """The bad value as a message shows it: short, and never a whole structure."""
    if value is None:
        return "nothing"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    text = repr(value.isoformat() if isinstance(value, date) else value)
    return text if len(text) <= 60 else text[:57] + "..."


class _Reader:
    """Collects issues; every reader reports into ``issues`` and returns a fallback on failure.

    A value of ``_MISSING`` (a required key that is absent, already reported by ``mapping``)
    returns the fallback silently so one problem is reported once.
    """

    def __init__(self) -> None:
        self.issues: list[ConfigIssue] = []

    def fail(self, path: str, message: str) -> None:
        self.issues.append(ConfigIssue(path, message))

    def mapping(
        self,
        value: object,
        path: str,
        what: str,
        *,
        required: tuple[str, ...] = (),
        optional: tuple[str, ...] = (),
    ) -> dict[str, object]:
        if value is _MISSING:
            return {}
        if not isinstance(value, dict):
            self.fail(path, f"expected {what}, got {_show(value)}")
            return {}
        allowed = required + optional
        fields: dict[str, object] = {}
        for key, item in value.items():
            # Without declared keys (dedup `channels:`) every key is data, checked by the caller.
            if not allowed or (isinstance(key, str) and key in allowed):
                fields[str(key)] = item
                continue
            close = difflib.get_close_matches(str(key), allowed, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            self.fail(_join(path, str(key)), f"unknown key{hint}")
        for key in required:
            if key not in value:
                self.fail(_join(path, key), "required key is missing")
        return fields

    def items(self, value: object, path: str, what: str) -> list[object]:
        if value is _MISSING:
            return []
        if not isinstance(value, list):
            self.fail(path, f"expected {what}, got {_show(value)}")
            return []
        return value

    def id(self, value: object, path: str, kind: str) -> str:
        if value is _MISSING:
            return ""
        if not isinstance(value, str) or not _ID.fullmatch(value):
            self.fail(path, f"{_show(value)} is not a valid {kind} id ({_ID_RULE})")
            return ""
        return value

    def ref(self, value: object, path: str, kind: str, known: Collection[str]) -> str:
        if value is _MISSING:
            return ""
        if not isinstance(value, str):
            self.fail(path, f"expected a {kind} id, got {_show(value)}")
            return ""
        if value not in known:
            names = list(known)  # file order, which is how the user thinks of them
            listed = ", ".join(names[:10]) + (", ..." if len(names) > 10 else "") or "none"
            self.fail(path, f"unknown {kind} {value!r} (known: {listed})")
        return value

    def refs(
        self, value: object, path: str, kind: str, known: Collection[str], *, empty: bool = False
    ) -> tuple[str, ...]:
        ids: list[str] = []
        items = self.items(value, path, f"a list of {kind} ids")
        if value == [] and not empty:
            self.fail(path, f"needs at least one {kind}")
        for i, item in enumerate(items):
            id_ = self.ref(item, f"{path}[{i}]", kind, known)
            if id_ in ids:
                self.fail(f"{path}[{i}]", f"{id_!r} is listed twice")
            elif id_:
                ids.append(id_)
        return tuple(ids)

    def choice(self, value: object, path: str, enum: type[_E]) -> _E:
        options = [member.value for member in enum]
        if value is _MISSING:
            return enum(options[0])
        if isinstance(value, str) and value in options:
            return enum(value)
        self.fail(path, f"{_show(value)} is not one of {', '.join(options)}")
        return enum(options[0])

    def integer(self, value: object, path: str, minimum: int, *, fallback: int) -> int:
        if value is _MISSING:
            return fallback
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(path, f"expected a whole number, got {_show(value)}")
            return fallback
        if value < minimum:
            self.fail(path, f"{value} must be at least {minimum}")
            return fallback
        return value

    def number(self, value: object, path: str, *, positive: bool) -> float:
        if value is _MISSING:
            return 1.0
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            self.fail(path, f"expected a number, got {_show(value)}")
            return 1.0
        if value < 0 or (positive and value == 0):
            self.fail(path, f"{value} must be {'more than 0' if positive else '0 or more'}")
            return 1.0
        return float(value)

    def boolean(self, value: object, path: str) -> bool:
        if not isinstance(value, bool):
            self.fail(path, f"expected true or false, got {_show(value)}")
            return False
        return value

    def duration(self, value: object, path: str) -> int:
        if value is _MISSING:
            return 1
        try:
            return _duration(value)
        except ValueError as exc:
            self.fail(path, str(exc))
            return 1


# --- YAML --------------------------------------------------------------------------------


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader, but a key repeated in one mapping is an error: PyYAML would keep
    the last silently, so a second ``caps:`` in a campaign would drop the first caps."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        seen: dict[Hashable, yaml.Node] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *defaults` then overriding a key is the point of merges
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, Hashable):
                continue  # the base class reports unhashable keys itself
            if key in seen:
                first = seen[key].start_mark.line + 1
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"duplicate key {key!r} (first at line {first})",
                    key_node.start_mark,
                )
            seen[key] = key_node
        return super().construct_mapping(node, deep)


def _load_yaml(text: str) -> object:
    loader = _StrictLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()
