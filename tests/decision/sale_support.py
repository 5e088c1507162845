"""Distributed campaigns for the tests: a network of buyers, and gateways (intakes over the
real decision stores) that sell to them.

``buyers_network(campaigns)`` is a config with six advertisers (``b1`` … ``b5``, and ``own``
with a campaign of its own), two partners and the campaigns given. ``Sellers`` is one or more
``Intake``s (gateway replicas) over the stores of one test: the embedded store, one Redis, or
the real 3-primary Redis Cluster; ``sold_to`` reads back who received each lead from the
buyers' delivery streams, as a CRM would.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from support import StoreView

from gateway.config.load import parse_config
from gateway.config.model import Config
from gateway.decision.answer import Answer
from gateway.decision.engine import DecisionEngine
from gateway.decision.intake import Intake
from gateway.decision.waterfall import Waterfall
from gateway.errors import RequestError
from gateway.leads.fingerprint import Fingerprinter
from gateway.storage.base import Store
from gateway.types import AdvertiserId, FingerprintKey, PartnerId

BUYERS = tuple(AdvertiserId(f"b{i}") for i in range(1, 6))
OWN = AdvertiserId("own")
KEY = FingerprintKey("s1", b"leadgate-sale-tests-fingerprint!")
PARTNERS = ("p-one", "p-two")


def key_hash(api_key: str) -> str:
    return "sha256:" + hashlib.sha256(api_key.encode()).hexdigest()


def buyers_network(campaigns: Sequence[Mapping[str, Any]], **root: Any) -> dict[str, Any]:
    """A config: channels email and coreg, advertisers b1-b5 and ``own`` (with campaign
    ``own-always-on``: its own advertiser-wide 30-day dedup), partners p-one and p-two
    open to every campaign, plus ``campaigns``."""
    own = {
        "id": "own-always-on",
        "advertiser": "own",
        "kind": "always_on",
        "dedup": [{"scope": "advertiser", "window": "30d"}],
    }
    every = [own, *copy.deepcopy(list(campaigns))]
    return {
        "channels": [{"id": "email"}, {"id": "coreg"}],
        "advertisers": [{"id": a} for a in (*BUYERS, OWN)],
        "campaigns": every,
        "partners": [
            {
                "id": p,
                "api_keys": [key_hash(p)],
                "channels": ["email", "coreg"],
                "campaigns": [c["id"] for c in every],
            }
            for p in PARTNERS
        ],
        **root,
    }


def distributed(
    campaign_id: str, buyers: Sequence[Mapping[str, Any]], **keys: Any
) -> dict[str, Any]:
    """A distributed always-on campaign in the Paris zone selling to ``buyers``."""
    return {
        "id": campaign_id,
        "kind": "always_on",
        "timezone": "Europe/Paris",
        "buyers": [dict(b) for b in buyers],
        **keys,
    }


def person(n: int | str, **fields: object) -> dict[str, object]:
    return {"email": f"buyer.test.{n}@example.com", "first_name": "Camille", **fields}


class Sellers:
    """``len(stores)`` gateway replicas (intakes) over one memory; ``clock``: epoch seconds
    (default: the wall clock)."""

    def __init__(
        self,
        config: Config,
        stores: Sequence[Store],
        view: StoreView,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.stores = stores
        self.view = view
        fingerprinter = Fingerprinter([KEY])
        self.intakes = [
            Intake(config, DecisionEngine(s), fingerprinter, waterfall=Waterfall(s), clock=clock)
            for s in stores
        ]

    async def post(
        self,
        campaign: str,
        lead: Mapping[str, object],
        *,
        partner: str = "p-one",
        key: str | None = None,
        replica: int = 0,
    ) -> Answer:
        intake = self.intakes[replica % len(self.intakes)]
        body = repr(sorted(lead.items())).encode()
        return await intake.submit(
            self.config.partners[PartnerId(partner)],
            {**lead, "campaign": campaign},
            idempotency_key=key,
            body=body,
        )

    async def race(
        self, posts: Sequence[tuple[str, Mapping[str, object]]], *, key: str | None = None
    ) -> list[Answer | RequestError]:
        """Every post at once, spread over the replicas (partners alternate)."""

        async def one(i: int, campaign: str, lead: Mapping[str, object]) -> Answer | RequestError:
            try:
                return await self.post(
                    campaign, lead, partner=PARTNERS[i % 2] if key is None else "p-one",
                    key=key, replica=i,
                )  # fmt: skip
            except RequestError as refused:
                return refused

        return list(await asyncio.gather(*(one(i, c, lead) for i, (c, lead) in enumerate(posts))))

    async def sold_to(self, lead_id: str) -> list[AdvertiserId]:
        """The buyers whose delivery stream holds ``lead_id`` (what their CRMs will get)."""
        return [b for b in BUYERS if lead_id in await self.received(b)]

    async def received(self, buyer: AdvertiserId) -> list[str]:
        return [d.lead_id for d in await self.view.deliveries(buyer)]


def sellers(
    config: Mapping[str, Any],
    memories: tuple[Sequence[Store], StoreView],
    clock: Callable[[], float] = time.time,
) -> Sellers:
    stores, view = memories
    return Sellers(parse_config(config), stores, view, clock)
