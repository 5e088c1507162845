"""The contract every decision store fulfils: Redis (``storage.redis``) and embedded
(``storage.memory``).

Each method takes a batch and answers one result per item, in order, so a store can send the
whole batch in one round trip. Every method raises ``StoreUnavailable`` when the store cannot
be reached, and nothing else for infrastructure failures.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from gateway.decision.model import (
    ClaimResult,
    DecisionOutcome,
    DecisionRequest,
    IdempotencyRef,
    PersonReservation,
)


@dataclass(frozen=True, slots=True)
class ReserveResult:
    #: "" when reserved (or, in test mode, when it would be); otherwise the refusing reason code.
    reason: str
    #: What the network mark held before this reservation, for a release to restore.
    previous: str


@dataclass(frozen=True, slots=True)
class ForcedOutcome:
    """An outcome decided in the person's slot, recorded in the advertiser's (idempotency)."""

    decision: str
    reasons: tuple[str, ...]


@runtime_checkable
class SuppressionStore(Protocol):
    """Suppression lists: identity keys (``keys.person_suppressed``) carry the ids of the lists
    they are on. Only keyed fingerprints ever reach the store, never an email or a phone."""

    async def suppression_change(self, list_id: str, keys: Sequence[str], *, add: bool) -> int:
        """Put (``add``) or take the identities off the list; how many were not already so."""
        ...

    async def suppression_size(self, list_id: str) -> int:
        """How many identities the list holds."""
        ...


class Store(Protocol):
    name: str

    async def claim(self, refs: Sequence[IdempotencyRef], now_ms: int) -> list[ClaimResult]:
        """Claim each Idempotency-Key for its body digest; report replays and conflicts."""
        ...

    async def reserve(self, items: Sequence[PersonReservation]) -> list[ReserveResult]:
        """Step 1 of the person protocol: check and reserve in the person's slot."""
        ...

    async def decide(
        self, items: Sequence[tuple[DecisionRequest, ForcedOutcome | None]]
    ) -> list[DecisionOutcome | None]:
        """Step 2: the atomic check-and-commit. ``None`` marks an idempotency conflict."""
        ...

    async def release(self, items: Sequence[tuple[PersonReservation, ReserveResult]]) -> None:
        """Step 3: give back the reservations of leads that were not accepted."""
        ...

    async def ping(self) -> None:
        """Raise ``StoreUnavailable`` unless the store answers now."""
        ...

    async def close(self) -> None: ...
