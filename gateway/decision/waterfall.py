"""The sale protocol of a distributed campaign over any ``SaleStore``, for one lead or a batch.

Round trips, each one pipelined for the whole batch and skipped when nothing needs it
(docs/decision.md, "Distribution", has the crash argument):

1. **claim** (requests with an Idempotency-Key; partner slot): replay or conflict answered
   here; the key's lease taken (``SET NX PX``), so a second request with the key while this
   one runs is told to wait (409) instead of selling the same lead id at the same time; a
   retry after a crash gets the first attempt's lead id.
2. **open** (a retry of a crashed attempt, person checks, or campaign-level dedup or caps):
   look for sales of the lead id at every buyer (only a retry of a crashed attempt: the lead
   index written with each sale is the witness), reserve the person (as ``decision.engine``),
   check and take the campaign's own dedup marks and caps in its slot.
3. **waterfall**: offer the lead to the next buyer in this lead's order (shared: to as many
   as it may still be sold to, at once), each offer ``decide.lua`` in the buyer's slot: the
   sale happens there, atomically, or not at all. One round trip per buyer tried (shared: per
   group of buyers tried together); exclusive stops at the first sale, shared at N.
4. **close** (campaign-level dedup or caps, an Idempotency-Key, or person reservations of an
   unsold lead): give back what a lead not sold took (campaign and person), store the answer
   with its buyers.

A post naming a ping that the gateway refused (``SaleRequest.rejected``: its campaign's rules
or state, or no buyer to offer it to) is only claimed and closed: offered to no buyer, it gives
back the places its ping holds at each buyer and on the campaign's caps, and records its answer.

A keyed request stops before a new step once half its lease is spent (503, outcome unknown):
a retry may take the lease over only after the lease, when this request can no longer sell.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from gateway.config.model import Buyer
from gateway.decision.distribution import SOLD, Refusal, unsold
from gateway.decision.model import (
    ClaimStatus,
    Decision,
    DecisionOutcome,
    DecisionRequest,
    HoldMode,
    PersonReservation,
    PingStatus,
)
from gateway.decision.ping import commit_hold
from gateway.decision.sale_plan import SaleRequest
from gateway.errors import (
    IdempotencyConflict,
    IdempotencyInProgress,
    RequestError,
    StoreUnavailable,
)
from gateway.failpoints import Failpoints
from gateway.storage.base import (
    ForcedOutcome,
    ReserveResult,
    SaleClaim,
    SaleClosing,
    SaleOpening,
    SaleStore,
)
from gateway.types import AdvertiserId


@dataclass(frozen=True, slots=True)
class SaleResult:
    """A distributed campaign's decision: the answer (its ``buyers`` when sold) and each
    buyer's part in it, for metrics and the decision log (``sold``, or its refusal code): the
    buyers tried in order, then those not offered; a buyer the waterfall did not reach is not
    listed."""

    outcome: DecisionOutcome
    offers: tuple[tuple[AdvertiserId, str], ...] = ()


@dataclass(slots=True)
class _Lead:
    """One lead's progress through the protocol."""

    request: SaleRequest
    #: Buyers still to offer it to, in order.
    queue: list[Buyer]
    sold: list[AdvertiserId] = field(default_factory=list)
    offers: list[tuple[AdvertiserId, str]] = field(default_factory=list)
    refusals: list[Refusal] = field(default_factory=list)
    #: Decided before the waterfall (a refusal of the gateway, the campaign or the person's
    #: slot).
    refused: ForcedOutcome | None = None
    reserved: tuple[ReserveResult, ...] = ()
    #: The campaign reservation was taken (not refused).
    taken: bool = False
    resumed: bool = False
    #: A post naming a ping: what the buyers' scripts said of its hold, in order.
    ping_statuses: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, request: SaleRequest) -> _Lead:
        """A lead as the protocol starts: one the gateway refused is decided already."""
        refused = None
        if request.rejected:
            refused = ForcedOutcome(Decision.REJECTED.value, request.rejected)
        return cls(request, list(request.offers), refused=refused)

    @property
    def opens(self) -> bool:
        """Whether step 2 has work for it: a retry of a crashed attempt, person checks, or
        campaign-level dedup or caps; never for a lead the gateway refused."""
        rq = self.request
        return not rq.rejected and (self.resumed or bool(rq.person) or rq.reservation is not None)

    @property
    def wanted(self) -> int:
        """How many more buyers to offer it to now."""
        if self.refused is not None:
            return 0
        return min(self.request.max_buyers - len(self.sold), len(self.queue))


