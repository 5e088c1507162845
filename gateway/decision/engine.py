"""The decision protocol over any ``Store``, for one lead or a batch.

Round trips, each one pipelined for the whole batch and skipped when nothing needs it:

1. **claim** (requests with an Idempotency-Key): the partner's claim on the key and the stored
   answer, if any. A replay is answered here; a key reused with another body is a conflict.
2. **reserve** (campaigns with suppression lists, network dedup or contact pressure): per
   identity, in the person's own slot: check the lists, then check and take a pressure slot /
   network mark for this lead.
3. **decide**: the atomic check-and-commit in the advertiser's slot. A lead refused in step 2
   still passes here (as a forced outcome) so its idempotent answer is recorded atomically,
   and so does a keyed lead rejected before the store (``DecisionRequest.rejected``).
4. **release**: give back the reservations of leads that were not accepted.

A ping (``DecisionRequest.hold``, ``HoldMode.TAKE``) takes the same steps, but reserves
nothing in the person's slot (checked only, as a test lead: nothing to release) and, accepted,
leaves only its hold in step 3. A post naming a ping (``HoldMode.COMMIT``) is a post.

A crash after 2 leaves a reservation that holds a slot until its window ends; a crash after 3
leaves an accepted lead committed (and its answer stored for an idempotent retry). Neither can
lose an accepted lead nor accept one twice: acceptance happens only inside step 3's script.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from gateway.decision.model import (
    ClaimStatus,
    Decision,
    DecisionOutcome,
    DecisionRequest,
    HoldMode,
    PersonReservation,
)
from gateway.failpoints import Failpoints
from gateway.storage.base import DecisionStore, ForcedOutcome, ReserveResult
from gateway.types import LeadId


def _forced_decision(reason: str) -> Decision:
    """The decision a refusal in the person's slot stands for: network dedup is a duplicate,
    contact pressure a cap, a suppression list (any other code) a rejection."""
    if reason.startswith("duplicate."):
        return Decision.DUPLICATE
    if reason.startswith("cap."):
        return Decision.CAPPED
    return Decision.REJECTED


class DecisionEngine:
    def __init__(self, store: DecisionStore, failpoints: Failpoints | None = None) -> None:
        self.store = store
        self._failpoints = failpoints or Failpoints()

    async def run(self, given: Sequence[DecisionRequest]) -> list[DecisionOutcome | None]:
        """One outcome per request, in order; ``None`` for an Idempotency-Key reused with
        another body. Raises ``StoreUnavailable`` when the store cannot be reached."""
        if len(given) == 1:
            lone = given[0]
            if lone.idempotency is None and not lone.person and not lone.rejected:
                # The common single post: nothing to claim, reserve or release, only step 3
                # (what the steps below come to for it, without their lists).
                decided = await self.store.decide([(lone, None)])
                self._failpoints.hit("after-decide")
                return decided
        requests = list(given)
        outcomes: list[DecisionOutcome | None] = [None] * len(requests)
        todo = list(range(len(requests)))

        keyed = [(i, rq.idempotency) for i, rq in enumerate(requests) if rq.idempotency]
        if keyed:
            claims = await self.store.claim([ref for _, ref in keyed], requests[keyed[0][0]].now_ms)
            settled: set[int] = set()
            for (i, _), claim in zip(keyed, claims, strict=True):
                if claim.status is ClaimStatus.NEW:
                    if claim.lead_id is not None and claim.lead_id != requests[i].lead_id:
                        requests[i] = _rebind(requests[i], claim.lead_id)
                    continue
                settled.add(i)
                outcomes[i] = claim.answer  # None for a conflict
            todo = [i for i in todo if i not in settled]

        reservations: list[tuple[int, PersonReservation]] = [
            (i, r) for i in todo for r in _person(requests[i])
        ]
        reserved: list[ReserveResult] = []
        forced: dict[int, ForcedOutcome] = {
            i: ForcedOutcome(Decision.REJECTED.value, requests[i].rejected)
            for i in todo
            if requests[i].rejected
        }
        if reservations:
            reserved = await self.store.reserve([r for _, r in reservations])
            for (i, _), result in zip(reservations, reserved, strict=True):
                if result.reason and i not in forced:
                    decision = _forced_decision(result.reason)
                    forced[i] = ForcedOutcome(decision.value, (result.reason,))
            self._failpoints.hit("after-person-reserve")

        if todo:
            decided = await self.store.decide([(requests[i], forced.get(i)) for i in todo])
            for i, outcome in zip(todo, decided, strict=True):
                outcomes[i] = outcome
            self._failpoints.hit("after-decide")

        releases = [
            (reservation, result)
            for (i, reservation), result in zip(reservations, reserved, strict=True)
            if not result.reason
            and not reservation.dry_run
            and not _accepted_as(outcomes[i], requests[i])
        ]
        if releases:
            await self.store.release(releases)
        return outcomes


def _person(request: DecisionRequest) -> tuple[PersonReservation, ...]:
    """The request's person reservations; a ping's only checked, whoever built it: a ping
    takes no pressure slot and no network mark (docs/decision.md, "Ping and post")."""
    hold = request.hold
    if hold is None or hold.mode is not HoldMode.TAKE:
        return request.person
    return tuple(r if r.dry_run else dataclasses.replace(r, dry_run=True) for r in request.person)


def _accepted_as(outcome: DecisionOutcome | None, request: DecisionRequest) -> bool:
    """Whether the lead id this request reserved for was accepted: by this request, or by an
    earlier one with the same Idempotency-Key whose id it reused (its reservations are then
    the accepted lead's own and must stay)."""
    return (
        outcome is not None
        and outcome.decision is Decision.ACCEPTED
        and outcome.lead_id == request.lead_id
    )


def _rebind(request: DecisionRequest, lead_id: LeadId) -> DecisionRequest:
    """``request`` under the lead id an earlier request with its Idempotency-Key claimed: a
    retry after a crash then finds the reservations it made as its own, and the partner gets
    one lead id whatever happened in between."""
    old = request.lead_id
    return dataclasses.replace(
        request,
        lead_id=lead_id,
        # The record is JSON with the id as a whole string value: ids are UUIDs, so the quoted
        # old id occurs nowhere else.
        payload=request.payload.replace(f'"{old}"'.encode(), f'"{lead_id}"'.encode()),
        person=tuple(dataclasses.replace(r, lead_id=lead_id) for r in request.person),
    )
