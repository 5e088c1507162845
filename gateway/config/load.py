"""Reading the YAML configuration into ``config.model`` objects, reporting every problem at once.

A typo in this file can silently disable a cap or a dedup window, and money is paid per lead,
so reading is strict: unknown keys, duplicate keys, wrong types and dangling references are
all errors. Every problem is collected (with its path, ``campaigns[2].caps[0].window``, and
the bad value) before one ``ConfigError`` is raised, so a user fixes the file in one pass.

Validators never stop at the first problem: each one reports into a ``Reader`` and returns
a harmless fallback, so the rest of the file is still checked. The objects built from
fallbacks are thrown away: ``parse_config`` raises whenever anything was reported.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import re
from collections.abc import Collection, Iterator, Mapping
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
import yaml

from gateway.config.delivery import DeliverySettings
from gateway.config.delivery_load import check_timeout, parse_settings
from gateway.config.endpoint_load import parse_endpoint
from gateway.config.model import (
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
    SuppressionList,
    SuppressionRule,
)
from gateway.config.reader import MISSING, Reader, duration_of, join, load_yaml, opt, show
from gateway.errors import ConfigError, ConfigIssue
from gateway.leads.lead import IDENTITY_FIELDS, LEAD_FIELDS
from gateway.rules.pack import PackLibrary
from gateway.types import AdvertiserId, CampaignId, ChannelId, PartnerId

_KEY_HASH = re.compile(r"sha256:([0-9a-f]{64})")
#: Reason codes are dotted lower-case words: they are API values and metric labels.
_REASON = re.compile(r"[a-z][a-z0-9_]*(\.[a-z0-9_]+)*")
_REASON_RULE = "dotted lower-case words, e.g. suppressed.optout"
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_PERIODS: Final = tuple(period.value for period in CalendarPeriod)


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
        data = load_yaml(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError([ConfigIssue(name, f"not UTF-8 text (byte {exc.start})")]) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{name}:{mark.line + 1}:{mark.column + 1}" if mark is not None else name
        why = ": ".join(part for part in (exc.context, exc.problem) if part)
        raise ConfigError([ConfigIssue(where, f"YAML syntax error: {why}")]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([ConfigIssue(name, f"YAML error: {exc}")]) from None
    checksum = hashlib.sha256(raw).hexdigest()
    return parse_config(data, checksum=checksum, base_dir=Path(path).parent)


def parse_config(data: object, *, checksum: str = "", base_dir: Path | None = None) -> Config:
    """Validate ``data`` (what ``yaml.safe_load`` returned) and build the ``Config``.

    ``base_dir``: the config file's directory, which a relative ``rules_dir`` is read from
    (default: the working directory). The checksum of a config that names rule packs covers
    the packs' bytes too, so editing a pack changes it.
    Raises ``ConfigError`` listing every problem found.
    """
    r = Reader()
    root = r.mapping(
        data,
        "",
        "a mapping with channels, advertisers, campaigns and partners",
        required=("channels", "advertisers", "campaigns", "partners"),
        optional=("server", "contact_pressure", "suppression_lists", "delivery", "rules_dir"),
    )
    server = _server(r, opt(root, "server", {}), "server")
    channels = {
        ChannelId(id_): Channel(ChannelId(id_), name)
        for id_, name in _named(r, root.get("channels", MISSING), "channels", "channel").items()
    }
    delivery = parse_settings(r, opt(root, "delivery", {}), "delivery")
    # API key hash -> its owner: a key opens the partner API or the feedback API, never both.
    key_owners: dict[str, str] = {}
    advertisers = _advertisers(r, root.get("advertisers", MISSING), delivery, key_owners)
    suppression_lists = {
        id_: _suppression_list(r, p, id_, fields)
        for p, id_, fields in _entries(
            r, opt(root, "suppression_lists", []), "suppression_lists", "suppression list"
        )
        if id_
    }
    rules_dir = opt(root, "rules_dir", "rules")
    if not isinstance(rules_dir, str) or not rules_dir.strip():
        r.fail("rules_dir", f"expected a directory path, got {show(rules_dir)}")
        rules_dir = "rules"
    packs = PackLibrary(r, (base_dir or Path()) / rules_dir, known_lists=suppression_lists)
    pressure_data = opt(root, "contact_pressure", None)
    pressure = None if pressure_data is None else _pressure(r, pressure_data, "contact_pressure")
    campaigns: dict[CampaignId, Campaign] = {}
    for path, id_, fields in _entries(r, root.get("campaigns", MISSING), "campaigns", "campaign"):
        campaign = _campaign(r, path, id_, fields, advertisers, channels, packs)
        if id_:
            campaigns[CampaignId(id_)] = campaign
    partners: dict[PartnerId, Partner] = {}
    for path, id_, fields in _entries(r, root.get("partners", MISSING), "partners", "partner"):
        partner = _partner(r, path, id_, fields, channels, campaigns, key_owners)
        if id_:
            partners[PartnerId(id_)] = partner
    if r.issues:
        raise ConfigError(r.issues)
    campaigns = _with_network_suppression(campaigns, suppression_lists)
    return Config(
        server,
        channels,
        advertisers,
        campaigns,
        partners,
        pressure,
        suppression_lists=suppression_lists,
        delivery=delivery,
        checksum=packs.checksum(checksum),
    )


# --- sections ----------------------------------------------------------------------------


def _server(r: Reader, value: object, path: str) -> ServerSettings:
    defaults = ServerSettings()
    names = ("max_body_bytes", "batch_max_leads", "batch_max_body_bytes", "idempotency_ttl_s")
    fields = r.mapping(value, path, "a mapping", optional=names)
    given = {
        name: r.integer(fields[name], join(path, name), minimum=1, fallback=1)
        for name in names
        if fields.get(name) is not None
    }
    return ServerSettings(**{name: given.get(name, getattr(defaults, name)) for name in names})


def _named(r: Reader, value: object, path: str, kind: str) -> dict[str, str]:
    """Channels and advertisers: ``{id, name}`` entries, as id → display name."""
    return {
        id_: _name(r, fields, p, id_) for p, id_, fields in _entries(r, value, path, kind) if id_
    }


def _advertisers(
    r: Reader, value: object, delivery: DeliverySettings, key_owners: dict[str, str]
) -> dict[AdvertiserId, Advertiser]:
    """Advertisers: ``{id, name, delivery, api_keys}``; ``delivery`` is the CRM endpoint and
    ``api_keys`` the feedback API's key hashes (both optional)."""
    advertisers: dict[AdvertiserId, Advertiser] = {}
    for p, id_, fields in _entries(r, value, "advertisers", "advertiser"):
        endpoint = None
        if fields.get("delivery") is not None:
            endpoint = parse_endpoint(r, fields["delivery"], p + ".delivery")
            check_timeout(r, delivery, p + ".delivery", endpoint)
        hashes = _advertiser_keys(r, opt(fields, "api_keys", []), p + ".api_keys", key_owners)
        if id_:
            advertisers[AdvertiserId(id_)] = Advertiser(
                AdvertiserId(id_), _name(r, fields, p, id_), endpoint, hashes
            )
            key_owners.update({h: f"advertiser {id_}" for h in hashes})
    return advertisers


