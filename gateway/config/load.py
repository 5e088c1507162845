"""Reading the YAML configuration into ``config.model`` objects, reporting every problem at once.

A typo in this file can silently disable a cap or a dedup window, and money is paid per lead,
so reading is strict: unknown keys, duplicate keys, wrong types and dangling references are
all errors. Every problem is collected (with its path, ``campaigns[2].caps[0].window``, and
the bad value) before one ``ConfigError`` is raised, so a user fixes the file in one pass.

Validators never stop at the first problem: each one reports into a ``Reader`` and returns
a harmless fallback, so the rest of the file is still checked. The objects built from
fallbacks are thrown away: ``parse_config`` raises whenever anything was reported.

This module reads the file, walks its lists of entries and reads the small sections
(channels, advertisers, suppression lists, contact pressure, partners); the server section is
read by ``config.server_load``, a campaign by ``config.campaign_load``, the delivery sections
by ``config.delivery_load`` and ``config.endpoint_load``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Collection, Iterator, Mapping
from pathlib import Path
from typing import Final

import yaml

from gateway.config.buyer_load import DISTRIBUTION_KEYS
from gateway.config.campaign_load import parse_campaign
from gateway.config.delivery import DeliverySettings
from gateway.config.delivery_load import check_timeout, parse_settings
from gateway.config.endpoint_load import parse_endpoint
from gateway.config.model import (
    Advertiser,
    Campaign,
    Channel,
    Config,
    ContactPressure,
    Partner,
    PressureUnit,
    SuppressionList,
    SuppressionRule,
)
from gateway.config.reader import MISSING, Reader, display_name, join, load_yaml, opt, show
from gateway.config.server_load import parse_rate_limit, parse_server
from gateway.errors import ConfigError, ConfigIssue
from gateway.rules.pack import PackLibrary
from gateway.types import AdvertiserId, CampaignId, ChannelId, PartnerId

_KEY_HASH = re.compile(r"sha256:([0-9a-f]{64})")
#: Reason codes are dotted lower-case words: they are API values and metric labels.
_REASON = re.compile(r"[a-z][a-z0-9_]*(\.[a-z0-9_]+)*")
_REASON_RULE = "dotted lower-case words, e.g. suppressed.optout"


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
    server = parse_server(r, opt(root, "server", {}), "server")
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
        campaign = parse_campaign(
            r,
            path,
            id_,
            fields,
            advertisers,
            channels,
            packs,
            pressure_window_s=pressure.window_s if pressure is not None else None,
        )
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


def _named(r: Reader, value: object, path: str, kind: str) -> dict[str, str]:
    """Channels and advertisers: ``{id, name}`` entries, as id → display name."""
    return {
        id_: display_name(r, fields, p, id_)
        for p, id_, fields in _entries(r, value, path, kind)
        if id_
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
                AdvertiserId(id_), display_name(r, fields, p, id_), endpoint, hashes
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
        id_, display_name(r, fields, path, id_), r.boolean(network, join(path, "network")), reason
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
    limits = {
        name: parse_rate_limit(r, fields[name], at + name)
        for name in ("check_rate_limit", "ping_rate_limit")
        if fields.get(name) is not None
    }
    return Partner(
        id=PartnerId(id_),
        name=display_name(r, fields, path, id_),
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
        rate_limit=None if rate is None else parse_rate_limit(r, rate, at + "rate_limit"),
        check_rate_limit=limits.get("check_rate_limit"),
        ping_rate_limit=limits.get("ping_rate_limit"),
    )


# --- entries -----------------------------------------------------------------------------


_ENTRY_KEYS: Final[dict[str, tuple[tuple[str, ...], tuple[str, ...]]]] = {
    "channel": (("id",), ("name",)),
    "advertiser": (("id",), ("name", "delivery", "api_keys")),
    "suppression list": (("id",), ("name", "network", "reason")),
    "campaign": (
        ("id", "kind"),
        (
            *("advertiser", "name", "start", "end", "timezone", "identity", "required"),
            *("phone_region", "contact_pressure", "cpl", "dedup", "caps", "rules", "min_score"),
            *("return_window", "feedback_window", "payout", "ping_ttl_s"),
            *DISTRIBUTION_KEYS,
        ),
    ),
    "partner": (
        ("id", "api_keys", "channels", "campaigns"),
        ("name", "rate_limit", "check_rate_limit", "ping_rate_limit"),
    ),
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
