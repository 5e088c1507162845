"""Which buyers a lead is offered to, in which order, and what an unsold lead is told (pure).

A buyer passes a lead for one of five reasons (``Refusal``). Three are known in the gateway
before any store work: its filter refuses the lead, it is closed now, or its CRM endpoint is
disabled (a 410; seen through an ``EndpointView``). The two others are decided in the buyer's
own slot, atomically with the sale: the person is a duplicate for it, or it is capped.

The order is kept per campaign by a ``BuyerTurns`` of this process: round robin and weighted
order (smooth weighted round robin) give each process exact shares when every buyer takes
every lead, so several processes together do too (docs/distribution.md).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from typing import Protocol
from zoneinfo import ZoneInfo

from gateway.config.model import Buyer, BuyerOrder, Distribution
from gateway.decision.model import Decision
from gateway.leads.lead import Lead
from gateway.types import AdvertiserId

#: What a buyer's part in a decision was, when it bought the lead (metric label, ledger).
SOLD = "sold"


class Refusal(enum.StrEnum):
    """Why one buyer passed a lead: the reason codes of an unsold lead (docs/reason-codes.md,
    never renamed)."""

    DUPLICATE = "buyer.duplicate"  # the buyer already has the person (its dedup)
    CAPPED = "buyer.capped"  # a cap of the buyer is full
    FILTERED = "buyer.filtered"  # the buyer's filter refuses the lead
    CLOSED = "buyer.closed"  # outside the buyer's opening hours
    DISABLED = "buyer.disabled"  # the buyer's CRM endpoint is disabled (it answered 410)


#: The decision each refusal stands for.
REFUSAL_DECISIONS = {
    Refusal.DUPLICATE: Decision.DUPLICATE,
    Refusal.CAPPED: Decision.CAPPED,
    Refusal.FILTERED: Decision.REJECTED,
    Refusal.CLOSED: Decision.REJECTED,
    Refusal.DISABLED: Decision.REJECTED,
}


class EndpointView(Protocol):
    """Which advertisers' CRM endpoints are disabled, as this process last saw them (a cached
    view: never a store call on the decision path)."""

    def disabled_now(self) -> frozenset[AdvertiserId]: ...


class NoEndpointView:
    """Every endpoint enabled (a process that watches none)."""

    def disabled_now(self) -> frozenset[AdvertiserId]:
        return frozenset()


def in_process_refusal(
    buyer: Buyer,
    lead: Lead,
    now_s: float,
    zone: ZoneInfo,
    *,
    channel: str,
    partner: str,
    disabled: frozenset[AdvertiserId],
) -> Refusal | None:
    """Why ``buyer`` is not offered ``lead`` at all, or ``None``: it is offered.
    ``disabled``: the advertisers whose endpoints are disabled (``EndpointView``)."""
    if buyer.hours is not None and not buyer.hours.open_at(now_s, zone):
        return Refusal.CLOSED
    if buyer.advertiser in disabled:
        return Refusal.DISABLED
    if buyer.filter is not None:
        if lead.hashed:  # a probe: judged on what it carries, the rest waits for the post
            verdict = buyer.filter.evaluate_probe(
                lead, now_s, lead.unknown, channel=channel, partner=partner
            )
        else:
            verdict = buyer.filter.evaluate(lead, now_s, channel=channel, partner=partner)
        if verdict.rejected:
            return Refusal.FILTERED
    return None


def unsold(refusals: Iterable[Refusal]) -> tuple[Decision, tuple[str, ...]]:
    """The answer to a lead no buyer took, from each buyer's refusal.

    ``duplicate`` when every buyer already had the person; otherwise ``capped`` when every
    buyer was a duplicate or capped (a cap frees up: the lead may sell later); otherwise
    ``rejected``. The reasons are the distinct codes of that decision only, so a code always
    comes with the same decision (docs/reason-codes.md)."""
    seen = list(dict.fromkeys(refusals))
    if not seen:
        raise ValueError("a campaign sold to buyers has at least one buyer")
    if all(r is Refusal.DUPLICATE for r in seen):
        decision = Decision.DUPLICATE
    elif all(r in (Refusal.DUPLICATE, Refusal.CAPPED) for r in seen):
        decision = Decision.CAPPED
    else:
        decision = Decision.REJECTED
    return decision, tuple(r.value for r in seen if REFUSAL_DECISIONS[r] is decision)


class BuyerTurns:
    """The order one campaign's buyers are offered leads in, kept by this process.

    ``order`` is called once per lead with the buyers it may be offered to (in the campaign's
    list order) and advances the turn: ``round_robin`` starts each lead with the next buyer;
    ``weighted`` is smooth weighted round robin (as nginx balances upstreams): over any run of
    leads each buyer comes first in proportion to its weight, evenly spread; ``priority`` and
    ``price`` sort, and buyers that tie take turns. The rest of the list is the waterfall.
    """

    __slots__ = ("_all", "_current", "_fixed", "_order", "_turn", "_turns")

    def __init__(self, distribution: Distribution) -> None:
        self._order = distribution.order
        self._turn = 0
        #: Ties (priority, price): one turn per tied group.
        self._turns: dict[float, int] = {}
        #: Smooth weighted round robin: each buyer's current weight.
        self._current: dict[AdvertiserId, int] = {b.advertiser: 0 for b in distribution.buyers}
        self._all = distribution.buyers
        #: Priority or price without ties: the order of all the buyers never changes, and the
        #: lead offered to all of them (the usual case) needs no sort.
        self._fixed: list[Buyer] | None = None
        rank = self._rank()
        if rank is not None and len({rank(b) for b in self._all}) == len(self._all):
            self._fixed = sorted(self._all, key=rank)

    def _rank(self) -> _Rank | None:
        if self._order is BuyerOrder.PRICE:
            return lambda b: -(b.price or 0.0)
        if self._order is BuyerOrder.PRIORITY:
            return lambda b: float(b.priority)
        return None

    def order(self, eligible: Sequence[Buyer]) -> list[Buyer]:
        if not eligible:
            return []
        if self._fixed is not None and len(eligible) == len(self._all):
            return self._fixed
        if self._order is BuyerOrder.ROUND_ROBIN:
            start = self._turn % len(eligible)
            self._turn += 1
            return [*eligible[start:], *eligible[:start]]
        if self._order is BuyerOrder.WEIGHTED:
            return self._weighted(eligible)
        rank = self._rank()
        assert rank is not None
        return self._grouped(eligible, rank)

    def _weighted(self, eligible: Sequence[Buyer]) -> list[Buyer]:
        current = self._current
        total = 0
        for buyer in eligible:
            current[buyer.advertiser] = current.get(buyer.advertiser, 0) + buyer.weight
            total += buyer.weight
        # Highest current weight first; ties in list order (sorted is stable).
        ranked = sorted(eligible, key=lambda b: -current[b.advertiser])
        current[ranked[0].advertiser] -= total
        return ranked

    def _grouped(self, eligible: Sequence[Buyer], rank: _Rank) -> list[Buyer]:
        groups: dict[float, list[Buyer]] = {}
        for buyer in eligible:
            groups.setdefault(rank(buyer), []).append(buyer)
        ordered: list[Buyer] = []
        for key in sorted(groups):
            group = groups[key]
            if len(group) > 1:
                turn = self._turns.get(key, 0)
                self._turns[key] = turn + 1
                start = turn % len(group)
                group = [*group[start:], *group[:start]]
            ordered += group
        return ordered


class _Rank(Protocol):
    def __call__(self, buyer: Buyer, /) -> float: ...
