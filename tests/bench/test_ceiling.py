"""``bench.ceiling``: the servers that do only part of a lead's work answer the bench's own
bodies as the gateway would, so wrk and the bench client count them the same way."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer

from bench.ceiling import MODES, make_app
from bench.generate import LeadGenerator
from bench.scenario import load_scenario
from gateway.decision.answer import Answer
from gateway.decision.model import Decision
from gateway.types import CampaignId, ChannelId, LeadId

VALID = {
    "campaign": "bench",
    "channel": "email",
    "email": "jean.dupont7@gmail.com",
    "phone": "+33612345678",
    "first_name": "Jean",
    "ref": "r7",
}


async def _serve(mode: str) -> AsyncIterator[tuple[ClientSession, str]]:
    server = TestServer(make_app(mode))
    await server.start_server()
    try:
        async with ClientSession() as session:
            yield session, str(server.make_url(""))
    finally:
        await server.close()


@pytest.fixture
async def parse_only() -> AsyncIterator[tuple[ClientSession, str]]:
    async for served in _serve("parse"):
        yield served


@pytest.fixture
async def validate_only() -> AsyncIterator[tuple[ClientSession, str]]:
    async for served in _serve("validate"):
        yield served


async def _post(
    served: tuple[ClientSession, str], path: str, body: object
) -> tuple[int, dict[str, Any]]:
    session, url = served
    async with session.post(url + path, data=orjson.dumps(body)) as resp:
        return resp.status, orjson.loads(await resp.read())


async def test_a_single_lead_is_answered_with_the_gateways_fields(
    parse_only: tuple[ClientSession, str],
) -> None:
    status, answer = await _post(parse_only, "/v1/leads", VALID)

    gateway = Answer(
        LeadId("x"), Decision.ACCEPTED, (), "r7", CampaignId("bench"), ChannelId("email"), False
    ).to_json()
    assert status == 200
    assert answer.keys() == gateway.keys()
    assert (answer["decision"], answer["ref"], answer["channel"]) == ("accepted", "r7", "email")


@pytest.mark.parametrize(("field", "value"), [("email", "jean@@gmail.com"), ("phone", "+33 1")])
async def test_parse_only_accepts_what_validation_refuses(
    parse_only: tuple[ClientSession, str],
    validate_only: tuple[ClientSession, str],
    field: str,
    value: str,
) -> None:
    lead = {**VALID, field: value}

    parsed_status, _ = await _post(parse_only, "/v1/leads", lead)
    status, problem = await _post(validate_only, "/v1/leads", lead)

    assert parsed_status == 200
    assert status == 422
    assert [p["field"] for p in problem["problems"]] == [field]
    assert value not in orjson.dumps(problem).decode()  # no personal data echoed


async def test_validation_accepts_other_spellings_of_a_valid_person(
    validate_only: tuple[ClientSession, str],
) -> None:
    lead = {**VALID, "email": "Jean.Dupont7+promo@GoogleMail.com", "phone": "06 12 34 56 78"}

    status, answer = await _post(validate_only, "/v1/leads", lead)

    assert (status, answer["decision"]) == (200, "accepted")


async def test_a_batch_counts_each_lead_as_the_gateway_does(
    validate_only: tuple[ClientSession, str],
) -> None:
    leads = [VALID, {**VALID, "email": "no-at-sign"}, "not an object", {**VALID, "phone": "+33 1"}]

    status, answer = await _post(validate_only, "/v1/leads/batch", {"leads": leads})

    assert status == 200
    assert answer["counts"] == {"accepted": 1, "invalid": 3}
    assert [r["index"] for r in answer["results"]] == [0, 1, 2, 3]


async def test_the_bench_bodies_get_the_answers_the_generator_expects(
    validate_only: tuple[ClientSession, str],
) -> None:
    # The generator breaks an invalid lead's email or phone, or drops its first name; the
    # validating ceiling judges only email and phone, so it refuses the first two kinds.
    scenario = load_scenario("smoke")
    requests = LeadGenerator(scenario).requests(400)
    session, url = validate_only
    refused = 0
    for request in requests:
        async with session.post(url + "/v1/leads", data=request.body) as resp:
            assert resp.status in (200, 422)
            refused += resp.status == 422
    invalid = sum(r.expected[2] for r in requests)
    assert 0 < refused <= invalid


def test_an_unknown_mode_is_refused() -> None:
    assert MODES == ("parse", "validate")
    with pytest.raises(ValueError, match="mode must be one of"):
        make_app("everything")
