"""Reading dedup rules and caps, wherever they are written: a campaign's ``dedup:`` and
``caps:``, and a buyer's (``config.buyer_load``).

Every problem is reported into the ``Reader`` with its path (``campaigns[2].caps[0].window``).
``scopes`` and ``subjects`` say which of them the place allows, and ``refused`` why the others
are not (a distributed campaign has no advertiser-wide scope of its own, a buyer no network
scope).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Final

from gateway.config.model import (
    CalendarPeriod,
    CapRule,
    CapSubject,
    CapWindow,
    DedupRule,
    DedupScope,
)
from gateway.config.reader import MAX_COUNT, MISSING, Reader, duration_of, opt
from gateway.types import ChannelId

_PERIODS: Final = tuple(period.value for period in CalendarPeriod)


def dedup_rules(
    r: Reader,
    value: object,
    path: str,
    channels: Collection[str],
    *,
    refused: Mapping[DedupScope, str] | None = None,
) -> tuple[DedupRule, ...]:
    """A list of ``{scope, window, channels?}``; a scope in ``refused`` is reported with its
    reason."""
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
            if refused and scope in refused:
                r.fail(p + ".scope", refused[scope])
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


def cap_rules(
    r: Reader,
    value: object,
    path: str,
    *,
    refused: Mapping[CapSubject, str] | None = None,
    aliases: Mapping[str, CapSubject] | None = None,
) -> tuple[CapRule, ...]:
    """A list of ``{subject, window, limit}``; ``aliases`` are other names of a subject (a
    buyer's ``buyer`` is its advertiser), a subject in ``refused`` is reported with its
    reason."""
    rules: list[CapRule] = []
    reasons_at: dict[str, str] = {}
    for i, item in enumerate(r.items(value, path, "a list of {subject, window, limit} caps")):
        p = f"{path}[{i}]"
        before = len(r.issues)
        fields = r.mapping(item, p, "a mapping", required=("subject", "window", "limit"))
        subject_value = fields.get("subject", MISSING)
        if aliases and isinstance(subject_value, str) and subject_value in aliases:
            subject_value = aliases[subject_value].value
        rule = CapRule(
            subject=r.choice(subject_value, p + ".subject", CapSubject),
            window=_cap_window(r, fields.get("window", MISSING), p + ".window"),
            limit=r.integer(
                fields.get("limit", MISSING), p + ".limit", 1, fallback=1, maximum=MAX_COUNT
            ),
        )
        if refused and rule.subject in refused and len(r.issues) == before:
            r.fail(p + ".subject", refused[rule.subject])
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
