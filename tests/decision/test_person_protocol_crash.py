"""The two-slot person protocol survives a crash between its steps (at the engine level).

A store wrapper delegates to the real store and raises right after one step returns, as if
the gateway died there: after ``reserve`` (step 1 done, the decision never ran) or after
``decide`` (step 2 committed, the release never ran). Whatever happens, the crashed request
accepts nothing it did not commit, a slot it took is held at worst until its window ends, and
no later request is ever accepted twice. (The real ``kill -9`` of a gateway process is in
``test_crash_protocol.py``.)
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from support import (
    DAY_MS,
    T0,
    StoreView,
    calendar_cap,
    decide_one,
    dedup,
    idempotency,
    request,
    reservation,
)

from gateway.decision.engine import DecisionEngine
from gateway.decision.model import (
    ClaimResult,
    Decision,
    DecisionOutcome,
    DecisionRequest,
    IdempotencyRef,
    PersonReservation,
)
from gateway.storage.base import ForcedOutcome, ReserveResult, Store
from gateway.types import AdvertiserId

ACCEPTED, DUPLICATE, CAPPED = Decision.ACCEPTED, Decision.DUPLICATE, Decision.CAPPED
WINDOW_MS = 30 * DAY_MS
ACME, GLOBEX, INITECH = AdvertiserId("acme"), AdvertiserId("globex"), AdvertiserId("initech")


class SimulatedCrash(Exception):
    """The gateway process died here: nothing after this point ran."""


class CrashingStore:
    """A ``Store`` that delegates to ``inner`` and crashes right after ``crash_after`` returns
    (the step's effects are in the store; the engine never sees its answer)."""

    def __init__(self, inner: Store, crash_after: str) -> None:
        self.inner = inner
        self.crash_after = crash_after
        self.name = f"crash-after-{crash_after}"

    def _step_done(self, step: str) -> None:
        if step == self.crash_after:
            raise SimulatedCrash(step)

    async def claim(self, refs: Sequence[IdempotencyRef], now_ms: int) -> list[ClaimResult]:
        result = await self.inner.claim(refs, now_ms)
        self._step_done("claim")
        return result

    async def reserve(self, items: Sequence[PersonReservation]) -> list[ReserveResult]:
        result = await self.inner.reserve(items)
        self._step_done("reserve")
        return result

    async def decide(
        self, items: Sequence[tuple[DecisionRequest, ForcedOutcome | None]]
    ) -> list[DecisionOutcome | None]:
        result = await self.inner.decide(items)
        self._step_done("decide")
        return result

    async def release(self, items: Sequence[tuple[PersonReservation, ReserveResult]]) -> None:
        await self.inner.release(items)
        self._step_done("release")

    async def ping(self) -> None:
        await self.inner.ping()

    async def close(self) -> None:
        await self.inner.close()


def _lead(
    now_ms: int,
    advertiser: AdvertiserId,
    *,
    person: str = "ann",
    guard: str,
    cap: int = 10,
    key: str | None = None,
    dry_run: bool = False,
) -> DecisionRequest:
    """A lead of ``person`` for ``advertiser`` under one person-slot ``guard``: contact
    pressure (2 advertisers per window) or network dedup (one advertiser per window)."""
    if guard == "pressure":
        held = reservation(person, advertiser, pressure_limit=2, pressure_window_ms=WINDOW_MS)
    else:
        held = reservation(person, advertiser, network_window_ms=WINDOW_MS)
    return request(
        now_ms,
        dedup=[dedup(person, advertiser=advertiser)],
        caps=[calendar_cap(cap, advertiser=advertiser)],
        person=[held],
        advertiser=advertiser,
        idempotency=None if key is None else idempotency(key, "body", advertiser=advertiser),
        dry_run=dry_run,
    )


async def _crash(store: Store, crash_after: str, rq: DecisionRequest) -> None:
    with pytest.raises(SimulatedCrash):
        await DecisionEngine(CrashingStore(store, crash_after)).run([rq])


@pytest.mark.parametrize("crash_after", ["reserve", "decide"])
@pytest.mark.parametrize(
    ("guard", "probe_at_ms", "expected", "reason"),
    [
        # acme took the second pressure slot half-way; globex's crashed lead holds the first
        ("pressure", WINDOW_MS - 1, CAPPED, "cap.person"),
        ("pressure", WINDOW_MS, ACCEPTED, ""),  # globex's slot ended with its window
        # the crashed lead's network mark makes ann "seen" until its window ends
        ("network", WINDOW_MS - 1, DUPLICATE, "duplicate.network"),
        ("network", WINDOW_MS, ACCEPTED, ""),
    ],
)
async def test_a_crashed_request_accepts_nothing_and_holds_its_slot_until_the_window_ends(
    store: Store,
    view: StoreView,
    crash_after: str,
    guard: str,
    probe_at_ms: int,
    expected: Decision,
    reason: str,
) -> None:
    engine = DecisionEngine(store)
    # globex's cap is full: had the protocol finished, this lead would be refused and its
    # reservation released at once.
    await _crash(store, crash_after, _lead(T0, GLOBEX, guard=guard, cap=0))
    if guard == "pressure":
        halfway = await decide_one(engine, _lead(T0 + WINDOW_MS // 2, ACME, guard=guard))
        assert halfway.decision is ACCEPTED

    probe = await decide_one(engine, _lead(T0 + probe_at_ms, INITECH, guard=guard))

    assert await view.deliveries(GLOBEX) == []  # (a) the crashed request accepted nothing
    assert (probe.decision, probe.reasons) == (expected, (reason,) if reason else ())  # (b)


@pytest.mark.parametrize("crash_after", ["reserve", "decide"])
async def test_retries_after_a_crash_accept_the_lead_once(
    store: Store, view: StoreView, crash_after: str
) -> None:
    # The publisher retries with the same Idempotency-Key and body until it gets an answer.
    engine = DecisionEngine(store)
    await _crash(store, crash_after, _lead(T0, GLOBEX, guard="pressure", key="K1"))

    retries = [
        await decide_one(engine, _lead(T0 + i, GLOBEX, guard="pressure", key="K1"))
        for i in range(1, 4)
    ]
    others = [
        await decide_one(engine, _lead(T0 + 10 + i, GLOBEX, guard="pressure"))  # no key
        for i in range(2)
    ]

    deliveries = await view.deliveries(GLOBEX)
    assert len(deliveries) == 1  # (c) one acceptance, whichever request carried it
    assert {r.decision for r in retries} == {ACCEPTED}
    assert {r.lead_id for r in retries} == {deliveries[0].lead_id}
    assert [r.replayed for r in retries] == (
        [False, True, True] if crash_after == "reserve" else [True, True, True]
    )
    assert [(o.decision, o.reasons) for o in others] == [(DUPLICATE, ("duplicate.campaign",))] * 2


@pytest.mark.parametrize("crash_after", ["reserve", "decide"])
async def test_a_crash_never_lets_a_person_reach_more_advertisers_than_the_limit(
    store: Store, view: StoreView, crash_after: str
) -> None:
    engine = DecisionEngine(store)
    advertisers = [AdvertiserId(f"adv-{i}") for i in range(6)]
    # Every other lead crashes; the others run normally; all inside one pressure window.
    for i, advertiser in enumerate(advertisers):
        rq = _lead(T0 + i, advertiser, guard="pressure")
        if i % 2 == 0:
            await _crash(store, crash_after, rq)
        else:
            await decide_one(engine, rq)

    reached = [a for a in advertisers if await view.deliveries(a)]
    assert len(reached) <= 2
    if crash_after == "decide":
        assert reached == advertisers[:2]  # adv-0 committed before the crash, adv-1 the other
    else:
        assert reached == advertisers[1:2]  # adv-0's crash holds a slot, adv-1 takes the other
