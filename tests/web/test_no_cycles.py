"""Leads, batches and feedback leave no reference cycles behind, refused items included: what
a request builds is freed when its last reference goes, so the garbage collector has nothing
to find on the hot path, and ``settle_heap`` runs it rarely (``GEN0_THRESHOLD``). A refusal
kept as a batch item's answer, with its traceback, held the batch's frame and every lead in
it until a full collection (BENCHMARKS.md, "Garbage collection, again")."""

from __future__ import annotations

from collections import Counter

from support import cyclic_garbage

from .conftest import GatewayFactory, person
from .test_feedback import feedback_network, send


def _kinds(found: list[object]) -> Counter[str]:
    return Counter(type(o).__qualname__ for o in found)


async def test_single_leads_accepted_duplicate_and_invalid_leave_no_cycles(
    make_gateway: GatewayFactory,
) -> None:
    gw = await make_gateway()
    lead = person(campaign="acme-always-on")
    with cyclic_garbage() as found:
        assert (await gw.decide("p-mail", lead))["decision"] == "accepted"
        assert (await gw.decide("p-mail", lead))["decision"] == "duplicate"
        invalid = await gw.post("p-mail", person(campaign="acme-always-on", email="not-an-email"))
        assert invalid.status == 422
    assert not found, _kinds(found)


async def test_a_batch_with_refused_items_leaves_no_cycles(make_gateway: GatewayFactory) -> None:
    gw = await make_gateway()
    leads = [
        person(campaign="acme-always-on"),
        person(campaign="acme-always-on", email="not-an-email"),
        "not an object",
        person(campaign="acme-always-on", ping_id="p-1"),
        person(campaign="acme-always-on"),
    ]
    with cyclic_garbage() as found:
        reply = await gw.batch("p-mail", leads)
        assert reply.status == 200, reply.body
        assert reply.json()["counts"]["invalid"] == 3, reply.json()
    assert not found, _kinds(found)


async def test_feedback_with_refused_items_leaves_no_cycles(make_gateway: GatewayFactory) -> None:
    gw = await make_gateway(feedback_network())
    lead_id = (await gw.decide("p-mail", person(campaign="acme-always-on")))["lead_id"]
    body = {"feedback": [{"lead_id": lead_id, "status": "converted"}, {"status": "nope"}]}
    with cyclic_garbage() as found:
        reply = await send(gw, "acme", body)
        assert reply.status == 200, reply.body
    assert not found, _kinds(found)
