"""``leadgate report partners``: partners ranked by net quality over a range of days.

Figures come from the quality ledger (``gateway.ledger``): decisions counted on the UTC day they
were made, advertisers' feedback on its lead's acceptance day. A range is widened to whole UTC
days (``--since 90m`` reads today, and yesterday when it began then). Per partner (across its
campaigns, or one campaign):

- ``posted``: leads decided (test leads and idempotent replays excluded);
- ``duplicate_rate``, ``capped_rate``, ``rejection_rate``: duplicate / capped / rejected (by
  the rules, or an inactive campaign) over posted. Caps are the network's own limits, not a
  partner's fault, so they are shown apart from rejections;
- ``return_rate``, ``conversion_rate``: returned / converted over accepted (the leads accepted
  in the range, whenever the advertiser reported);
- ``cost_per_conversion``: the CPL paid for the accepted leads of the campaigns with a ``cpl``
  over those campaigns' conversions; ``None`` without a CPL or a conversion;
- ``net_quality``: (accepted - returned - advertiser-rejected) / posted: the share of what a
  partner sends that ends up as a lead the advertiser keeps (with distributed campaigns,
  returns are per sale: accepted x the share of sales kept, over posted);
- ``sales``: leads sold, counting a shared lead once per buyer (``accepted`` for campaigns with
  one advertiser); return and conversion rates are over sales;
- ``revenue``: what the advertisers pay: a campaign's ``cpl`` x accepted, or the sum of the
  buyers' prices of a distributed campaign's sales; ``payout``: what the partner is paid (the
  campaign's ``payout`` per lead sold); ``margin``: revenue - payout.

Distributed campaigns also get a row per buyer (``BuyerRow``): its sales, revenue, the payout
share of its sales, margin, returns and conversions (its own feedback).

Rates are fractions (0.25), 0 when their denominator is 0. Rows are ranked by net quality, then
conversion rate, then partner id; configured partners without traffic come last, with zeros.
The same rows are printed as a table, as JSON, and answered by the admin API
(``GET /v1/admin/reports/partners?since=7d[&campaign=C]``), which ``--url`` reads.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from typing import Any

from gateway.config.model import Config
from gateway.delivery import ops
from gateway.quality.ledger import DAY_MS, day_of
from gateway.types import CampaignId

#: How far back a report may reach (the ledger keeps each day 400 days after its last write).
MAX_DAYS_BACK = 400
DEFAULT_SINCE = "7d"
#: The admin API route ``--url`` reads (served by the running gateway).
REPORT_PATH = "/v1/admin/reports/partners"
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")

#: ``days -> {day: {"partner|campaign|metric": count}}``: ``QualityLedger.read`` or a store's
#: ``ledger_read``.
ReadLedger = Callable[[Sequence[str]], Awaitable[Mapping[str, Mapping[str, int]]]]


@dataclass(frozen=True, slots=True)
class PartnerRow:
    partner: str
    posted: int = 0
    accepted: int = 0
    duplicate: int = 0
    capped: int = 0
    rejected: int = 0
    converted: int = 0
    returned: int = 0
    adv_rejected: int = 0
    duplicate_rate: float = 0.0
    capped_rate: float = 0.0
    rejection_rate: float = 0.0
    return_rate: float = 0.0
    conversion_rate: float = 0.0
    cost_per_conversion: float | None = None
    net_quality: float = 0.0
    sales: int = 0
    revenue: float = 0.0
    payout: float = 0.0
    margin: float = 0.0


@dataclass(frozen=True, slots=True)
class BuyerRow:
    """One buyer of the distributed campaigns (summed over them, or one campaign)."""

    buyer: str
    sold: int = 0
    revenue: float = 0.0
    payout: float = 0.0
    margin: float = 0.0
    converted: int = 0
    returned: int = 0
    adv_rejected: int = 0
    return_rate: float = 0.0
    conversion_rate: float = 0.0


# --- the range --------------------------------------------------------------------------------


def parse_since(text: str, now_ms: int) -> int:
    """``--since`` as epoch ms: a duration back from now (``7d``, ``24h``, ``90m``), an ISO date
    (``2026-11-01``, midnight UTC), an ISO instant with offset, or epoch ms; at most
    ``MAX_DAYS_BACK`` days back and not after now. Raises ``ValueError`` for people."""
    text = text.strip()
    if _DATE.fullmatch(text):
        try:
            since = int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)
        except ValueError:
            raise ValueError(f"{text!r} is not a date") from None
    else:
        since = ops.parse_since(text, now_ms)
    if since > now_ms:
        raise ValueError(f"{text!r} is in the future")
    if since < now_ms - MAX_DAYS_BACK * DAY_MS:
        raise ValueError(f"{text!r} is more than {MAX_DAYS_BACK} days back")
    return since


def days_between(since_ms: int, now_ms: int) -> list[str]:
    """The UTC days covering [since, now], oldest first."""
    first, last = since_ms // DAY_MS, now_ms // DAY_MS
    return [day_of(number * DAY_MS) for number in range(first, last + 1)]


# --- the figures ------------------------------------------------------------------------------


def _rate(part: int, whole: int) -> float:
    return part / whole if whole else 0.0


def summarize(
    counts: Mapping[str, Mapping[str, int]], config: Config, campaign: str | None = None
) -> list[PartnerRow]:
    """Rows from the ledger's counts of some days (pure): summed per partner over those days
    (and one campaign when given), ranked."""
    totals: dict[str, dict[str, int]] = {}
    #: partner -> campaign -> [accepted, converted, revenue cents of a distributed campaign].
    per_campaign: dict[str, dict[str, list[int]]] = {}
    for partner, campaign_id, metric, buyer, n in _fields(counts, campaign):
        if buyer and metric not in ("sold", "revenue_cents", "payout_cents"):
            continue  # a buyer's feedback: also counted per partner, in its 3-part field
        sums = totals.setdefault(partner, {})
        sums[metric] = sums.get(metric, 0) + n
        if metric in ("accepted", "converted", "revenue_cents"):
            trio = per_campaign.setdefault(partner, {}).setdefault(campaign_id, [0, 0, 0])
            trio[("accepted", "converted", "revenue_cents").index(metric)] += n
    for configured in config.partners.values():
        if campaign is None or campaign in configured.campaigns:
            totals.setdefault(configured.id, {})
    rows = [_row(p, sums, per_campaign.get(p, {}), config) for p, sums in totals.items()]
    rows.sort(key=lambda r: (r.posted == 0, -r.net_quality, -r.conversion_rate, r.partner))
    return rows


def summarize_buyers(
    counts: Mapping[str, Mapping[str, int]], campaign: str | None = None
) -> list[BuyerRow]:
    """The buyers' rows (pure), from the per-buyer counts; ranked by revenue, then sales."""
    totals: dict[str, dict[str, int]] = {}
    for _, _, metric, buyer, n in _fields(counts, campaign):
        if buyer:
            sums = totals.setdefault(buyer, {})
            sums[metric] = sums.get(metric, 0) + n
    rows = []
    for buyer, sums in totals.items():
        sold, revenue = sums.get("sold", 0), sums.get("revenue_cents", 0) / 100
        payout = sums.get("payout_cents", 0) / 100
        returned, converted = sums.get("returned", 0), sums.get("converted", 0)
        rows.append(
            BuyerRow(
                buyer=buyer,
                sold=sold,
                revenue=revenue,
                payout=payout,
                margin=revenue - payout,
                converted=converted,
                returned=returned,
                adv_rejected=sums.get("adv_rejected", 0),
                return_rate=_rate(returned, sold),
                conversion_rate=_rate(converted, sold),
            )
        )
    rows.sort(key=lambda r: (-r.revenue, -r.sold, r.buyer))
    return rows


