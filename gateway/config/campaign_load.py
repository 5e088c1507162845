"""Reading one ``campaigns[]`` entry of the YAML file into a ``Campaign``: its advertiser,
kind and dates (in its time zone), identity and required fields, phone region, dedup rules,
caps, scoring and feedback windows, and the rule packs it names.

Every problem is reported into the ``Reader`` with its path (``campaigns[2].caps[0].window``);
``config.load`` walks the list, checks each entry's keys and id, and calls ``parse_campaign``.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Collection
from datetime import date, datetime, time, timedelta
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers

from gateway.config.model import (
    CalendarPeriod,
    Campaign,
    CampaignKind,
    CapRule,
    CapSubject,
    CapWindow,
    DedupRule,
    DedupScope,
)
from gateway.config.reader import MISSING, Reader, display_name, duration_of, opt, show
from gateway.leads.lead import IDENTITY_FIELDS, LEAD_FIELDS
from gateway.rules.pack import PackLibrary
from gateway.types import AdvertiserId, CampaignId, ChannelId

_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_PERIODS: Final = tuple(period.value for period in CalendarPeriod)


def parse_campaign(
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
    name = display_name(r, fields, path, id_)
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
