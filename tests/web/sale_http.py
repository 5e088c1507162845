"""Helpers of the HTTP tests of distributed campaigns."""

from __future__ import annotations

import orjson

from gateway.decision.model import IdempotencyRef
from gateway.decision.plan import digest
from gateway.storage import keys
from gateway.storage.base import SaleClaim
from gateway.types import CampaignId, LeadId, PartnerId

from .conftest import Gateway, Reply, person

#: An Idempotency-Key whose lease a request of another process holds (``in_progress``).
BUSY_KEY = "busy-key-1"


async def in_progress(gw: Gateway, key: str = BUSY_KEY) -> Reply:
    """Post a lead of ``sold-excl`` whose Idempotency-Key another request holds: it claimed
    the key with the same body and took its lease (as a gateway deciding it, or one that
    crashed less than the lease ago, would have), and stored no answer yet."""
    lead = person(campaign="sold-excl")
    body = orjson.dumps(lead)
    partner = PartnerId("p-mail")
    ref = IdempotencyRef(
        claim_key=keys.idempotency_claim(partner, digest(key.encode())),
        answer_key=keys.campaign_answer(CampaignId("sold-excl"), partner, digest(key.encode())),
        body_digest=digest(body),
        ttl_ms=3_600_000,
        lead_id=LeadId("0196294c-3b7e-7a41-9d2c-5f1e8b0a6c33"),
    )
    now_ms = int(gw.clock() * 1000)
    lease = keys.sale_lease(partner, digest(key.encode()))
    (claimed,) = await gw.store.claim_sales([SaleClaim(ref, lease, 10_000)], now_ms)
    assert claimed.leased
    return await gw.post("p-mail", lead, headers={"Idempotency-Key": key})
