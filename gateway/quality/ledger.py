"""The partner quality ledger: durable, time-ranged counts behind ``leadgate report partners``.

Prometheus counters answer "how fast, right now"; a report over "the last 7 days" needs counts
that survive restarts and can be summed over any range of days. The ledger counts per
(UTC day, partner, campaign, metric):

- the gateway's decisions (``posted``, ``accepted``, ``duplicate``, ``capped``, ``rejected``)
  on the day they were made;
- advertisers' feedback (``converted``, ``returned``, ``adv_rejected``) on the day its lead was
  *accepted*, so a range's return rate is the returns of the leads accepted in that range over
  those leads (a cohort), however late the advertiser reported.

A distributed campaign's sales are counted per buyer too (``partner|campaign|metric|buyer``):
``sold``, ``revenue_cents`` (the buyer's price) and ``payout_cents`` (the publisher's payout of
a lead, shared between the buyers of a shared lead to the cent); a campaign with one
advertiser counts its ``payout_cents`` per partner. Feedback on a distributed campaign's lead
is also counted per buyer (the advertiser that sent it: returns are per sale).

Test leads and idempotent replays are not counted (they were counted the first time, or never
count). Counting is a dict increment on the decision's hot path; ``flush`` sends what has
accumulated to the store in one round trip, ``run`` flushes every few seconds and ``close``
flushes the rest. When the store fails, the increments are kept and sent with the next flush;
past ``MAX_PENDING_FIELDS`` the oldest days are dropped, with a log line. Ids and counts only:
no personal data reaches the ledger.

A flush whose reply was lost (Redis went away mid-write) is sent again, so those counts may be
counted twice: the figures rank partners, they are not invoices.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

from gateway.config.model import Partner
from gateway.decision.answer import Answer
from gateway.decision.model import Decision
from gateway.errors import RequestError, StoreError
from gateway.storage.base import LedgerStore

LOG = logging.getLogger("leadgate.ledger")

DECISION_METRICS = ("posted", "accepted", "duplicate", "capped", "rejected")
#: Advertiser feedback statuses -> ledger metric (``rejected`` is taken by the gateway's own).
FEEDBACK_METRICS: Mapping[str, str] = {
    "converted": "converted",
    "returned": "returned",
    "rejected": "adv_rejected",
}
#: Money, in hundredths of the currency unit (the ledger counts integers).
MONEY_METRICS = ("sold", "revenue_cents", "payout_cents")
METRICS = (*DECISION_METRICS, *FEEDBACK_METRICS.values(), *MONEY_METRICS)
#: Pending ``(day, field)`` counts kept while the store is down; beyond, the oldest days go.
MAX_PENDING_FIELDS = 100_000
DAY_MS = 86_400_000

Increments = dict[str, dict[str, int]]


def day_of(ms: int) -> str:
    """The UTC day (``2026-11-22``) of an epoch-ms instant."""
    return datetime.fromtimestamp(ms // 1000, UTC).strftime("%Y-%m-%d")


def field_name(partner: str, campaign: str, metric: str, buyer: str = "") -> str:
    """``partner|campaign|metric``, and ``|buyer`` for a distributed campaign's per-buyer
    counts: configured ids never hold ``|`` (``[a-z0-9_-]``)."""
    if buyer:
        return f"{partner}|{campaign}|{metric}|{buyer}"
    return f"{partner}|{campaign}|{metric}"


def cents(amount: float) -> int:
    """A price or payout in hundredths of its currency unit."""
    return round(amount * 100)


class QualityLedger:
    def __init__(
        self, store: LedgerStore | None, *, max_pending_fields: int = MAX_PENDING_FIELDS
    ) -> None:
        """``store``: where counts go; ``None`` (a store without a ledger) counts nothing."""
        self.store = store
        self.max_pending_fields = max_pending_fields
        self._pending: Increments = {}
        self._flushing = asyncio.Lock()
        #: The last day number seen and its name: most increments fall on the same day.
        self._day_number = -1
        self._day = ""
        #: True from a failed flush to the next good one: one log line per outage, not per try.
        self._failing = False
        #: (partner, campaign, decision) -> the fields a decision of theirs counts in
        #: (``posted`` and the decision's own): configured ids and codes only, bounded below.
        self._decision_fields: dict[tuple[str, str, str], tuple[str, str]] = {}

    # --- counting (hot path: no I/O, no awaits) ----------------------------------------------

    def _add(
        self, at_ms: int, partner: str, campaign: str, metric: str, buyer: str = "", n: int = 1
    ) -> None:
        day = self._day_fields(at_ms)
        name = field_name(partner, campaign, metric, buyer)
        day[name] = day.get(name, 0) + n

    def _day_fields(self, at_ms: int) -> dict[str, int]:
        """The pending counts of the UTC day of ``at_ms``."""
        number = at_ms // DAY_MS
        if number != self._day_number:
            self._day_number, self._day = number, day_of(at_ms)
        day = self._pending.get(self._day)
        if day is None:
            day = self._pending[self._day] = {}
        return day

    def refused(self, partner: Partner, error: RequestError) -> None:
        """A lead refused before a decision is not counted: the report counts decisions."""

    def probed(
        self, partner: Partner, kind: str, answer: Answer | RequestError, elapsed_s: float
    ) -> None:
        """A check or a ping is not counted: the report counts leads (a ping's post is)."""

    def decided(
        self,
        partner: Partner,
        answers: Sequence[Answer | RequestError],
        elapsed_s: float,
        now_s: float,
    ) -> None:
        """Count the decisions of one request on the day of ``now_s`` (refused items, test
        leads and replays are not counted)."""
        if self.store is None:
            return
        now_ms = int(now_s * 1000)
        day: dict[str, int] | None = None  # made when a decision counts
        known = self._decision_fields
        for answer in answers:
            if isinstance(answer, RequestError) or answer.test or answer.replayed:
                continue
            # Every lead counts twice (posted, and its decision): the names once per route.
            at = (partner.id, answer.campaign, answer.decision)
            fields = known.get(at)
            if fields is None:
                if len(known) >= 4096:  # partners x campaigns x decisions of the config
                    known.clear()
                fields = known[at] = (
                    field_name(partner.id, answer.campaign, "posted"),
                    field_name(partner.id, answer.campaign, answer.decision),  # a StrEnum
                )
            if day is None:
                day = self._day_fields(now_ms)
            posted, decided = fields
            day[posted] = day.get(posted, 0) + 1
            day[decided] = day.get(decided, 0) + 1
            if answer.decision is Decision.ACCEPTED:
                self._money(now_ms, partner.id, answer)

    def _money(self, now_ms: int, partner: str, answer: Answer) -> None:
        """A sold lead's sales, revenue and payout (hundredths)."""
        payout = cents(answer.payout) if answer.payout else 0
        if answer.sales is None:
            if payout:
                self._add(now_ms, partner, answer.campaign, "payout_cents", n=payout)
            return
        share, rest = divmod(payout, len(answer.sales)) if answer.sales else (0, 0)
        for i, sale in enumerate(answer.sales):
            self._add(now_ms, partner, answer.campaign, "sold", sale.buyer)
            if sale.price:
                self._add(
                    now_ms, partner, answer.campaign, "revenue_cents", sale.buyer, cents(sale.price)
                )
            if share or (rest and i == 0):
                self._add(
                    now_ms,
                    partner,
                    answer.campaign,
                    "payout_cents",
                    sale.buyer,
                    share + (rest if i == 0 else 0),
                )

    def feedback(
        self, partner: str, campaign: str, status: str, accepted_at_ms: int, buyer: str = ""
    ) -> None:
        """Count one newly recorded feedback on its lead's acceptance day (and for ``buyer``,
        the advertiser that sent it, when the campaign is sold to buyers)."""
        metric = FEEDBACK_METRICS.get(status)
        if self.store is None or metric is None:
            return
        self._add(accepted_at_ms, partner, campaign, metric)
        if buyer:
            self._add(accepted_at_ms, partner, campaign, metric, buyer)

    @property
    def pending_fields(self) -> int:
        return sum(len(fields) for fields in self._pending.values())

    # --- writing ------------------------------------------------------------------------

    async def flush(self) -> bool:
        """Send what has accumulated in one round trip. False when the store failed: the
        increments are kept for the next flush. Never raises ``StoreError``."""
        if self.store is None:
            return True
        async with self._flushing:
            sending, self._pending = self._pending, {}
            if not sending:
                return True
            try:
                await self.store.ledger_add(sending)
            except StoreError as error:
                self._keep(sending)
                if not self._failing:
                    self._failing = True
                    LOG.warning(
                        "quality ledger not written; kept for the next flush: %s",
                        error,
                        extra={"fields": {"pending_fields": self.pending_fields}},
                    )
                return False
            if self._failing:
                self._failing = False
                LOG.info("quality ledger written again")
            return True

    def _keep(self, unsent: Increments) -> None:
        """Merge counts that could not be sent back into the pending ones (made meanwhile),
        then drop the oldest days while more than ``max_pending_fields`` wait."""
        for day, fields in unsent.items():
            kept = self._pending.setdefault(day, {})
            for name, n in fields.items():
                kept[name] = kept.get(name, 0) + n
        total = self.pending_fields
        if total <= self.max_pending_fields:
            return
        dropped_days, dropped_counts = [], 0
        for day in sorted(self._pending):
            if total <= self.max_pending_fields:
                break
            fields = self._pending.pop(day)
            total -= len(fields)
            dropped_days.append(day)
            dropped_counts += sum(fields.values())
        LOG.error(
            "quality ledger: store unavailable too long, oldest pending days dropped",
            extra={"fields": {"days": dropped_days, "counts": dropped_counts}},
        )

    async def run(self, every_s: float = 5.0) -> None:
        """Flush every ``every_s`` until cancelled (then ``close`` flushes the rest)."""
        while True:
            await asyncio.sleep(every_s)
            await self.flush()

    async def close(self) -> None:
        """Flush what is left (once: at shutdown the store may be gone for good)."""
        await self.flush()

    async def read(self, days: Sequence[str]) -> dict[str, dict[str, int]]:
        """The store's counts of ``days`` after a flush, so a report includes the latest
        decisions of this process (the embedded store's only way to be read)."""
        if self.store is None:
            return {day: {} for day in days}
        await self.flush()
        return await self.store.ledger_read(days)