def _forced_decision(reason: str) -> Decision:
    if reason.startswith("duplicate."):
        return Decision.DUPLICATE
    if reason.startswith("cap."):
        return Decision.CAPPED
    return Decision.REJECTED


class Waterfall:
    """Runs the sale protocol; ``clock``: monotonic seconds (the lease budget)."""

    def __init__(
        self,
        store: SaleStore,
        failpoints: Failpoints | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self._failpoints = failpoints or Failpoints()
        self._clock = clock

    async def run(self, given: Sequence[SaleRequest]) -> list[SaleResult | RequestError]:
        """One result per request, in order: the decision, or ``IdempotencyConflict`` /
        ``IdempotencyInProgress``. Raises ``StoreUnavailable`` when the store cannot be
        reached, or when a keyed request spent half its lease (the outcome is then unknown:
        a retry with the key after the lease finds it)."""
        started = self._clock()
        results: list[SaleResult | RequestError | None] = [None] * len(given)
        leads: dict[int, _Lead] = {i: _Lead.of(rq) for i, rq in enumerate(given)}
        keyed = [i for i, rq in enumerate(given) if rq.idempotency is not None]
        budget_s = min((given[i].lease_ms for i in keyed), default=0) / 2000

        if keyed:
            await self._claim(keyed, leads, results, given[keyed[0]].now_ms)
            self._failpoints.hit("after-sale-claim")
        if any(lead.opens for lead in leads.values()):
            await self._open(leads)
        while any(lead.wanted for lead in leads.values()):
            if keyed:
                self._check_budget(started, budget_s)
            await self._offer(leads)
        self._failpoints.hit("after-waterfall")
        if keyed:
            self._check_budget(started, budget_s)
        await self._close(leads)
        for i, lead in leads.items():
            results[i] = _result(lead)
        done = [r for r in results if r is not None]
        assert len(done) == len(given), "every request is answered"
        return done

    def _check_budget(self, started: float, budget_s: float) -> None:
        """A keyed request stops before its next step once half its lease is spent: after the
        lease, a retry may take it over, and this request must no longer be able to sell."""
        if self._clock() - started > budget_s:
            raise StoreUnavailable(
                "a keyed sale ran past half its lease: stopped before its next step",
                outcome_unknown=True,
            )

    async def _claim(
        self,
        keyed: list[int],
        leads: dict[int, _Lead],
        results: list[SaleResult | RequestError | None],
        now_ms: int,
    ) -> None:
        claims = []
        for i in keyed:
            rq = leads[i].request
            assert rq.idempotency is not None
            claims.append(SaleClaim(rq.idempotency, rq.lease_key, rq.lease_ms))
        for i, claimed in zip(keyed, await self.store.claim_sales(claims, now_ms), strict=True):
            claim = claimed.claim
            if claim.status is ClaimStatus.REPLAY and claim.answer is not None:
                results[i] = SaleResult(claim.answer)
            elif claim.status is not ClaimStatus.NEW:
                results[i] = IdempotencyConflict("this Idempotency-Key was used with another body")
            elif not claimed.leased:
                results[i] = IdempotencyInProgress(
                    "a request with this Idempotency-Key is being decided; retry after "
                    "Retry-After seconds to get its answer",
                    max(1, math.ceil(claimed.lease_left_ms / 1000)),
                )
            else:
                lead = leads[i]
                if claim.lead_id is not None and claim.lead_id != lead.request.lead_id:
                    lead.request = lead.request.rebind(claim.lead_id)
                    lead.resumed = True
                continue
            del leads[i]

    async def _open(self, leads: dict[int, _Lead]) -> None:
        """Step 2 for the leads that need it (a retry of a crashed attempt, person checks,
        campaign-level dedup or caps)."""
        opening = {
            i: SaleOpening(
                lead.request.probes() if lead.resumed else (),
                lead.request.person,
                lead.request.reservation,
            )
            for i, lead in leads.items()
            if lead.opens
        }
        if not opening:
            return
        opened = await self.store.open_sales(list(opening.values()))
        for i, result in zip(opening, opened, strict=True):
            lead = leads[i]
            lead.reserved = result.person
            lead.taken = lead.request.reservation is not None and result.refused is None
            probed = lead.request.buyers if lead.resumed else ()
            found = [b for b, sold in zip(probed, result.sold, strict=True) if sold]
            if found:
                # An earlier attempt under this lead id sold it (then crashed): those sales
                # stand and count toward the campaign's limit; the lead is never offered to
                # them again. Refusals now would be of the lead itself: they do not apply.
                lead.sold = found
                lead.offers = [(b, SOLD) for b in found]
                lead.queue = [b for b in lead.queue if b.advertiser not in found]
                continue
            refusal = result.refused or next(
                (
                    ForcedOutcome(_forced_decision(r.reason).value, (r.reason,))
                    for r in result.person
                    if r.reason
                ),
                None,
            )
            lead.refused = refusal
        self._failpoints.hit("after-sale-open")

    async def _offer(self, leads: dict[int, _Lead]) -> None:
        """One round of the waterfall: each lead still wanting buyers is offered to the next
        ones (as many as it may still be sold to), in one round trip for all."""
        tries: list[tuple[_Lead, AdvertiserId]] = []
        requests: list[DecisionRequest] = []
        for lead in leads.values():
            for _ in range(lead.wanted):
                offered = lead.queue.pop(0)
                tries.append((lead, offered.advertiser))
                rq = lead.request
                hold = rq.hold_for(offered.advertiser)
                requests.append(rq.requests.request(offered, rq.lead_id, hold))
        decided = await self.store.decide([(rq, None) for rq in requests])
        any_sold = False
        for (lead, buyer), outcome in zip(tries, decided, strict=True):
            assert outcome is not None, "a buyer's offer carries no Idempotency-Key"
            if outcome.ping_status and outcome.ping_status != PingStatus.HELD:
                lead.ping_statuses.append(outcome.ping_status)
            if outcome.decision is Decision.ACCEPTED:
                lead.sold.append(buyer)
                lead.offers.append((buyer, SOLD))
                any_sold = True
            else:
                duplicate = outcome.decision is Decision.DUPLICATE
                refusal = Refusal.DUPLICATE if duplicate else Refusal.CAPPED
                lead.refusals.append(refusal)
                lead.offers.append((buyer, refusal.value))
        if any_sold:
            self._failpoints.hit("after-sale")

    async def _release_holds(self, leads: dict[int, _Lead]) -> None:
        """A post naming a ping that did not reach some of the buyers holding it (refused in
        the gateway or at its open, or those buyers filtered, closed or disabled now): their
        holds are given back now, each by its buyer's script under a forced refusal, which
        uses a live hold up atomically as any post naming it would (``released``), so the
        room returns before the ping's expiry. One round trip, only when there are such
        holds. A test post's scripts run in test mode: they say what a real post's would
        (``released``) and write nothing."""
        tries: list[tuple[_Lead, DecisionRequest]] = []
        for lead in leads.values():
            rq, ping = lead.request, lead.request.ping
            if ping is None or ping.mode is not HoldMode.COMMIT:
                continue
            offered = {buyer for buyer, _ in lead.offers}
            by_id = {b.advertiser: b for b in rq.requests.buyers}
            for advertiser in ping.held:
                if advertiser not in offered and advertiser in by_id:
                    hold = commit_hold(advertiser, ping.ping_id)
                    request = rq.requests.request(by_id[advertiser], rq.lead_id, hold)
                    tries.append((lead, request))
        if not tries:
            return
        decided = await self.store.decide([(rq, _RELEASE) for _, rq in tries])
        for (lead, _), outcome in zip(tries, decided, strict=True):
            if outcome is not None and outcome.ping_status:
                lead.ping_statuses.append(outcome.ping_status)

    async def _close(self, leads: dict[int, _Lead]) -> None:
        await self._release_holds(leads)
        closing: list[SaleClosing] = []
        for lead in leads.values():
            rq = lead.request
            if rq.ping is not None and rq.ping.mode is HoldMode.TAKE:
                # A ping writes nothing to give back but the campaign's holds of a ping no
                # buyer would buy (a ping that would sell keeps them until its post or its
                # expiry); a ping carries no Idempotency-Key.
                if lead.sold or not lead.taken:
                    continue
                unhold = _campaign_holds(rq)
                if unhold:
                    closing.append(
                        SaleClosing(None, False, rq.anchor, unhold=unhold, ping_id=rq.ping.ping_id)
                    )
                continue
            if rq.idempotency is None and rq.reservation is None and not rq.person:
                continue  # nothing to store or give back
            sold = bool(lead.sold)
            releases: tuple[tuple[PersonReservation, ReserveResult], ...] = ()
            if not sold:
                releases = tuple(
                    (r, result)
                    for r, result in zip(rq.person, lead.reserved, strict=True)
                    if not result.reason and not r.dry_run
                )
            reservation = rq.reservation if lead.taken and not rq.dry_run else None
            ping_id = rq.ping.ping_id if rq.ping is not None else ""
            # A post naming a ping that the gateway refused never ran campaign_reserve.lua,
            # which uses the ping's hold up in the campaign's slot: its close does.
            unhold = _campaign_holds(rq) if rq.rejected and ping_id else ()
            if reservation is None and rq.idempotency is None and not releases and not unhold:
                continue
            if sold and reservation is not None and rq.idempotency is None:
                # Sold: what the reservation took is the sale's; its record expires by itself.
                reservation = None
                if not releases:
                    continue
            answer_key, answer, ttl_ms = "", "", 0
            if rq.idempotency is not None:
                ref = rq.idempotency
                answer_key, ttl_ms = ref.answer_key, ref.ttl_ms
                answer = _result(lead).outcome.encode(ref.body_digest)
            closing.append(SaleClosing(
                reservation, sold, rq.anchor, answer_key, answer, ttl_ms, releases,
                unhold=unhold, ping_id=ping_id,
            ))  # fmt: skip
        if closing:
            await self.store.close_sales(closing)
            self._failpoints.hit("after-sale-close")


def _campaign_holds(rq: SaleRequest) -> tuple[str, ...]:
    """The campaign's holds sets its ping may hold a place in (those of its caps that have
    them); none in test mode, where a ping holds nothing."""
    if rq.reservation is None or rq.dry_run:
        return ()
    return tuple(cap.holds for cap in rq.reservation.caps if cap.holds)


def _result(lead: _Lead) -> SaleResult:
    rq = lead.request
    # The buyers tried, in the order they were, then those not offered (filtered, closed,
    # disabled): the waterfall as ops read it in the decision log.
    offers = tuple([*lead.offers, *((b, r.value) for b, r in rq.passed)])
    status = _ping_status(lead)
    if lead.sold:
        outcome = DecisionOutcome(
            Decision.ACCEPTED, (), rq.lead_id, buyers=tuple(lead.sold), ping_status=status
        )
    elif lead.refused is not None:
        decision = Decision(lead.refused.decision)
        outcome = DecisionOutcome(decision, lead.refused.reasons, rq.lead_id, ping_status=status)
    else:
        decision, reasons = unsold([*(r for _, r in rq.passed), *lead.refusals])
        outcome = DecisionOutcome(decision, reasons, rq.lead_id, ping_status=status)
    return SaleResult(outcome, offers)


#: A post's statuses of its ping, the one that says most first: sold on a held place, a
#: hold given back, then why it was decided afresh.
_STATUS_RANK: dict[str, int] = {
    s.value: i
    for i, s in enumerate(
        (PingStatus.COMMITTED, PingStatus.RELEASED, PingStatus.EXPIRED, PingStatus.USED)
    )
}
#: What ``_release_holds`` forces in a buyer's script: nothing is checked or written but the
#: hold used up (no Idempotency-Key on a buyer's offer, so nothing recorded either).
_RELEASE = ForcedOutcome(Decision.REJECTED.value, ("ping.released",))


def _ping_status(lead: _Lead) -> str:
    """What became of a lead's ping (``DecisionOutcome.ping_status``): a ping that holds a
    place at a buyer ``held`` (none: ""); a post naming one, the status that says most among
    its buyers' (``committed`` only when a buyer bought it on its held place), else what its
    records said when read (``expired``, ``used``, ``unknown``)."""
    ping = lead.request.ping
    if ping is None:
        return ""
    if ping.mode is HoldMode.TAKE:
        return PingStatus.HELD.value if lead.sold else ""
    found = [s for s in lead.ping_statuses if s in _STATUS_RANK]
    if found:
        return str(min(found, key=_STATUS_RANK.__getitem__))
    return ping.status or PingStatus.UNKNOWN.value
