"""A real crash (``os._exit(137)``, as ``kill -9``) at every step of a distributed campaign's
sale protocol, then a retry with the same Idempotency-Key on a restarted gateway, on a real
Redis and on the real 3-primary Redis Cluster.

``LEADGATE_FAILPOINTS`` kills the gateway right after a step (decision.waterfall): the claim,
the open (probes, person and campaign reservations), a round of the waterfall that sold, the
end of the waterfall, the close (answer stored, reservations given back). What must hold,
read back from Redis itself: the retry gets the crashed attempt's lead id and the same
buyers (the probe finds the sales it made); the buyers whose delivery streams hold the lead
are exactly the buyers the answer names (nothing is delivered the publisher is not told of);
a lead is never sold twice to a buyer, an exclusive one to one buyer, a shared one to at most
N; the campaign's reservation is the lead's own (its cap of 1 a day is not taken twice).

The retry may be told 409 ``idempotency-in-progress`` while the crashed attempt's lease
(``server.sale_lease_s``, 3 s here) runs: a publisher retries, and so does the test, within
a bound.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from collections.abc import Mapping
from pathlib import Path

import aiohttp
import pytest
from http_support import Reply, post_lead
from processes import GatewayLauncher, GatewayProcess
from support import plain_client

from gateway.storage import keys
from gateway.types import AdvertiserId

API_KEY = "sale-crash-key"
LEASE_S = 3
BUYERS = ("b1", "b2", "b3")
CONFIG = """\
server: {{sale_lease_s: {lease_s}}}
channels: [{{id: email}}]
advertisers: [{{id: b1}}, {{id: b2}}, {{id: b3}}]
campaigns:
  # Marks a person at b2 beforehand, so a shared lead passes b2 and its waterfall goes on.
  - {{id: b2-own, advertiser: b2, kind: always_on, dedup: [{{scope: advertiser, window: 30d}}]}}
  - id: excl
    kind: always_on
    show_buyers: true
    dedup: [{{scope: campaign, window: 30d}}]
    caps: [{{subject: campaign, window: day, limit: 1}}]
    buyers: [{{advertiser: b2}}, {{advertiser: b1}}, {{advertiser: b3}}]
  - id: shared
    kind: always_on
    distribution: shared
    max_buyers: 2
    show_buyers: true
    dedup: [{{scope: campaign, window: 30d}}]
    caps: [{{subject: campaign, window: day, limit: 1}}]
    buyers: [{{advertiser: b1}}, {{advertiser: b2}}, {{advertiser: b3}}]
partners:
  - id: p-test
    api_keys: ["sha256:{key_hash}"]
    channels: [email]
    campaigns: [b2-own, excl, shared]
"""
STEPS = ["after-sale-claim", "after-sale-open", "after-sale", "after-waterfall", "after-sale-close"]
#: Where each crash leaves the lead: sold (to the buyers the retry will name) or not yet.
SOLD_BEFORE_CRASH = {"after-sale", "after-waterfall", "after-sale-close"}
CRASH_EXIT_CODE = 137
#: How long the retry may be told to wait: the lease, and the restart's own time.
RETRY_WITHIN_S = LEASE_S + 10.0


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "sale-crash.yaml"
    key_hash = hashlib.sha256(API_KEY.encode()).hexdigest()
    path.write_text(CONFIG.format(key_hash=key_hash, lease_s=LEASE_S), encoding="utf-8")
    return path


async def received(url: str, leaving_out: str) -> dict[str, list[str]]:
    """Each buyer's delivery stream: the lead ids its CRM will get (but ``leaving_out``)."""
    client = plain_client(url, decode_responses=True)
    try:
        return {
            b: [
                fields["lead_id"]
                for _, fields in await client.xrange(keys.deliveries(b))
                if fields["lead_id"] != leaving_out
            ]
            for b in map(AdvertiserId, BUYERS)
        }
    finally:
        await client.aclose()


