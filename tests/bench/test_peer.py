"""``bench.peer``: the gateway's work written the obvious way must really do that work (find
duplicates, refuse invalid leads, count and queue), or beating it would mean nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
import redis
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer

from bench.generate import LeadGenerator
from bench.peer import make_app
from bench.scenario import load_scenario
from gateway.decision.answer import Answer
from gateway.decision.model import Decision
from gateway.types import CampaignId, ChannelId, LeadId

KEY = {"Authorization": "Bearer bench-key-alpha"}
VALID = {
    "campaign": "bench",
    "channel": "email",
    "email": "jean.dupont7@gmail.com",
    "phone": "+33612345678",
    "first_name": "Jean",
    "ref": "r7",
}

Served = tuple[ClientSession, str]


@pytest.fixture
async def peer(redis_url: str) -> AsyncIterator[Served]:
    server = TestServer(make_app(redis_url))
    await server.start_server()
    try:
        async with ClientSession() as session:
            yield session, str(server.make_url(""))
    finally:
        await server.close()


async def _post(
    served: Served, body: object, path: str = "/v1/leads", headers: dict[str, str] = KEY
) -> tuple[int, dict[str, Any]]:
    session, url = served
    async with session.post(url + path, data=orjson.dumps(body), headers=headers) as resp:
        return resp.status, orjson.loads(await resp.read())


async def test_a_new_person_is_accepted_and_queued_with_the_gateways_fields(
    peer: Served, redis_url: str
) -> None:
    status, answer = await _post(peer, VALID)

    gateway = Answer(
        LeadId("x"), Decision.ACCEPTED, (), "r7", CampaignId("bench"), ChannelId("email"), False
    ).to_json()
    assert (status, answer["decision"], answer["ref"]) == (200, "accepted", "r7")
    assert answer.keys() == gateway.keys()
    with redis.Redis.from_url(redis_url) as client:
        assert client.xlen("peer:{bench-adv}:stream") == 1
        (day,) = client.scan_iter("peer:{bench-adv}:cap:bench:2*")
        assert client.get(day) == b"1"
        assert len(list(client.scan_iter("peer:{bench-adv}:seen:*"))) == 4


@pytest.mark.parametrize(
    "again",
    [
        {"email": "Jean.Dupont7+promo@GoogleMail.com"},  # Gmail folding, case
        {"email": "someone.else@example.fr"},  # same phone
        {"phone": "06 12 34 56 78", "email": "other@example.fr"},  # phone spelled nationally
    ],
)
async def test_the_same_person_again_is_a_duplicate_in_both_scopes(
    peer: Served, again: dict[str, str]
) -> None:
    await _post(peer, VALID)

    status, answer = await _post(peer, {**VALID, **again})

    assert (status, answer["decision"]) == (200, "duplicate")
    assert answer["reasons"] == ["duplicate.advertiser", "duplicate.campaign"]


@pytest.mark.parametrize(
    ("field", "value"), [("email", "jean@@gmail.com"), ("phone", "+33 1"), ("first_name", "")]
)
async def test_an_invalid_lead_is_refused_with_its_field(
    peer: Served, field: str, value: str, redis_url: str
) -> None:
    status, problem = await _post(peer, {**VALID, field: value})

    assert status == 422
    assert [p["field"] for p in problem["problems"]] == [field]
    with redis.Redis.from_url(redis_url) as client:
        assert client.dbsize() == 0


async def test_an_unknown_key_is_refused(peer: Served) -> None:
    status, _ = await _post(peer, VALID, headers={"Authorization": "Bearer nope"})

    assert status == 401


async def test_a_batch_is_decided_lead_by_lead_and_counted(peer: Served) -> None:
    leads = [VALID, {**VALID, "email": "no-at-sign"}, {**VALID, "ref": "again"}]

    status, answer = await _post(peer, {"leads": leads}, "/v1/leads/batch")

    assert status == 200
    assert answer["counts"] == {"accepted": 1, "invalid": 1, "duplicate": 1}
    assert [r["index"] for r in answer["results"]] == [0, 1, 2]


async def test_the_bench_bodies_get_the_decisions_the_generator_expects(peer: Served) -> None:
    # The generator's mix (new people, the same people again or respelled, invalid leads):
    # the peer finds the same people the gateway finds.
    requests = LeadGenerator(load_scenario("smoke")).requests(300)
    session, url = peer
    seen: dict[str, int] = {}
    for request in requests:
        headers = {"Authorization": f"Bearer {request.api_key}"}
        async with session.post(url + "/v1/leads", data=request.body, headers=headers) as resp:
            body = orjson.loads(await resp.read())
            decision = "invalid" if resp.status == 422 else body["decision"]
            seen[decision] = seen.get(decision, 0) + 1
    expected = [sum(r.expected[i] for r in requests) for i in range(3)]
    assert [seen.get(d, 0) for d in ("accepted", "duplicate", "invalid")] == expected
