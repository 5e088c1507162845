"""Reading one ``campaigns[]`` entry of the YAML file into a ``Campaign``: its advertiser (or
its buyers, read by ``config.buyer_load``), payout, kind and dates (in its time zone), identity
and required fields, phone region, dedup rules, caps, scoring and feedback windows, and the
rule packs it names.

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

from gateway.config.buyer_load import DISTRIBUTION_KEYS, parse_distribution
from gateway.config.limits_load import cap_rules, dedup_rules
from gateway.config.model import (
    Campaign,
    CampaignKind,
    CapSubject,
    DedupRule,
    DedupScope,
    Distribution,
    SaleMode,
)
from gateway.config.reader import MISSING, Reader, display_name, opt, show
from gateway.leads.lead import IDENTITY_FIELDS, LEAD_FIELDS
from gateway.rules.pack import PackLibrary
from gateway.types import AdvertiserId, CampaignId

_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
#: What a campaign sold to buyers cannot have, and why: it has no advertiser of its own.
_NO_ADVERTISER_SCOPE: Final = {
    DedupScope.ADVERTISER: "a campaign sold to buyers has no advertiser of its own: "
    "advertiser-wide dedup is each buyer's (buyers[i].dedup, the default)"
}
_NO_ADVERTISER_CAP: Final = {
    CapSubject.ADVERTISER: "a campaign sold to buyers has no advertiser of its own: "
    "cap each buyer (buyers[i].caps, subject buyer)"
}


def parse_campaign(
    r: Reader,
    path: str,
    id_: str,
    fields: dict[str, object],
    advertisers: Collection[str],
    channels: Collection[str],
    packs: PackLibrary,
    *,
    pressure_window_s: int | None = None,
) -> Campaign:
    """``pressure_window_s``: the window of the configuration's ``contact_pressure``, if any."""
    at = path + "."
    advertiser = None
    if "advertiser" in fields:
        advertiser = r.ref(fields["advertiser"], at + "advertiser", "advertiser", advertisers)
    distributed = "buyers" in fields
    if distributed == ("advertiser" in fields):
        r.fail(
            at + "advertiser",
            "a campaign names one advertiser, or buyers (a list), not both"
            if distributed
            else "required key is missing (or list buyers instead)",
        )
    if not distributed:
        for key in DISTRIBUTION_KEYS[1:]:
            if key in fields:
                r.fail(at + key, "only a campaign with buyers (instead of an advertiser) sells")
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
    payout = opt(fields, "payout", None)
    dedup = dedup_rules(
        r, opt(fields, "dedup", []), at + "dedup", channels,
        refused=_NO_ADVERTISER_SCOPE if distributed else None,
    )  # fmt: skip
    distribution: Distribution | None = None
    if distributed:
        distribution = parse_distribution(
            r, at, fields, advertisers, channels, packs, region=region
        )
        if cpl is not None:
            r.fail(at + "cpl", "a campaign sold to buyers is priced per buyer (buyers[i].price)")
        if pressure and pressure_window_s is not None:
            _check_pressure(r, at, dedup, distribution, pressure_window_s)
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
    ping_ttl_s = _ping_ttl(r, fields.get("ping_ttl_s", 0), at + "ping_ttl_s")
    rules = packs.campaign_rules(
        opt(fields, "rules", []), at + "rules", default_country=region, min_score=min_score,
        min_score_path=at + "min_score",
    )  # fmt: skip
    return Campaign(
        id=CampaignId(id_),
        advertiser=None if advertiser is None else AdvertiserId(advertiser),
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
        dedup=dedup,
        caps=cap_rules(
            r,
            opt(fields, "caps", []),
            at + "caps",
            refused=_NO_ADVERTISER_CAP if distributed else None,
        ),
        suppression=rules.suppression,
        velocity=rules.velocity,
        rules=rules.rule_set,
        min_score=min_score,
        return_window_s=return_window_s,
        feedback_window_s=feedback_window_s,
        distribution=distribution,
        payout=None if payout is None else r.number(payout, at + "payout", positive=False),
        ping_ttl_s=ping_ttl_s,
    )


#: The seconds a ping may hold cap room (``Campaign.ping_ttl_s``): long enough for a
#: publisher's round trip to its own form, short enough that unposted pings give their room
#: back within the hour.
PING_TTL_RANGE_S: Final = (5, 3600)


def _ping_ttl(r: Reader, value: object, path: str) -> int:
    """``ping_ttl_s``: 0 (no pings) or seconds within ``PING_TTL_RANGE_S``, on a campaign with
    one advertiser or sold to buyers (its pings hold room on the buyers that would buy)."""
    low, high = PING_TTL_RANGE_S
    if isinstance(value, int) and not isinstance(value, bool) and value == 0:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        r.fail(
            path,
            f"{show(value)} is not a whole number of seconds from {low} to {high} (0: no pings)",
        )
        return 0
    return value


def _check_pressure(
    r: Reader,
    at: str,
    dedup: tuple[DedupRule, ...],
    distribution: Distribution,
    window_s: int,
) -> None:
    """A distributed campaign counts toward the network's contact pressure as one unit (its
    buyers are not known when the person's slot is reserved). That is exact only when the
    campaign sells a person at most once per pressure window, to one buyer: exclusive, with a
    campaign-scope dedup at least as long as the pressure window (on every channel)."""
    if distribution.mode is SaleMode.SHARED:
        r.fail(
            at + "contact_pressure",
            "a shared campaign sells a person to up to max_buyers buyers at once, which the "
            "network's contact pressure cannot count before they are known: set "
            "contact_pressure: false here (or make the campaign exclusive)",
        )
        return
    own = [rule for rule in dedup if rule.scope is DedupScope.CAMPAIGN]
    if not own or min([own[0].window_s, *own[0].channel_windows_s.values()]) < window_s:
        r.fail(
            at + "contact_pressure",
            "a campaign sold to buyers counts as one unit of the network's contact pressure: "
            "it needs a campaign-scope dedup at least as long as the pressure window "
            f"({window_s // 86_400}d) so that it sells a person once per window, or "
            "contact_pressure: false",
        )


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