def _advertiser_keys(
    r: Reader, value: object, path: str, key_owners: Mapping[str, str]
) -> tuple[str, ...]:
    """An advertiser's feedback API keys (``sha256:<hex>``), unique across the whole file."""
    hashes: list[str] = []
    for i, key in enumerate(r.items(value, path, "a list of sha256:<hex>")):
        match = _KEY_HASH.fullmatch(key) if isinstance(key, str) else None
        if match is None:
            # Never echo the value: people paste the plain key here by mistake.
            r.fail(f"{path}[{i}]", "expected 'sha256:' and 64 lower-case hex digits")
        elif match.group(1) in hashes or match.group(1) in key_owners:
            owner = key_owners.get(match.group(1), "this advertiser")
            r.fail(f"{path}[{i}]", f"this key hash is already used by {owner}")
        else:
            hashes.append(match.group(1))
    return tuple(hashes)


def _suppression_list(
    r: Reader, path: str, id_: str, fields: Mapping[str, object]
) -> SuppressionList:
    reason = opt(fields, "reason", "suppressed")
    if not isinstance(reason, str) or not _REASON.fullmatch(reason):
        r.fail(join(path, "reason"), f"{show(reason)} is not a reason code ({_REASON_RULE})")
        reason = "suppressed"
    network = opt(fields, "network", False)
    return SuppressionList(
        id_, _name(r, fields, path, id_), r.boolean(network, join(path, "network")), reason
    )


