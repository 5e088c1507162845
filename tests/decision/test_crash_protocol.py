"""A real crash (``os._exit(137)``, as ``kill -9``) inside the decision protocol, then a restart.

The protocol (``gateway/decision/engine.py``): claim the Idempotency-Key, reserve the person's
slot (network mark, contact-pressure slot), decide atomically in the advertiser's slot, release
the reservation of a lead not accepted. ``LEADGATE_FAILPOINTS`` kills the process right after a
step. What must hold after a restart on the same Redis, read back from Redis itself:

* a crash after the reservation accepts nothing (no delivery anywhere); what it leaves is a
  reservation that holds the person's slot until its window ends;
* a crash after the decision keeps the accepted lead exactly once, and a retry with the same
  Idempotency-Key gets the original answer, never a second acceptance.
"""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path

import aiohttp
import pytest
import redis
from http_support import Reply, decided, post_lead
from processes import GatewayLauncher, GatewayProcess

from gateway.storage import keys
from gateway.types import AdvertiserId

API_KEY = "crash-test-key"
PRESSURE_CONFIG = """\
channels:
  - {{id: email}}
advertisers:
  - {{id: adv-one}}
  - {{id: adv-two}}
  - {{id: adv-three}}
# One person may be sold to at most 2 advertisers per 30 days.
contact_pressure: {{limit: 2, per: advertiser, window: 30d}}
campaigns:
  - {{id: one-always-on, advertiser: adv-one, kind: always_on,
     dedup: [{{scope: campaign, window: 30d}}]}}
  - {{id: two-always-on, advertiser: adv-two, kind: always_on,
     dedup: [{{scope: campaign, window: 30d}}]}}
  - {{id: three-always-on, advertiser: adv-three, kind: always_on,
     dedup: [{{scope: campaign, window: 30d}}]}}
partners:
  - id: p-test
    api_keys: ["sha256:{key_hash}"]
    channels: [email]
    campaigns: [one-always-on, two-always-on, three-always-on]
"""
CRASH_EXIT_CODE = 137
ONE = keys.deliveries(AdvertiserId("adv-one"))
TWO = keys.deliveries(AdvertiserId("adv-two"))
ACME = keys.deliveries(AdvertiserId("acme-energy"))
NOVABANK = keys.deliveries(AdvertiserId("novabank"))


@pytest.fixture
def pressure_config(tmp_path: Path) -> Path:
    path = tmp_path / "pressure.yaml"
    key_hash = hashlib.sha256(API_KEY.encode()).hexdigest()
    path.write_text(PRESSURE_CONFIG.format(key_hash=key_hash), encoding="utf-8")
    return path


def person() -> dict[str, object]:
    return {"email": f"crash-{uuid.uuid4().hex[:12]}@example.fr", "first_name": "Alex"}


def deliveries(redis_url: str) -> dict[str, list[str]]:
    """Every delivery stream in Redis (found by SCAN) and the lead ids it holds, in order."""
    with redis.Redis.from_url(redis_url, decode_responses=True) as client:
        streams = sorted(client.scan_iter(match="*:deliveries", count=1000))
        return {
            stream: [fields["lead_id"] for _, fields in client.xrange(stream)] for stream in streams
        }


def all_delivered(redis_url: str) -> list[str]:
    return [lead for leads in deliveries(redis_url).values() for lead in leads]


def pressure_slots(redis_url: str) -> list[str]:
    """Every ``<advertiser>|<lead id>`` member of every contact-pressure set."""
    with redis.Redis.from_url(redis_url, decode_responses=True) as client:
        return sorted(
            member
            for key in client.scan_iter(match="*:press", count=1000)
            for member in client.zrange(key, 0, -1)
        )


async def post_and_crash(
    http: aiohttp.ClientSession,
    gateway: GatewayProcess,
    lead: dict[str, object],
    *,
    api_key: str,
    idempotency_key: str | None = None,
) -> None:
    """Post ``lead`` to a gateway armed with a failpoint: no answer, the process exits 137."""
    with pytest.raises(aiohttp.ClientConnectionError):
        await post_lead(http, gateway, lead, api_key=api_key, idempotency_key=idempotency_key)
    assert await gateway.await_exit(10.0) == CRASH_EXIT_CODE, gateway.log_tail()
    # It died at the failpoint: no decision was logged, nothing was answered.
    assert "decision" not in gateway.messages()


