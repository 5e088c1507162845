"""Reading a distributed campaign: its ``buyers:`` and the keys that say how a lead is sold
(``distribution``, ``max_buyers``, ``order``, ``show_buyers``), into a ``Distribution``.

A buyer entry::

    - advertiser: novabank                # required; at most once per campaign
      price: 12.5                         # what it pays per lead
      priority: 1                         # order: priority (default: its position, from 1)
      weight: 3                           # order: weighted
      dedup: [{scope: advertiser, window: 30d}]   # the default: advertiser-wide, 30 days
      caps: [{subject: buyer, window: day, limit: 200}]
      filter: {packs: [fr-b2c], rules: [{id: idf, message: …, require: {…}}]}
      hours: {mon-fri: ["09:00-12:30", "14:00-18:00"], sat: ["10:00-12:00"],
              holidays: [2026-12-25]}

Every problem is reported into the ``Reader`` with its path
(``campaigns[4].buyers[1].hours.mon-fri[0]``).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Collection, Mapping
from typing import Final

from gateway.config.limits_load import cap_rules, dedup_rules
from gateway.config.model import (
    Buyer,
    BuyerOrder,
    CapSubject,
    DedupRule,
    DedupScope,
    Distribution,
    OpeningHours,
    SaleMode,
)
from gateway.config.reader import MISSING, Reader, join, opt, show
from gateway.rules.model import RuleSet
from gateway.rules.pack import PACK_NAME, Pack, PackLibrary, combine_packs, parse_pack
from gateway.types import AdvertiserId

#: The campaign keys that only a campaign with buyers may set.
DISTRIBUTION_KEYS: Final = ("buyers", "distribution", "max_buyers", "order", "show_buyers")
#: A buyer's dedup when it sets none: a person this advertiser bought in the last 30 days, by
#: any of its campaigns, is offered to the next buyer ("never twice to the same buyer").
DEFAULT_BUYER_DEDUP: Final[tuple[DedupRule, ...]] = (DedupRule(DedupScope.ADVERTISER, 30 * 86_400),)
DAYS: Final = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

_BUYER_KEYS: Final = ("dedup", "caps", "filter", "hours", "price", "weight", "priority")
_RANGE = re.compile(r"(\d{2}):(\d{2})-(\d{2}):(\d{2})")
_NO_NETWORK = {
    DedupScope.NETWORK: "a buyer's dedup lives in its advertiser's slot: network dedup is set "
    "on the campaign (dedup: [{scope: network, …}])"
}


def parse_distribution(
    r: Reader,
    at: str,
    fields: Mapping[str, object],
    advertisers: Collection[str],
    channels: Collection[str],
    packs: PackLibrary,
    *,
    region: str,
) -> Distribution:
    """The campaign's ``buyers`` and sale keys (``at``: the campaign's path and a dot)."""
    mode = r.choice(
        opt(fields, "distribution", SaleMode.EXCLUSIVE.value), at + "distribution", SaleMode
    )
    order = r.choice(opt(fields, "order", BuyerOrder.PRIORITY.value), at + "order", BuyerOrder)
    show_buyers = r.boolean(opt(fields, "show_buyers", False), at + "show_buyers")
    buyers: list[Buyer] = []
    first_at: dict[str, str] = {}
    items = r.items(fields.get("buyers", MISSING), at + "buyers", "a list of buyers")
    if fields.get("buyers") == []:
        r.fail(at + "buyers", "needs at least one buyer")
    for i, item in enumerate(items):
        p = f"{at}buyers[{i}]"
        buyer = _buyer(r, p, item, i, order, advertisers, channels, packs, region)
        if buyer is None:
            continue
        if buyer.advertiser in first_at:
            r.fail(
                p + ".advertiser",
                f"{buyer.advertiser!r} is already a buyer at {first_at[buyer.advertiser]}: a "
                "lead is never sold twice to the same buyer",
            )
            continue
        first_at[buyer.advertiser] = p
        buyers.append(buyer)
    max_buyers = 1
    if mode is SaleMode.SHARED:
        if fields.get("max_buyers") is None:
            r.fail(at + "max_buyers", "a shared campaign says how many buyers a lead may go to")
        else:
            max_buyers = r.integer(fields["max_buyers"], at + "max_buyers", 2, fallback=2)
            if buyers and max_buyers > len(buyers):
                r.fail(at + "max_buyers", f"{max_buyers} is more than the {len(buyers)} buyers")
    elif fields.get("max_buyers") is not None:
        r.fail(at + "max_buyers", "only a shared campaign (distribution: shared) sells to several")
    return Distribution(tuple(buyers), mode, max_buyers, order, show_buyers)


def _buyer(
    r: Reader,
    p: str,
    item: object,
    index: int,
    order: BuyerOrder,
    advertisers: Collection[str],
    channels: Collection[str],
    packs: PackLibrary,
    region: str,
) -> Buyer | None:
    fields = r.mapping(
        item, p, "a buyer (a mapping)", required=("advertiser",), optional=_BUYER_KEYS
    )
    advertiser = r.ref(
        fields.get("advertiser", MISSING), p + ".advertiser", "advertiser", advertisers
    )
    dedup = DEFAULT_BUYER_DEDUP
    if fields.get("dedup") is not None:
        dedup = dedup_rules(r, fields["dedup"], p + ".dedup", channels, refused=_NO_NETWORK)
    caps = cap_rules(
        r, opt(fields, "caps", []), p + ".caps", aliases={"buyer": CapSubject.ADVERTISER}
    )
    price = (
        None
        if fields.get("price") is None
        else r.number(fields["price"], p + ".price", positive=False)
    )
    weight = 1
    if fields.get("weight") is not None:
        weight = r.integer(fields["weight"], p + ".weight", 1, fallback=1)
        if order is not BuyerOrder.WEIGHTED:
            r.fail(p + ".weight", f"only used with order: weighted (this campaign's: {order})")
    priority = index + 1
    if fields.get("priority") is not None:
        priority = r.integer(fields["priority"], p + ".priority", 1, fallback=1)
        if order is not BuyerOrder.PRIORITY:
            r.fail(p + ".priority", f"only used with order: priority (this campaign's: {order})")
    if order is BuyerOrder.PRICE and fields.get("price") is None:
        r.fail(p + ".price", "order: price needs every buyer's price")
    hours = None if fields.get("hours") is None else opening_hours(r, fields["hours"], p + ".hours")
    rule_set = None
    if fields.get("filter") is not None:
        rule_set = _filter(r, fields["filter"], p + ".filter", packs, region)
    if not advertiser:
        return None
    return Buyer(AdvertiserId(advertiser), dedup, caps, rule_set, hours, price, weight, priority)


def _filter(r: Reader, value: object, path: str, packs: PackLibrary, region: str) -> RuleSet | None:
    """``{packs: [names], rules: [rules]}``: rule packs and rules of the buyer's own, with the
    pack syntax, combined into one ``RuleSet``. Only rules decided in the gateway: a filter
    says yes or no, it neither scores nor asks the store."""
    fields = r.mapping(
        value, path, "a mapping with packs and/or rules", optional=("packs", "rules")
    )
    if not fields.get("packs") and not fields.get("rules"):
        r.fail(path, "a filter needs packs or rules")
        return None
    named: list[tuple[str, Pack]] = []
    for i, name in enumerate(
        r.items(opt(fields, "packs", []), join(path, "packs"), "a list of rule pack names")
    ):
        at = f"{path}.packs[{i}]"
        if not isinstance(name, str) or not PACK_NAME.fullmatch(name):
            r.fail(at, f"{show(name)} is not a rule pack name (a file in rules_dir)")
            continue
        pack = packs.pack(name)
        if pack is not None:
            named.append((at, pack))
    if fields.get("rules") is not None:
        own = parse_pack(r, {"rules": fields["rules"]}, name="filter", shown=path)
        named.append((join(path, "rules"), own))
    compiled = combine_packs(r, named, default_country=region, min_score=None, min_score_path=path)
    if compiled.suppression or compiled.velocity:
        r.fail(
            path,
            "suppression and ip_velocity rules are decided in the store: a filter "
            "takes only rules the gateway decides (require, reject_if)",
        )
    if compiled.rule_set is not None and compiled.rule_set.scoring:
        r.fail(
            path,
            "a filter takes or passes a lead: scoring rules (when: + score:) have no minimum here",
        )
    return compiled.rule_set


def opening_hours(r: Reader, value: object, path: str) -> OpeningHours:
    """``{mon-fri: ["09:00-18:00"], sat: [...], holidays: [dates]}``: days or day ranges
    (``mon``, ``mon-fri``) to lists of ``HH:MM-HH:MM`` (the end may be ``24:00``, and comes
    after the start: a range over midnight is written on both days). A day not named is
    closed."""
    fields = r.mapping(value, path, "a mapping of days to opening ranges")
    weekly: list[list[tuple[int, int]]] = [[] for _ in DAYS]
    named_at: dict[int, str] = {}
    holidays: set[dt.date] = set()
    for key, ranges in fields.items():
        at = join(path, key)
        if key == "holidays":
            holidays |= _dates(r, ranges, at)
            continue
        days = _days(key)
        if days is None:
            r.fail(
                at,
                f"not a day or day range like mon, sat, mon-fri ({', '.join(DAYS)}), nor holidays",
            )
            continue
        parsed = _ranges(r, ranges, at)
        for day in days:
            if day in named_at:
                r.fail(at, f"{DAYS[day]} is already given by {named_at[day]}")
                continue
            named_at[day] = at
            weekly[day] = parsed
    if not any(weekly):
        r.fail(path, "opens on no day: name at least one day with its ranges")
    return OpeningHours(tuple(tuple(day) for day in weekly), frozenset(holidays))


def _days(key: str) -> list[int] | None:
    first, _, last = key.partition("-")
    if first not in DAYS or (last and last not in DAYS):
        return None
    start, end = DAYS.index(first), DAYS.index(last or first)
    return list(range(start, end + 1)) if start <= end else None


def _ranges(r: Reader, value: object, path: str) -> list[tuple[int, int]]:
    ranges: list[tuple[int, int]] = []
    for i, text in enumerate(r.items(value, path, 'a list of ranges like "09:00-18:00"')):
        at = f"{path}[{i}]"
        match = _RANGE.fullmatch(text) if isinstance(text, str) else None
        if match is None:
            r.fail(at, f'{show(text)} is not a range like "09:00-12:30"')
            continue
        h1, m1, h2, m2 = (int(part) for part in match.groups())
        start, end = h1 * 3600 + m1 * 60, h2 * 3600 + m2 * 60
        if h1 > 23 or m1 > 59 or m2 > 59 or end > 86_400:
            r.fail(at, f"{text!r} is not a time of day (00:00 to 24:00)")
        elif end <= start:
            r.fail(
                at,
                f"{text!r} ends before it starts: write a range over midnight on both "
                'days ("22:00-24:00" and the next day "00:00-02:00")',
            )
        elif any(start < e and s < end for s, e in ranges):
            r.fail(at, f"{text!r} overlaps another range of the same day")
        else:
            ranges.append((start, end))
    return sorted(ranges)


def _dates(r: Reader, value: object, path: str) -> set[dt.date]:
    found: set[dt.date] = set()
    for i, item in enumerate(r.items(value, path, "a list of dates like 2026-12-25")):
        day: dt.date | None = None
        if isinstance(item, dt.date) and not isinstance(item, dt.datetime):
            day = item
        elif isinstance(item, str):
            try:
                day = dt.date.fromisoformat(item)
            except ValueError:
                day = None
        if day is None:
            r.fail(f"{path}[{i}]", f"{show(item)} is not a date like 2026-12-25")
        else:
            found.add(day)
    return found