def _with_network_suppression(
    campaigns: Mapping[CampaignId, Campaign], lists: Mapping[str, SuppressionList]
) -> dict[CampaignId, Campaign]:
    """Every campaign checks the network-wide lists, after the lists its rule packs name."""
    network = tuple(
        SuppressionRule(f"list-{s.id}", s.reason, f"on the {s.name} list", (s.id,))
        for s in lists.values()
        if s.network
    )
    if not network:
        return dict(campaigns)
    return {
        id_: dataclasses.replace(c, suppression=c.suppression + network)
        for id_, c in campaigns.items()
    }


def _pressure(r: Reader, value: object, path: str) -> ContactPressure:
    fields = r.mapping(value, path, "a mapping", required=("limit", "window"), optional=("per",))
    return ContactPressure(
        limit=r.integer(fields.get("limit", MISSING), join(path, "limit"), 1, fallback=1),
        window_s=r.duration(fields.get("window", MISSING), join(path, "window")),
        per=r.choice(opt(fields, "per", "advertiser"), join(path, "per"), PressureUnit),
    )


def _campaign(
    r: Reader,
    path: str,
    id_: str,
    fields: dict[str, object],
    advertisers: Collection[str],
    channels: Collection[str],
    packs: PackLibrary,
) -> Campaign:
    at = path + "."
    advertiser = r.ref(
        fields.get("advertiser", MISSING), at + "advertiser", "advertiser", advertisers
    )
    name = _name(r, fields, path, id_)
    kind = r.choice(fields.get("kind", MISSING), at + "kind", CampaignKind)
    zone = _zone(r, opt(fields, "timezone", "UTC"), at + "timezone")
    start_at = _instant(r, opt(fields, "start", None), at + "start", zone, end=False)
    end_at = _instant(r, opt(fields, "end", None), at + "end", zone, end=True)
    if kind is CampaignKind.PEAK:
        for key in ("start", "end"):
            if fields.get(key) is None:
                r.fail(at + key, "a peak campaign needs a start and an end (ISO 8601 with offset)")
    if start_at is not None and end_at is not None and end_at <= start_at:
        r.fail(at + "end", f"{show(fields['end'])} is not after start {show(fields['start'])}")
    identity = _field_names(
        r, opt(fields, "identity", list(IDENTITY_FIELDS)), at + "identity", IDENTITY_FIELDS
    )
    if fields.get("identity") == []:
        r.fail(at + "identity", f"needs at least one of {', '.join(IDENTITY_FIELDS)}")
    required = _field_names(r, opt(fields, "required", ["email"]), at + "required", LEAD_FIELDS)
    region = _region(r, opt(fields, "phone_region", "FR"), at + "phone_region")
    pressure = r.boolean(opt(fields, "contact_pressure", True), at + "contact_pressure")
    cpl = opt(fields, "cpl", None)
    min_score = opt(fields, "min_score", None)
    if min_score is not None:
        if isinstance(min_score, bool) or not isinstance(min_score, int | float):
            r.fail(at + "min_score", f"expected a number, got {show(min_score)}")
            min_score = None
        else:
            min_score = float(min_score)
    return_window_s = r.duration(opt(fields, "return_window", "30d"), at + "return_window")
    feedback_window_s = max(90 * 86_400, return_window_s)
    if fields.get("feedback_window") is not None:
        feedback_window_s = r.duration(fields["feedback_window"], at + "feedback_window")
    if feedback_window_s < return_window_s:
        r.fail(at + "feedback_window", "must be at least the return_window (default 30d)")
    rules = packs.campaign_rules(
        opt(fields, "rules", []), at + "rules", default_country=region, min_score=min_score,
        min_score_path=at + "min_score",
    )  # fmt: skip
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
        dedup=_dedup_rules(r, opt(fields, "dedup", []), at + "dedup", channels),
        caps=_cap_rules(r, opt(fields, "caps", []), at + "caps"),
        suppression=rules.suppression,
        velocity=rules.velocity,
        rules=rules.rule_set,
        min_score=min_score,
        return_window_s=return_window_s,
        feedback_window_s=feedback_window_s,
    )