async def test_crash_after_person_reserve_accepts_nothing_and_holds_one_pressure_slot(
    gateways: GatewayLauncher,
    http: aiohttp.ClientSession,
    redis_url: str,
    pressure_config: Path,
) -> None:
    env = {"LEADGATE_FAILPOINTS": "after-person-reserve"}
    crashing = await gateways.astart(config=pressure_config, redis_url=redis_url, env=env)
    p = person()
    await post_and_crash(http, crashing, {**p, "campaign": "one-always-on"}, api_key=API_KEY)

    assert all_delivered(redis_url) == []
    # What the crash left: the reservation of the lost lead, for adv-one.
    (stale,) = pressure_slots(redis_url)
    unit, crashed_lead = stale.split("|")
    assert unit == "adv-one"
    assert crashed_lead

    gateway = await gateways.astart(config=pressure_config, redis_url=redis_url)

    async def send(campaign: str) -> Reply:
        return await post_lead(http, gateway, {**p, "campaign": campaign}, api_key=API_KEY)

    to_two = decided(await send("two-always-on"), "accepted")
    # Limit 2: the stale adv-one reservation counts as one advertiser until its 30 days end,
    # so a third advertiser is refused although only one has bought the person so far.
    decided(await send("three-always-on"), "capped", ["cap.person"])
    # adv-one itself is still open (its slot is the one already held) ...
    to_one = decided(await send("one-always-on"), "accepted")
    # ... and buys the person once.
    decided(await send("one-always-on"), "duplicate", ["duplicate.campaign"])

    streams = deliveries(redis_url)
    assert sorted(streams) == [ONE, TWO]
    assert streams[ONE] == [to_one]
    assert streams[TWO] == [to_two]
    assert crashed_lead not in all_delivered(redis_url)
    assert crashed_lead not in (to_one, to_two)


async def test_retry_after_crash_at_reserve_is_decided_once(
    gateways: GatewayLauncher,
    http: aiohttp.ClientSession,
    redis_url: str,
    pressure_config: Path,
) -> None:
    """The publisher saw a connection error and retries with the same Idempotency-Key: the
    claim the crashed request left has no stored answer, so the retry is decided afresh, once,
    under the crashed request's lead id (the claim keeps it), so the reservation it left is
    the retry's own and no second pressure slot is taken."""
    env = {"LEADGATE_FAILPOINTS": "after-person-reserve"}
    crashing = await gateways.astart(config=pressure_config, redis_url=redis_url, env=env)
    lead = {**person(), "campaign": "one-always-on"}
    key = f"retry-{uuid.uuid4().hex}"
    await post_and_crash(http, crashing, lead, api_key=API_KEY, idempotency_key=key)
    ((_, crashed_lead),) = [slot.split("|") for slot in pressure_slots(redis_url)]

    gateway = await gateways.astart(config=pressure_config, redis_url=redis_url)
    first = await post_lead(http, gateway, lead, api_key=API_KEY, idempotency_key=key)
    accepted = decided(first, "accepted")
    assert "Idempotent-Replayed" not in first.headers
    assert accepted == crashed_lead
    again = await post_lead(http, gateway, lead, api_key=API_KEY, idempotency_key=key)
    assert decided(again, "accepted") == accepted
    assert again.headers.get("Idempotent-Replayed") == "true"

    assert deliveries(redis_url) == {ONE: [accepted]}
    assert pressure_slots(redis_url) == [f"adv-one|{accepted}"]