def _fields(
    counts: Mapping[str, Mapping[str, int]], campaign: str | None
) -> list[tuple[str, str, str, str, int]]:
    """``(partner, campaign, metric, buyer or "", n)`` of every ledger field, one campaign's
    when given."""
    found = []
    for fields_of_day in counts.values():
        for name, n in fields_of_day.items():
            parts = name.split("|")
            if len(parts) not in (3, 4) or (campaign is not None and parts[1] != campaign):
                continue
            buyer = parts[3] if len(parts) == 4 else ""
            found.append((parts[0], parts[1], parts[2], buyer, n))
    return found


def _row(
    partner: str, sums: Mapping[str, int], per_campaign: Mapping[str, list[int]], config: Config
) -> PartnerRow:
    posted, accepted = sums.get("posted", 0), sums.get("accepted", 0)
    returned, adv_rejected = sums.get("returned", 0), sums.get("adv_rejected", 0)
    converted = sums.get("converted", 0)
    cost, paid_conversions, revenue = 0.0, 0, 0.0
    sales = sums.get("sold", 0)
    for campaign_id, (campaign_accepted, campaign_converted, price_cents) in per_campaign.items():
        campaign = config.campaigns.get(CampaignId(campaign_id))
        earned = price_cents / 100
        if campaign is not None and campaign.cpl:
            earned = campaign.cpl * campaign_accepted
        if campaign is None or campaign.distribution is None:
            sales += campaign_accepted
        if earned:
            cost += earned
            paid_conversions += campaign_converted
            revenue += earned
    payout = sums.get("payout_cents", 0) / 100
    kept = _rate(sales - returned - adv_rejected, sales) if sales else 0.0
    return PartnerRow(
        partner=partner,
        posted=posted,
        accepted=accepted,
        duplicate=sums.get("duplicate", 0),
        capped=sums.get("capped", 0),
        rejected=sums.get("rejected", 0),
        converted=converted,
        returned=returned,
        adv_rejected=adv_rejected,
        duplicate_rate=_rate(sums.get("duplicate", 0), posted),
        capped_rate=_rate(sums.get("capped", 0), posted),
        rejection_rate=_rate(sums.get("rejected", 0), posted),
        return_rate=_rate(returned, sales),
        conversion_rate=_rate(converted, sales),
        cost_per_conversion=cost / paid_conversions if paid_conversions else None,
        net_quality=_rate(accepted, posted) * kept,
        sales=sales,
        revenue=revenue,
        payout=payout,
        margin=revenue - payout,
    )


