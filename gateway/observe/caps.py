"""Caps used vs limit, read from the store when Prometheus scrapes (not on the decision path).

A cap's counter lives in Redis, keyed by ``storage.keys.cap`` with the current calendar bucket
(a counter) or the rolling length (a sorted set of lead ids scored by epoch ms). Reading them at
scrape time costs one pipelined round trip per scrape, nothing per lead, and is always exact:
counters kept in the gateway's memory would be wrong with several processes or after a restart.

Partner and channel caps count per partner (or channel) within the campaign; the gauge reports
the highest of them: the one closest to its limit is what ops must see. A distributed
campaign's own caps are counted in its slot, its buyers' in theirs
(``leadgate_buyer_cap_used``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from gateway.config.model import Campaign, CapRule, CapSubject, Config
from gateway.decision.windows import calendar_bucket
from gateway.errors import StoreError
from gateway.observe.metrics import Observer
from gateway.storage import keys
from gateway.storage.base import Command, CounterReader
from gateway.types import AdvertiserId, ChannelId, PartnerId

LOG = logging.getLogger("leadgate.metrics")
#: A scrape must answer even when Redis does not: the reading is skipped after this.
READ_TIMEOUT_S = 1.0


@dataclass(frozen=True, slots=True)
class CapRead:
    campaign: str
    subject: str
    window: str
    command: Command
    #: A buyer's cap (distributed campaigns): the buyer; ``None``: the campaign's own.
    buyer: str | None = None


@dataclass(frozen=True, slots=True)
class _Counter:
    """One counter of a cap: whose (a campaign's own cap, or a buyer's), its key, whom it
    counts (``of``: the campaign, a partner or a channel)."""

    campaign: Campaign
    cap: CapRule
    buyer: AdvertiserId | None
    key: str
    of: str


def _counters(config: Config, campaign: Campaign, now_s: float) -> list[_Counter]:
    """Every counter of a campaign's caps and, when it is sold to buyers, of its buyers'."""
    partners, channels = _counted(config, campaign)
    counters: list[_Counter] = []
    for cap in campaign.caps:
        for key, of in _cap_keys(campaign, None, cap, partners, channels, now_s):
            counters.append(_Counter(campaign, cap, None, key, of))
    if campaign.distribution is not None:
        for buyer in campaign.distribution.buyers:
            for cap in buyer.caps:
                found = _cap_keys(campaign, buyer.advertiser, cap, partners, channels, now_s)
                counters += [_Counter(campaign, cap, buyer.advertiser, k, of) for k, of in found]
    return counters


def cap_reads(config: Config, now_s: float) -> list[CapRead]:
    """One read command per counter of every configured cap, in the current window."""
    reads: list[CapRead] = []
    for campaign in config.campaigns.values():
        for counter in _counters(config, campaign, now_s):
            cap = counter.cap
            if cap.window.rolling_s is not None:
                since_ms = int(now_s * 1000) - cap.window.rolling_s * 1000
                command: Command = ("ZCOUNT", counter.key, f"({since_ms}", "+inf")
            else:
                command = ("GET", counter.key)
            reads.append(
                CapRead(campaign.id, cap.subject.value, cap.window.label, command, counter.buyer)
            )
    return reads


def _counted(config: Config, campaign: Campaign) -> tuple[list[PartnerId], list[ChannelId]]:
    """The partners open to ``campaign`` and the channels they post through: the subjects of
    its partner and channel caps."""
    open_to = [p for p in config.partners.values() if campaign.id in p.campaigns]
    return [p.id for p in open_to], sorted({c for p in open_to for c in p.channels})


def _cap_keys(
    campaign: Campaign,
    buyer: AdvertiserId | None,
    cap: CapRule,
    partners: Sequence[PartnerId],
    channels: Sequence[ChannelId],
    now_s: float,
) -> list[tuple[str, str]]:
    """Each counter's key and whom it counts: in the buyer's slot (a buyer's cap), the
    advertiser's (a campaign with one), or the campaign's own (a distributed campaign's)."""
    if cap.window.period is not None:
        bucket, _ = calendar_bucket(cap.window.period, campaign.timezone, now_s)
    else:
        bucket = str(cap.window.rolling_s)
    no_partner, no_channel = PartnerId("-"), ChannelId("-")
    if cap.subject is CapSubject.PARTNER:
        pairs = [(p, no_channel, str(p)) for p in partners]
    elif cap.subject is CapSubject.CHANNEL:
        pairs = [(no_partner, c, str(c)) for c in channels]
    else:
        pairs = [(no_partner, no_channel, str(campaign.id))]
    advertiser = buyer or campaign.advertiser
    if advertiser is None:
        return [(keys.campaign_cap_head(campaign.id, cap, p, c) + bucket, of) for p, c, of in pairs]
    return [(keys.cap(advertiser, cap, campaign.id, p, c, bucket), of) for p, c, of in pairs]


async def refresh(observer: Observer, config: Config, store: CounterReader, now_s: float) -> None:
    """Set ``leadgate_cap_used``, ``leadgate_buyer_cap_used`` and ``leadgate_store_up`` from
    the store (either store: the embedded one answers the same reads)."""
    reads = cap_reads(config, now_s)
    try:
        async with asyncio.timeout(READ_TIMEOUT_S):
            results = await store.read_for_metrics([("PING",), *(r.command for r in reads)])
    except (StoreError, TimeoutError) as error:
        observer.store_up.set(0)
        LOG.warning("metrics: store not readable", extra={"fields": {"error": str(error)}})
        return
    observer.store_up.set(1)
    used: dict[tuple[str, str | None, str, str], int] = {}
    for item, value in zip(reads, results[1:], strict=True):
        if isinstance(value, Exception):
            continue
        label = (item.campaign, item.buyer, item.subject, item.window)
        used[label] = max(used.get(label, 0), int(value or 0))
    for (campaign, buyer, subject, window), count in used.items():
        if buyer is None:
            observer.cap_used.labels(campaign, subject, window).set(count)
        else:
            observer.buyers.cap_used.labels(campaign, buyer, subject, window).set(count)


# --- caps status (admin API) ----------------------------------------------------------------


async def caps_status(
    config: Config, store: CounterReader, now_s: float, campaign_id: str | None = None
) -> list[dict[str, object]]:
    """Every cap of every campaign (or one), per counted subject: used, limit, remaining and
    when it resets: a calendar window's end, or when a rolling window's oldest lead leaves it.
    One round trip; for the admin API, not the scrape."""
    now_ms = int(now_s * 1000)
    rows: list[dict[str, object]] = []
    commands: list[Command] = []
    for campaign in config.campaigns.values():
        if campaign_id is not None and campaign.id != campaign_id:
            continue
        for counter in _counters(config, campaign, now_s):
            cap = counter.cap
            row: dict[str, object] = {
                "campaign": campaign.id,
                "advertiser": counter.buyer or campaign.advertiser,
                "reason": cap.reason,
                "subject": cap.subject.value,
                "of": counter.of,
                "window": cap.window.label,
                "limit": cap.limit,
            }
            if counter.buyer is not None:
                row["buyer"] = counter.buyer
            if cap.window.rolling_s is not None:
                since = f"({now_ms - cap.window.rolling_s * 1000}"
                commands += [
                    ("ZCOUNT", counter.key, since, "+inf"),
                    ("ZRANGEBYSCORE", counter.key, since, "+inf", "WITHSCORES", "LIMIT", 0, 1),
                ]
                row["_rolling_ms"] = cap.window.rolling_s * 1000
            else:
                assert cap.window.period is not None
                _, end_s = calendar_bucket(cap.window.period, campaign.timezone, now_s)
                commands += [("GET", counter.key), ("PING",)]
                row["_ends_ms"] = int(end_s * 1000)
            rows.append(row)
    results = await store.read_for_metrics(commands) if commands else []
    for i, row in enumerate(rows):
        value, oldest = results[2 * i], results[2 * i + 1]
        if isinstance(value, Exception):
            raise StoreError(f"caps could not be read: {value}")
        used = int(value or 0)
        rolling_ms = row.pop("_rolling_ms", None)
        ends_ms = row.pop("_ends_ms", None)
        if isinstance(rolling_ms, int):
            frees = None
            if used and isinstance(oldest, list) and len(oldest) >= 2:
                frees = int(float(oldest[1])) + rolling_ms
            row["resets_at"] = _iso(frees)
        else:
            row["resets_at"] = _iso(ends_ms if isinstance(ends_ms, int) else None)
        row["used"] = used
        row["remaining"] = max(0, int(str(row["limit"])) - used)
    return rows


def _iso(epoch_ms: int | None) -> str | None:
    if epoch_ms is None:
        return None
    return datetime.fromtimestamp(epoch_ms / 1000, UTC).isoformat(timespec="seconds")