async def test_keyed_retry_after_crash_at_reserve_with_network_dedup_is_not_its_own_duplicate(
    gateways: GatewayLauncher, http: aiohttp.ClientSession, redis_url: str
) -> None:
    """With an Idempotency-Key, the network mark the crashed attempt left carries the lead id
    the retry reuses: the retry is accepted, not refused as a duplicate of itself."""
    env = {"LEADGATE_FAILPOINTS": "after-person-reserve"}
    crashing = await gateways.astart(redis_url=redis_url, env=env)
    lead: dict[str, object] = {
        "email": f"net-{uuid.uuid4().hex[:12]}@example.fr",
        "phone": "+33 6 12 34 56 78",
        "first_name": "Alex",
        "last_name": "Martin",
        "campaign": "novabank-credit",
    }
    key = f"net-retry-{uuid.uuid4().hex}"
    await post_and_crash(http, crashing, lead, api_key="demo-mailfox-key", idempotency_key=key)
    gateway = await gateways.astart(redis_url=redis_url)
    retry = await post_lead(http, gateway, lead, idempotency_key=key)
    accepted = decided(retry, "accepted")
    assert deliveries(redis_url) == {NOVABANK: [accepted]}
    # Without the key, the same person is now a genuine duplicate.
    decided(await post_lead(http, gateway, lead), "duplicate")


async def test_crash_at_reserve_with_network_dedup_leaves_a_network_mark(
    gateways: GatewayLauncher, http: aiohttp.ClientSession, redis_url: str
) -> None:
    """examples/leadgate.yaml: novabank-credit dedups network-wide for 1 day. The crashed
    lead's reservation also marked the person as seen network-wide, and nothing releases it:
    the person, never bought by anyone, is refused as ``duplicate.network`` by network-dedup
    campaigns until that window ends. The documented cost of a crash (engine.py): safe (never
    an extra acceptance), but a genuine lead is lost for up to the network window."""
    env = {"LEADGATE_FAILPOINTS": "after-person-reserve"}
    crashing = await gateways.astart(redis_url=redis_url, env=env)
    p = {
        "email": f"net-{uuid.uuid4().hex[:12]}@example.fr",
        "phone": "+33 6 12 34 56 78",
        "first_name": "Alex",
        "last_name": "Martin",
    }
    await post_and_crash(
        http, crashing, {**p, "campaign": "novabank-credit"}, api_key="demo-mailfox-key"
    )
    assert all_delivered(redis_url) == []

    gateway = await gateways.astart(redis_url=redis_url)
    again = await post_lead(http, gateway, {**p, "campaign": "novabank-credit"})
    decided(again, "duplicate", ["duplicate.network"])
    # ACME (no network dedup) still buys the person: pressure holds novabank (stale) + acme.
    acme = decided(await post_lead(http, gateway, {**p, "campaign": "acme-always-on"}), "accepted")
    assert deliveries(redis_url) == {ACME: [acme]}


async def test_crash_after_decide_replays_the_original_answer_and_delivers_once(
    gateways: GatewayLauncher,
    http: aiohttp.ClientSession,
    redis_url: str,
    pressure_config: Path,
) -> None:
    env = {"LEADGATE_FAILPOINTS": "after-decide"}
    crashing = await gateways.astart(config=pressure_config, redis_url=redis_url, env=env)
    p = person()
    lead = {**p, "campaign": "one-always-on"}
    key = f"decide-{uuid.uuid4().hex}"
    await post_and_crash(http, crashing, lead, api_key=API_KEY, idempotency_key=key)

    # The decision committed before the crash: the lead is queued for adv-one, once.
    ((stream, (committed,)),) = deliveries(redis_url).items()
    assert stream == ONE

    gateway = await gateways.astart(config=pressure_config, redis_url=redis_url)
    retry = await post_lead(http, gateway, lead, api_key=API_KEY, idempotency_key=key)
    assert decided(retry, "accepted", []) == committed
    assert retry.headers.get("Idempotent-Replayed") == "true"
    assert retry.body["campaign"] == "one-always-on"

    # Without the key (or with a new one) the same person is a duplicate, never a 2nd accept.
    decided(await post_lead(http, gateway, lead, api_key=API_KEY), "duplicate")
    new_key = f"other-{uuid.uuid4().hex}"
    other = await post_lead(http, gateway, lead, api_key=API_KEY, idempotency_key=new_key)
    decided(other, "duplicate", ["duplicate.campaign"])
    assert deliveries(redis_url) == {ONE: [committed]}
    # The accepted lead kept its pressure slot (adv-one) and only that one.
    assert pressure_slots(redis_url) == [f"adv-one|{committed}"]