def _dedup_rules(
    r: Reader, value: object, path: str, channels: Collection[str]
) -> tuple[DedupRule, ...]:
    rules: list[DedupRule] = []
    scopes_at: dict[DedupScope, str] = {}
    for i, item in enumerate(r.items(value, path, "a list of {scope, window} rules")):
        p = f"{path}[{i}]"
        fields = r.mapping(
            item, p, "a mapping", required=("scope", "window"), optional=("channels",)
        )
        before = len(r.issues)
        scope = r.choice(fields.get("scope", MISSING), p + ".scope", DedupScope)
        if len(r.issues) == before and "scope" in fields:
            if scope in scopes_at:
                r.fail(
                    p + ".scope", f"scope {scope.value!r} already has a rule at {scopes_at[scope]}"
                )
            scopes_at.setdefault(scope, p)
        window_s = r.duration(fields.get("window", MISSING), p + ".window")
        per_channel: dict[ChannelId, int] = {}
        overrides = r.mapping(
            opt(fields, "channels", {}), p + ".channels", "a mapping of channel: window"
        )
        for channel, window in overrides.items():
            cp = f"{p}.channels.{channel}"
            per_channel[ChannelId(r.ref(channel, cp, "channel", channels))] = r.duration(window, cp)
        rules.append(DedupRule(scope, window_s, per_channel))
    return tuple(rules)


def _cap_rules(r: Reader, value: object, path: str) -> tuple[CapRule, ...]:
    rules: list[CapRule] = []
    reasons_at: dict[str, str] = {}
    for i, item in enumerate(r.items(value, path, "a list of {subject, window, limit} caps")):
        p = f"{path}[{i}]"
        before = len(r.issues)
        fields = r.mapping(item, p, "a mapping", required=("subject", "window", "limit"))
        rule = CapRule(
            subject=r.choice(fields.get("subject", MISSING), p + ".subject", CapSubject),
            window=_cap_window(r, fields.get("window", MISSING), p + ".window"),
            limit=r.integer(fields.get("limit", MISSING), p + ".limit", 1, fallback=1),
        )
        if len(r.issues) > before:
            continue  # a rule built from fallbacks would report a false duplicate
        # One reason code per cap: publishers, metrics and the decision script key on it.
        if rule.reason in reasons_at:
            r.fail(p, f"a second {rule.reason} cap (the first is {reasons_at[rule.reason]})")
        reasons_at.setdefault(rule.reason, p)
        rules.append(rule)
    return tuple(rules)


def _cap_window(r: Reader, value: object, path: str) -> CapWindow:
    if value is MISSING:
        return CapWindow(rolling_s=1)
    if isinstance(value, str) and value in _PERIODS:
        return CapWindow(period=CalendarPeriod(value))
    try:
        return CapWindow(rolling_s=duration_of(value))
    except ValueError as exc:
        r.fail(path, f"{exc}, nor one of {', '.join(_PERIODS)}")
        return CapWindow(rolling_s=1)


def _partner(
    r: Reader,
    path: str,
    id_: str,
    fields: dict[str, object],
    channels: Collection[str],
    campaigns: Collection[str],
    key_owners: dict[str, str],
) -> Partner:
    at = path + "."
    hashes: list[str] = []
    keys = r.items(fields.get("api_keys", MISSING), at + "api_keys", "a list of sha256:<hex>")
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
    rate = opt(fields, "rate_limit", None)
    return Partner(
        id=PartnerId(id_),
        name=_name(r, fields, path, id_),
        api_key_hashes=tuple(hashes),
        channels=tuple(
            ChannelId(c)
            for c in r.refs(fields.get("channels", MISSING), at + "channels", "channel", channels)
        ),
        campaigns=tuple(
            CampaignId(c)
            for c in r.refs(
                fields.get("campaigns", MISSING),
                at + "campaigns",
                "campaign",
                campaigns,
                empty=True,
            )
        ),
        rate_limit=None if rate is None else _rate_limit(r, rate, at + "rate_limit"),
    )