async def partner_report(
    read: ReadLedger,
    config: Config,
    since_ms: int,
    now_ms: int,
    campaign: str | None = None,
) -> list[PartnerRow]:
    """The ranked rows of the UTC days covering [since, now] (one ledger read)."""
    return summarize(await read(days_between(since_ms, now_ms)), config, campaign)


def rows_json(
    rows: Sequence[PartnerRow],
    *,
    since_ms: int | None = None,
    now_ms: int | None = None,
    campaign: str | None = None,
    buyers: Sequence[BuyerRow] = (),
) -> dict[str, object]:
    """The report as JSON (what the admin API answers and ``--json`` prints): the range when
    given, one object per row with the ``PartnerRow`` fields (rates rounded to 4 places,
    money to 2), and the buyers' rows."""
    body: dict[str, object] = {}
    if since_ms is not None and now_ms is not None:
        days = days_between(since_ms, now_ms)
        body.update(since_ms=since_ms, now_ms=now_ms, first_day=days[0], last_day=days[-1])
    body["campaign"] = campaign
    body["partners"] = [_row_json(row) for row in rows]
    body["buyers"] = [_row_json(row) for row in buyers]
    return body


#: Money columns (rounded to the cent); other floats are rates (4 places).
_MONEY = frozenset({"cost_per_conversion", "revenue", "payout", "margin"})


