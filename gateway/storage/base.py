"""The one store contract: what every store offers, capability by capability.

Two stores implement all of it, and say so by subclassing ``Store`` (so ``mypy --strict``
checks every signature, not a runtime ``isinstance``):

- ``storage.redis.RedisStore``: the system of record, a single Redis or a Redis Cluster (its
  pipeline routes each command to its slot's primary; the scripts only ever touch keys of
  one hash slot);
- ``storage.memory.MemoryStore``: the embedded store, in one process's memory (demo, laptop,
  unit tests), answering exactly as the Redis scripts do.

Capabilities, each a protocol of its own so a consumer asks for no more than it uses:

================  =====================================================  ===================
capability        methods                                                used by
================  =====================================================  ===================
decision          ``claim``, ``reserve``, ``decide``, ``release``        ``decision.engine``
sale              ``claim_sales``, ``open_sales``, ``close_sales``,      ``decision.waterfall``
                  and ``decide`` for each buyer
ledger            ``ledger_add``, ``ledger_read``                        ``quality.ledger``
feedback          ``record_feedback``                                    ``quality.feedback``
pings             ``read_pings`` (``decide`` takes and uses the holds)   ``decision.intake``
erasure           ``erase_keys``, ``erase_fields``,                      ``privacy.erasure``
                  ``suppression_lists``
suppression       ``suppression_change``, ``suppression_size``           ``privacy.suppression``
counters          ``read_for_metrics``                                   ``observe.caps``
health            ``ping``, ``close``, ``name``                          the app, ``/readyz``
================  =====================================================  ===================

Batch methods take a batch and answer one result per item, in order, so a store can send the
whole batch in one round trip. Every method raises ``StoreUnavailable`` when the store cannot
be reached and ``StoreError`` when it refuses, and nothing else for infrastructure failures.
Only keyed fingerprints, configured ids and codes ever reach a store's keys.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from gateway.decision.model import (
    CampaignReservation,
    ClaimResult,
    DecisionOutcome,
    DecisionRequest,
    IdempotencyRef,
    PersonReservation,
)
from gateway.storage.keys import LeadIndexSlot

#: One Redis command as a tuple of its words (``("GET", key)``): what the read-only
#: ``read_for_metrics`` takes and what the Redis pipeline sends.
Command = tuple[str | bytes | int | float, ...]


@dataclass(frozen=True, slots=True)
class ReserveResult:
    #: "" when reserved (or, in test mode, when it would be); otherwise the refusing reason code.
    reason: str
    #: What the network mark held before this reservation, for a release to restore.
    previous: str


@dataclass(frozen=True, slots=True)
class FeedbackRef:
    """One verdict to record: where its lead is indexed (``keys.lead_index``, and the
    previous layout's key, ``keys.legacy_lead_index``), the key of the lead's recorded
    statuses (``keys.lead_feedback``) and the status."""

    index: LeadIndexSlot
    legacy_index: str
    statuses: str
    status: str


@dataclass(frozen=True, slots=True)
class LeadProbe:
    """Where a buyer indexed its sale of a lead id, if it bought it: the packed lead index
    (``keys.lead_index``), and the previous layout's key (``keys.legacy_lead_index``), which
    a store reads only for a lead id made before it served the packed layout (the id's time
    before ``legacy_seen_until_ms``: only then can an earlier attempt have written it)."""

    index: LeadIndexSlot
    legacy_index: str


@dataclass(frozen=True, slots=True)
class ForcedOutcome:
    """An outcome decided in the person's slot, recorded in the advertiser's (idempotency)."""

    decision: str
    reasons: tuple[str, ...]


class Health(Protocol):
    #: ``redis`` or ``embedded``: shown by ``/readyz`` and the start-up log.
    name: str

    async def ping(self) -> None:
        """Raise ``StoreUnavailable`` unless the store answers now."""
        ...

    async def close(self) -> None:
        """Release connections; the store is not used afterwards."""
        ...


class DecisionStore(Health, Protocol):
    """The decision protocol's steps (``decision.engine``; docs/decision.md)."""

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


@dataclass(frozen=True, slots=True)
class SaleClaim:
    """A keyed request to a distributed campaign: its claim (as ``claim``'s) and its lease."""

    ref: IdempotencyRef
    #: ``keys.sale_lease``: taken (``SET NX PX``) in the claim's round trip.
    lease_key: str
    lease_ms: int


@dataclass(frozen=True, slots=True)
class SaleClaimed:
    claim: ClaimResult
    #: Whether this request holds the lease. If not, another request with the key took it
    #: less than the lease ago (it is being decided, or it crashed): wait ``lease_left_ms``.
    leased: bool
    lease_left_ms: int


@dataclass(frozen=True, slots=True)
class SaleOpening:
    """What a distributed campaign's lead checks and takes before any buyer is offered it."""

    #: Where every buyer would have indexed a sale of this lead id, read to find sales an
    #: earlier attempt under this lead id made (a keyed retry after a crash); empty: not
    #: looked for.
    probes: tuple[LeadProbe, ...]
    person: tuple[PersonReservation, ...]
    reservation: CampaignReservation | None


@dataclass(frozen=True, slots=True)
class SaleOpened:
    #: One per probe: whether that buyer bought the lead already.
    sold: tuple[bool, ...]
    person: tuple[ReserveResult, ...]
    #: Why the campaign reservation refused the lead (its dedup, its caps); ``None``: taken.
    refused: ForcedOutcome | None


@dataclass(frozen=True, slots=True)
class SaleClosing:
    """A distributed campaign's lead after its buyers: give back what a lead not sold took, and
    store the idempotent answer."""

    reservation: CampaignReservation | None
    sold: bool
    #: A key of the campaign's slot that is never written (stands in for an absent key).
    anchor: str
    #: ``keys.campaign_answer`` and the stored answer (``DecisionOutcome.encode``); ``""``:
    #: the request has no Idempotency-Key.
    answer_key: str = ""
    answer: str = ""
    answer_ttl_ms: int = 0
    #: The person reservations to give back (a lead not sold).
    releases: tuple[tuple[PersonReservation, ReserveResult], ...] = ()
    #: A ping no buyer would buy, or a post naming a ping that the gateway refused: the
    #: campaign's holds sets the ping took a place in, and its id, removed from them now (its
    #: room returns at once rather than at its expiry).
    unhold: tuple[str, ...] = ()
    ping_id: str = ""


class SaleStore(DecisionStore, Protocol):
    """The steps of a distributed campaign's decision (``decision.waterfall``;
    docs/decision.md, "Distribution"), each one round trip for a whole batch; the buyers are
    offered the lead with ``decide``, one atomic script in each buyer's slot."""

    async def claim_sales(self, items: Sequence[SaleClaim], now_ms: int) -> list[SaleClaimed]:
        """``claim`` each key and take its lease, in one round trip."""
        ...

    async def open_sales(self, items: Sequence[SaleOpening]) -> list[SaleOpened]:
        """Per lead: the probes, the person reservations (as ``reserve``), the campaign
        reservation, all in one round trip."""
        ...

    async def close_sales(self, items: Sequence[SaleClosing]) -> None:
        """Per lead, in one round trip: store the answer, give back the campaign reservation
        and the person reservations of a lead not sold."""
        ...


class PingStore(Protocol):
    """Pings' records (``keys.ping_record``), read to match a post against the ping it
    names before it is decided (``decision.ping``); ``decide`` takes and uses the holds."""

    async def read_pings(self, keys: Sequence[str], now_ms: int) -> list[str | None]:
        """Each record's text (``decision.ping.PingRecord`` or ``used``), ``None`` for a
        record the store does not hold, in one round trip. ``now_ms``: the request's clock,
        which the embedded store expires records by."""
        ...


class LedgerStore(Protocol):
    """The partner quality ledger's daily counts (``keys.quality_day``)."""

    async def ledger_add(self, increments: Mapping[str, Mapping[str, int]]) -> None:
        """Add ``day -> field -> n`` in one round trip, refreshing each day's TTL."""
        ...

    async def ledger_read(self, days: Sequence[str]) -> dict[str, dict[str, int]]:
        """Each day's ``field -> count`` (``{}`` for a day without data)."""
        ...


class FeedbackStore(Protocol):
    """Advertisers' verdicts, recorded against the lead index ``decide`` wrote."""

    async def record_feedback(
        self, items: Sequence[FeedbackRef], now_ms: int
    ) -> list[tuple[str, str]]:
        """Per item: ``(result, index value)``, result one of ``ok``, ``repeat``, ``window``
        (a return after the return window), ``unknown``; the index value
        ``partner|campaign|channel|accepted_ms|return_until_ms|feedback_until_ms`` (or "")."""
        ...


class ErasureStore(Protocol):
    """What an erasure deletes, found from the configuration (``privacy.erasure``)."""

    async def erase_keys(self, keys: Sequence[str]) -> int:
        """Delete these keys; how many existed."""
        ...

    async def erase_fields(self, fields: Sequence[tuple[str, str]]) -> int:
        """Delete these ``(hash key, field)``; how many existed."""
        ...

    async def suppression_lists(self, keys: Sequence[str]) -> set[str]:
        """The ids of the suppression lists these identity keys are on."""
        ...


class SuppressionStore(Protocol):
    """Suppression lists: identity keys (``keys.person_suppressed``) carry the ids of the lists
    they are on. Only keyed fingerprints ever reach the store, never an email or a phone."""

    async def suppression_change(self, list_id: str, keys: Sequence[str], *, add: bool) -> int:
        """Put (``add``) or take the identities off the list; how many were not already so."""
        ...

    async def suppression_size(self, list_id: str) -> int:
        """How many identities the list holds."""
        ...


class CounterReader(Protocol):
    """Cap counters read at scrape time and by the caps status (``observe.caps``)."""

    async def read_for_metrics(self, commands: Sequence[Command]) -> list[Any]:
        """Read-only commands (``GET``, ``ZCOUNT``, ``ZRANGEBYSCORE … WITHSCORES LIMIT 0 1``,
        ``PING``) in one round trip, answered as Redis does; an error reply stays in place of
        its result."""
        ...


class Store(
    SaleStore,
    PingStore,
    LedgerStore,
    FeedbackStore,
    ErasureStore,
    SuppressionStore,
    CounterReader,
    Protocol,
):
    """Every capability: what ``RedisStore`` and ``MemoryStore`` implement, explicitly."""