def _rate_limit(r: Reader, value: object, path: str) -> RateLimit:
    fields = r.mapping(value, path, "a mapping", required=("per_s", "burst"))
    return RateLimit(
        per_s=r.number(fields.get("per_s", MISSING), path + ".per_s", positive=True),
        burst=r.integer(fields.get("burst", MISSING), path + ".burst", 1, fallback=1),
    )


# --- values ------------------------------------------------------------------------------


_ENTRY_KEYS: Final[dict[str, tuple[tuple[str, ...], tuple[str, ...]]]] = {
    "channel": (("id",), ("name",)),
    "advertiser": (("id",), ("name", "delivery", "api_keys")),
    "suppression list": (("id",), ("name", "network", "reason")),
    "campaign": (
        ("id", "advertiser", "kind"),
        (
            *("name", "start", "end", "timezone", "identity", "required", "phone_region"),
            *("contact_pressure", "cpl", "dedup", "caps", "rules", "min_score"),
            *("return_window", "feedback_window"),
        ),
    ),
    "partner": (("id", "api_keys", "channels", "campaigns"), ("name", "rate_limit")),
}


def _entries(
    r: Reader, value: object, path: str, kind: str
) -> Iterator[tuple[str, str, dict[str, object]]]:
    """Yield ``(path, id, fields)`` of each entry; ``id`` is ``""`` when invalid (reported)."""
    allowed = _ENTRY_KEYS[kind]
    first_at: dict[str, str] = {}
    for i, item in enumerate(r.items(value, path, f"a list of {kind}s")):
        p = f"{path}[{i}]"
        fields = r.mapping(
            item, p, f"a {kind} (a mapping)", required=allowed[0], optional=allowed[1]
        )
        id_ = r.id(fields.get("id", MISSING), p + ".id", kind)
        if id_ in first_at:
            r.fail(p + ".id", f"duplicate {kind} id {id_!r} (first at {first_at[id_]})")
        elif id_:
            first_at[id_] = p
        yield p, id_, fields


def _name(r: Reader, fields: Mapping[str, object], path: str, id_: str) -> str:
    name = opt(fields, "name", id_)
    if not isinstance(name, str) or not name.strip():
        r.fail(path + ".name", f"expected a display name (text), got {show(name)}")
        return id_
    return name


def _zone(r: Reader, value: object, path: str) -> ZoneInfo:
    try:
        if isinstance(value, str):
            return ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        pass  # ValueError: "../x" or "" are not even zone names; OSError: "Europe" is a folder
    r.fail(path, f"{show(value)} is not an IANA time zone like Europe/Paris or UTC")
    return ZoneInfo("UTC")


def _instant(r: Reader, value: object, path: str, zone: ZoneInfo, *, end: bool) -> float | None:
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
        r.fail(path, f"{show(value)} is not an ISO 8601 date-time like 2026-11-20T00:00:00+01:00")
        return None
    return (value if value.tzinfo is not None else value.replace(tzinfo=zone)).timestamp()


def _field_names(r: Reader, value: object, path: str, allowed: tuple[str, ...]) -> tuple[str, ...]:
    names: list[str] = []
    for i, name in enumerate(r.items(value, path, f"a list of fields among {', '.join(allowed)}")):
        if not isinstance(name, str) or name not in allowed:
            r.fail(f"{path}[{i}]", f"{show(name)} is not one of {', '.join(allowed)}")
        elif name in names:
            r.fail(f"{path}[{i}]", f"{name!r} is listed twice")
        else:
            names.append(name)
    return tuple(names)


def _region(r: Reader, value: object, path: str) -> str:
    if isinstance(value, str) and value in phonenumbers.SUPPORTED_REGIONS:
        return value
    hint = ""
    if isinstance(value, str) and value.upper() in phonenumbers.SUPPORTED_REGIONS:
        hint = f" (write {value.upper()!r})"
    r.fail(path, f"{show(value)} is not a phone region code like FR, BE, CH{hint}")
    return "FR"
