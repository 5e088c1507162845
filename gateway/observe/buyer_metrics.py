"""Buyers of distributed campaigns, in Prometheus: what each was offered and took, what it
refused and why, its revenue, and how full its caps are.

Labels are configured ids (campaign, buyer) and fixed codes (``BUYER_RESULTS``, cap subjects
and windows): never request input. Every configured (campaign, buyer) series exists at 0
from the start, so the dashboard and the alerts have series before the first lead.

``result``: ``sold``; ``duplicate`` and ``capped`` (offered: its script refused it);
``filtered``, ``closed``, ``disabled`` (not offered: decided in the gateway, before the
waterfall, so counted for every lead whoever buys it). ``sold``, ``duplicate`` and ``capped``
are counted only for the buyers the waterfall reached: a buyer after the one that bought the
lead is not counted for it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge

from gateway.config.model import Config
from gateway.decision.answer import Answer
from gateway.decision.distribution import SOLD, Refusal

#: A buyer's part in one decision (metric label values): ``sold`` or the refusal code's word.
BUYER_RESULTS = (SOLD, *(r.value.removeprefix("buyer.") for r in Refusal))
_RESULT_OF = {SOLD: SOLD, **{r.value: r.value.removeprefix("buyer.") for r in Refusal}}


class BuyerMetrics:
    def __init__(self, config: Config, registry: CollectorRegistry) -> None:
        r = registry
        self.offers = Counter(
            "leadgate_buyer_offers",
            "Leads of distributed campaigns per buyer, by what became of the buyer's part: "
            "sold, duplicate or capped (offered), filtered, closed or disabled (not offered).",
            ["campaign", "buyer", "result"],
            registry=r,
        )
        self.revenue = Counter(
            "leadgate_buyer_revenue",
            "Sum of the prices of the leads sold to a buyer, in the buyer's currency.",
            ["campaign", "buyer"],
            registry=r,
        )
        self.buyers = Gauge(
            "leadgate_campaign_buyers",
            "How many buyers a distributed campaign has (campaigns with one advertiser have "
            "no series).",
            ["campaign"],
            registry=r,
            multiprocess_mode="livemostrecent",
        )
        self.cap_used = Gauge(
            "leadgate_buyer_cap_used",
            "Leads counted by a buyer's cap in its current window (partner and channel caps: "
            "the one closest to the limit), read at scrape.",
            ["campaign", "buyer", "subject", "window"],
            registry=r,
            multiprocess_mode="livemostrecent",
        )
        self.cap_limit = Gauge(
            "leadgate_buyer_cap_limit",
            "The configured limit of a buyer's cap.",
            ["campaign", "buyer", "subject", "window"],
            registry=r,
            multiprocess_mode="livemostrecent",
        )
        self._children: dict[tuple[str, str, str], Any] = {}
        self._revenue: dict[tuple[str, str], Any] = {}
        self._known: set[tuple[str, ...]] = set()
        self.configure(config)

    def configure(self, config: Config) -> None:
        """Series at 0 for every buyer of every distributed campaign (at start, on reload)."""
        for campaign in config.campaigns.values():
            distribution = campaign.distribution
            if distribution is None:
                continue
            self.buyers.labels(campaign.id).set(len(distribution.buyers))
            for buyer in distribution.buyers:
                for result in BUYER_RESULTS:
                    self.offers.labels(campaign.id, buyer.advertiser, result)
                self.revenue.labels(campaign.id, buyer.advertiser)
                for cap in buyer.caps:
                    labels = (campaign.id, buyer.advertiser, cap.subject.value, cap.window.label)
                    self.cap_limit.labels(*labels).set(cap.limit)
                    if labels not in self._known:
                        self._known.add(labels)
                        self.cap_used.labels(*labels).set(0)

    def decided(self, answers: Sequence[Answer]) -> None:
        """Count each buyer's part in each answer (replays were counted the first time)."""
        for answer in answers:
            if answer.replayed or answer.test:
                continue
            for buyer, code in answer.offers:
                key = (answer.campaign, buyer, code)
                child = self._children.get(key)
                if child is None:
                    child = self._children[key] = self.offers.labels(
                        answer.campaign, buyer, _RESULT_OF.get(code, code)
                    )
                child.inc()
            for sale in answer.sales or ():
                if sale.price:
                    at = (answer.campaign, sale.buyer)
                    revenue = self._revenue.get(at)
                    if revenue is None:
                        revenue = self._revenue[at] = self.revenue.labels(*at)
                    revenue.inc(sale.price)