def _row_json(row: PartnerRow | BuyerRow) -> dict[str, object]:
    data: dict[str, object] = asdict(row)
    for name, value in data.items():
        if isinstance(value, float):
            data[name] = round(value, 2 if name in _MONEY else 4)
    return data


def rows_from_json(data: Mapping[str, Any]) -> list[PartnerRow]:
    """Rows back from ``rows_json`` (an admin API answer); unknown keys are ignored."""
    names = {f.name for f in fields(PartnerRow)}
    return [PartnerRow(**{k: v for k, v in row.items() if k in names}) for row in data["partners"]]


def buyers_from_json(data: Mapping[str, Any]) -> list[BuyerRow]:
    """The buyers' rows back from ``rows_json`` (none from a gateway without buyers)."""
    names = {f.name for f in fields(BuyerRow)}
    return [BuyerRow(**{k: v for k, v in r.items() if k in names}) for r in data.get("buyers", [])]


async def report_json(
    read: ReadLedger, config: Config, *, since: str, now_ms: int, campaign: str | None = None
) -> dict[str, object]:
    """The admin API's answer to ``?since=…&campaign=…``. Raises ``ValueError`` (a 400) for a
    bad ``since`` or a campaign not in the config."""
    since_ms = parse_since(since, now_ms)
    if campaign is not None and campaign not in config.campaigns:
        raise ValueError(f"campaign {campaign[:64]!r} is not in the config")
    counts = await read(days_between(since_ms, now_ms))
    rows = summarize(counts, config, campaign)
    buyers = summarize_buyers(counts, campaign)
    return rows_json(rows, since_ms=since_ms, now_ms=now_ms, campaign=campaign, buyers=buyers)


# --- the table --------------------------------------------------------------------------------

_COLUMNS = (
    ("partner", "partner"),
    ("posted", "posted"),
    ("accepted", "accepted"),
    ("dup", "duplicate_rate"),
    ("capped", "capped_rate"),
    ("rejected", "rejection_rate"),
    ("returned", "return_rate"),
    ("converted", "conversion_rate"),
    ("cost/conv", "cost_per_conversion"),
    ("net quality", "net_quality"),
    ("revenue", "revenue"),
    ("payout", "payout"),
    ("margin", "margin"),
)
_BUYER_COLUMNS = (
    ("buyer", "buyer"),
    ("sold", "sold"),
    ("revenue", "revenue"),
    ("payout", "payout"),
    ("margin", "margin"),
    ("returned", "return_rate"),
    ("converted", "conversion_rate"),
)


def _cell(row: PartnerRow | BuyerRow, name: str) -> str:
    value = getattr(row, name)
    if value is None:
        return "-"
    if name in _MONEY:
        return f"{value:.2f}"
    if isinstance(value, float):
        return f"{value * 100:.1f}%"
    return str(value)


def format_table(
    rows: Sequence[PartnerRow] | Sequence[BuyerRow],
    columns: tuple[tuple[str, str], ...] = _COLUMNS,
) -> str:
    """An aligned text table, rates as percentages; ``(no partners)`` when empty."""
    if not rows:
        return "(no partners)"
    cells = [[title for title, _ in columns]]
    cells += [[_cell(row, name) for _, name in columns] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    lines = [
        "  ".join(
            cell.ljust(width) if i == 0 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(line, widths, strict=True))
        ).rstrip()
        for line in cells
    ]
    return "\n".join(lines)


def format_buyers(rows: Sequence[BuyerRow]) -> str:
    """The buyers' table (distributed campaigns); ``""`` without buyers."""
    if not rows:
        return ""
    return "buyers of distributed campaigns\n" + format_table(rows, _BUYER_COLUMNS)


def title(body: Mapping[str, Any]) -> str:
    where = f", campaign {body['campaign']}" if body.get("campaign") else ""
    return (
        f"partners by net quality, UTC days {body.get('first_day')} to {body.get('last_day')}"
        f"{where}"
    )
