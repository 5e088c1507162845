"""Builders for delivery tests: a lead record as ``decide.lua`` stores it, a ``Delivery``, an
endpoint and a one-advertiser ``Config`` around it, and a Standard Webhooks test secret.

    endpoint = webhook_endpoint(crm.url("/hook"))
    config = config_with(endpoint, DeliverySettings(allow_networks=LOOPBACK))
    transport = Transport(config, {SECRET_ENV: SECRET})
    result = await transport.client(ADVERTISER).send(delivery())
"""

from __future__ import annotations

import base64
import dataclasses
import ipaddress
import itertools
from typing import Any

import orjson

from gateway.config.delivery import AdapterKind, DeliverySettings, Endpoint, SecretRef
from gateway.config.model import Advertiser, Config, ServerSettings
from gateway.delivery.model import Delivery
from gateway.types import AdvertiserId, LeadId

ADVERTISER = AdvertiserId("acme")
LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))
SECRET_ENV = "LEADGATE_TEST_WEBHOOK_SECRET"
#: Standard Webhooks secrets: ``whsec_`` + base64 of random bytes.
SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()
OTHER_SECRET = "whsec_" + base64.b64encode(b"fedcba9876543210fedcba9876543210").decode()
ACCEPTED_AT_MS = 1_763_800_000_123

_ids = itertools.count(1)


def lead_id() -> LeadId:
    return LeadId(f"01900000-0000-7000-8000-{next(_ids):012d}")


def lead(**overrides: Any) -> dict[str, Any]:
    """A normalized lead as ``Lead.to_payload`` gives it."""
    payload: dict[str, Any] = {
        "campaign": "acme-always-on",
        "channel": "email",
        "ref": "sub-42",
        "email": "jeanne.martin@example.org",
        "phone": "+33612345678",
        "first_name": "Jeanne",
        "last_name": "Martin",
        "postal_code": "75011",
        "city": "Paris",
        "country": "FR",
        "ip": "203.0.113.9",
        "consent": {"given": True, "text": "J'accepte", "at": "2026-11-22T10:00:00Z"},
        "extra": {"gclid": "abc123", "sub_id": "7"},
    }
    payload.update(overrides)
    return {k: v for k, v in payload.items() if v is not None}


def record(id_: LeadId | None = None, **lead_overrides: Any) -> bytes:
    person = lead(**lead_overrides)
    return orjson.dumps(
        {
            "lead_id": id_ or lead_id(),
            "campaign": person["campaign"],
            "advertiser": ADVERTISER,
            "partner": "p-mailfox",
            "channel": person.get("channel", "email"),
            "ref": person.get("ref"),
            "accepted_at_ms": ACCEPTED_AT_MS,
            "lead": person,
        }
    )


def delivery(id_: LeadId | None = None, attempt: int = 1, **lead_overrides: Any) -> Delivery:
    id_ = id_ or lead_id()
    return Delivery(id_, ADVERTISER, ACCEPTED_AT_MS, attempt, record(id_, **lead_overrides))


def webhook_endpoint(url: str, **changes: Any) -> Endpoint:
    endpoint = Endpoint(AdapterKind.WEBHOOK, url, signing=SecretRef(env=SECRET_ENV, path="t"))
    return dataclasses.replace(endpoint, **changes)


def config_with(endpoint: Endpoint | None, settings: DeliverySettings | None = None) -> Config:
    return Config(
        server=ServerSettings(),
        channels={},
        advertisers={ADVERTISER: Advertiser(ADVERTISER, "ACME", endpoint)},
        campaigns={},
        partners={},
        delivery=settings or DeliverySettings(allow_networks=LOOPBACK),
    )