async def retry(
    http: aiohttp.ClientSession, gateway: GatewayProcess, lead: Mapping[str, object], key: str
) -> Reply:
    """Post again with the key until the crashed attempt's lease lets the retry through."""
    deadline = time.monotonic() + RETRY_WITHIN_S
    while True:
        reply = await post_lead(http, gateway, lead, api_key=API_KEY, idempotency_key=key)
        if reply.status != 409:
            return reply
        assert reply.body["type"] == "urn:leadgate:problem:idempotency-in-progress", reply.body
        assert 1 <= int(reply.headers["Retry-After"]) <= LEASE_S
        assert time.monotonic() < deadline, "the lease never let the retry through"
        await asyncio.sleep(0.2)


@pytest.mark.parametrize("step", STEPS)
@pytest.mark.parametrize(
    ("campaign", "backend"),
    [("excl", "redis"), ("shared", "redis"), ("shared", "cluster")],
)
async def test_a_crash_at_each_step_then_a_keyed_retry_sells_to_the_same_buyers_once(
    gateways: GatewayLauncher,
    http: aiohttp.ClientSession,
    config: Path,
    request: pytest.FixtureRequest,
    step: str,
    campaign: str,
    backend: str,
) -> None:
    url = request.getfixturevalue("redis_url" if backend == "redis" else "cluster_url")
    person = {"email": f"crash-{uuid.uuid4().hex[:12]}@example.fr", "first_name": "Alex"}
    lead = {**person, "campaign": campaign}
    key = f"sale-{uuid.uuid4().hex}"
    crashing = await gateways.astart(
        config=config, redis_url=url, env={"LEADGATE_FAILPOINTS": step}
    )
    # b2 already has the person: the exclusive waterfall passes it to b1, the shared one
    # sells to b1 first and goes on past b2 to b3.
    own = await post_lead(http, crashing, {**person, "campaign": "b2-own"}, api_key=API_KEY)
    assert own.body["decision"] == "accepted", own.body

    with pytest.raises(aiohttp.ClientConnectionError):
        await post_lead(http, crashing, lead, api_key=API_KEY, idempotency_key=key)
    assert await crashing.await_exit(10.0) == CRASH_EXIT_CODE, crashing.log_tail()

    before = await received(url, own.body["lead_id"])
    crashed_sales = {b for b in ("b1", "b3") if before[b]}
    if step in SOLD_BEFORE_CRASH:
        assert crashed_sales, f"the crash at {step} came after a sale"
    else:
        assert not crashed_sales, f"nothing is sold before {step}"

    gateway = await gateways.astart(config=config, redis_url=url)
    answer = await retry(http, gateway, lead, key)

    assert answer.status == 200, answer.body
    assert answer.body["decision"] == "accepted", answer.body
    assert (answer.headers.get("Idempotent-Replayed") == "true") == (step == "after-sale-close")
    lead_id = answer.body["lead_id"]
    sold_to = answer.body["sold_to"]
    assert sold_to == (["b1"] if campaign == "excl" else ["b1", "b3"])
    assert answer.body["buyers"] == len(sold_to)
    after = await received(url, own.body["lead_id"])
    # Exactly the buyers the answer names hold the lead, once each; b2 had the person.
    assert {b: ids for b, ids in after.items() if ids} == {b: [lead_id] for b in sold_to}
    # The crashed attempt's sales are the answer's (same lead id, same buyers).
    for b in crashed_sales:
        assert before[b] == [lead_id]
    # Replays tell the same; the campaign's reservation is the lead's own: a new person is
    # capped (cap 1 a day, taken once), the same person without the key is a duplicate.
    again = await post_lead(http, gateway, lead, api_key=API_KEY, idempotency_key=key)
    assert (again.body["lead_id"], again.body["sold_to"]) == (lead_id, sold_to)
    dup = await post_lead(http, gateway, lead, api_key=API_KEY)
    assert dup.body["reasons"] == ["duplicate.campaign"], dup.body
    other = {"email": f"other-{uuid.uuid4().hex[:12]}@example.fr", "campaign": campaign}
    capped = await post_lead(http, gateway, other, api_key=API_KEY)
    assert capped.body["reasons"] == ["cap.campaign.day"], capped.body
    assert await received(url, own.body["lead_id"]) == after
