"""Every answer is replayable under its Idempotency-Key (docs/api.md, "Idempotency-Key"):
accepted, duplicate, capped, and rejected too, by the campaign's rules or because the
campaign is not open; for single posts and batches, on both stores."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from gateway.types import AdvertiserId

from .conftest import Gateway, GatewayFactory, assert_problem, build_config, network, person

RULES_DIR = Path(__file__).resolve().parents[2] / "rules"
ROLE_MAILBOX = {"email": "info@yopmail.com"}  # fails rules/default.yaml twice


def with_rules() -> dict[str, Any]:
    """The test network, acme-always-on checking the default rule pack."""
    config = network()
    config["rules_dir"] = str(RULES_DIR)
    for campaign in config["campaigns"]:
        if campaign["id"] == "acme-always-on":
            campaign["rules"] = ["default"]
    return config


Setup = Callable[[Gateway], Awaitable[dict[str, object]]]


async def accepted(gw: Gateway) -> dict[str, object]:
    return person(campaign="acme-always-on")


async def duplicate(gw: Gateway) -> dict[str, object]:
    first = person(campaign="acme-peak")
    await gw.decide("p-mail", first)
    return {**first, "campaign": "acme-always-on"}


async def capped(gw: Gateway) -> dict[str, object]:
    for _ in range(2):  # nova-daily takes 2 leads a day
        await gw.decide("p-mail", person(campaign="nova-daily"))
    return person(campaign="nova-daily")


async def rule_rejected(gw: Gateway) -> dict[str, object]:
    return person(campaign="acme-always-on", **ROLE_MAILBOX)


async def inactive(gw: Gateway) -> dict[str, object]:
    return person(campaign="acme-summer")  # ended 2026-08-31


CASES: dict[str, tuple[Setup, str, list[str]]] = {
    "accepted": (accepted, "accepted", []),
    "duplicate": (duplicate, "duplicate", ["duplicate.advertiser"]),
    "capped": (capped, "capped", ["cap.campaign.day"]),
    "rejected by the rules": (
        rule_rejected,
        "rejected",
        ["rule.email_not_disposable", "rule.email_not_role_account"],
    ),
    "rejected, campaign inactive": (inactive, "rejected", ["campaign.inactive"]),
}


@pytest.mark.parametrize(("setup", "decision", "reasons"), CASES.values(), ids=CASES.keys())
async def test_every_answer_is_replayed_under_its_key(
    make_gateway: GatewayFactory, setup: Setup, decision: str, reasons: list[str]
) -> None:
    gw = await make_gateway(with_rules())
    lead = await setup(gw)
    key = {"Idempotency-Key": f"every-answer-{decision}"}
    first = await gw.post("p-mail", lead, headers=key)
    assert first.status == 200, first.body
    assert (first.json()["decision"], first.json()["reasons"]) == (decision, reasons)
    assert "Idempotent-Replayed" not in first.headers

    retry = await gw.post("p-mail", lead, headers=key)
    assert retry.status == 200, retry.body
    assert retry.headers.get("Idempotent-Replayed") == "true"
    assert retry.json() == first.json()  # the same lead_id above all

    other = person(campaign=str(lead["campaign"]))
    assert_problem(await gw.post("p-mail", other, headers=key), 422, "idempotency-conflict")


async def test_a_rejected_answer_is_replayed_after_the_rules_change(
    make_gateway: GatewayFactory,
) -> None:
    """The stored answer, not a new decision: the same body gets the same answer even once
    the campaign no longer rejects it (and is not bought behind the publisher's back)."""
    gw = await make_gateway(with_rules())
    lead = person(campaign="acme-always-on", **ROLE_MAILBOX)
    key = {"Idempotency-Key": "before-the-reload"}
    first = await gw.decide("p-mail", lead, headers=key)
    assert first["decision"] == "rejected"
    gw.intake.replace_config(build_config(network()))  # a reload: no rules any more
    assert (await gw.decide("p-mail", person(campaign="acme-always-on", **ROLE_MAILBOX)))[
        "decision"
    ] == "accepted"
    retry = await gw.post("p-mail", lead, headers=key)
    assert retry.headers.get("Idempotent-Replayed") == "true"
    assert retry.json() == first
    assert len(await gw.view.deliveries(AdvertiserId("acme"))) == 1


async def test_a_key_first_used_for_an_accepted_lead_conflicts_with_a_rejected_body(
    make_gateway: GatewayFactory,
) -> None:
    gw = await make_gateway(with_rules())
    key = {"Idempotency-Key": "accepted-then-other"}
    assert (await gw.decide("p-mail", person(campaign="acme-always-on"), headers=key))[
        "decision"
    ] == "accepted"
    for other in (
        person(campaign="acme-always-on", **ROLE_MAILBOX),  # the rules would reject it
        person(campaign="acme-summer"),  # an inactive campaign
    ):
        reply = await gw.post("p-mail", other, headers=key)
        assert_problem(reply, 422, "idempotency-conflict")


async def test_a_test_lead_remembers_nothing_not_even_its_key(
    make_gateway: GatewayFactory,
) -> None:
    gw = await make_gateway(with_rules())
    lead = person(campaign="acme-always-on", test=True, **ROLE_MAILBOX)
    key = {"Idempotency-Key": "test-mode"}
    first = await gw.decide("p-mail", lead, headers=key)
    retry = await gw.post("p-mail", lead, headers=key)
    assert first["decision"] == retry.json()["decision"] == "rejected"
    assert retry.json()["lead_id"] != first["lead_id"]
    assert "Idempotent-Replayed" not in retry.headers
    assert await gw.view.key_names() == []


async def test_a_batch_replays_every_decided_item(make_gateway: GatewayFactory) -> None:
    gw = await make_gateway(with_rules())
    leads: list[object] = [
        person(campaign="acme-always-on"),
        person(campaign="acme-always-on", **ROLE_MAILBOX),
        person(campaign="acme-summer"),
        person(campaign="acme-always-on", email="not-an-email"),
    ]
    key = {"Idempotency-Key": "batch-every-item"}
    first = await gw.batch("p-mail", leads, headers=key)
    assert first.status == 200, first.body
    assert "Idempotent-Replayed" not in first.headers
    decisions = [item.get("decision") for item in first.json()["results"]]
    assert decisions == ["accepted", "rejected", "rejected", None]
    assert not any("replayed" in item for item in first.json()["results"])

    retry = await gw.batch("p-mail", leads, headers=key)
    assert retry.status == 200, retry.body
    assert retry.headers.get("Idempotent-Replayed") == "true"
    for was, now in zip(first.json()["results"], retry.json()["results"], strict=True):
        if "error" in was:
            assert now == was  # invalid items are not stored: refused again, the same way
        else:
            assert now == {**was, "replayed": True}  # the same lead_id, decision and reasons
    assert retry.json()["counts"] == first.json()["counts"]
    assert len(await gw.view.deliveries(AdvertiserId("acme"))) == 1

    changed = [*leads[:3], person(campaign="acme-always-on")]
    conflict = await gw.batch("p-mail", changed, headers=key)
    assert conflict.status == 200, conflict.body
    assert "Idempotent-Replayed" not in conflict.headers
    results = conflict.json()["results"]
    for item in results[:3]:  # decided under the key: another body is a conflict
        assert item["error"]["type"] == "urn:leadgate:problem:idempotency-conflict"
    # The invalid lead stored nothing under the key the first time: now valid, it is decided.
    assert results[3]["decision"] == "accepted"


async def test_a_batch_with_nothing_stored_has_no_replay_header(
    make_gateway: GatewayFactory,
) -> None:
    gw = await make_gateway(with_rules())
    leads = [person(campaign="acme-always-on", email="not-an-email")]
    key = {"Idempotency-Key": "batch-all-invalid"}
    await gw.batch("p-mail", leads, headers=key)
    retry = await gw.batch("p-mail", leads, headers=key)
    assert retry.status == 200, retry.body
    assert "Idempotent-Replayed" not in retry.headers
