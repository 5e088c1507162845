"""A ping's reservation lives in Redis, not in the gateway that took it: a gateway killed
(SIGKILL) after the ping, the post to another process commits it, and a second post naming
it is told ``used``. The real ``leadgate serve`` on the example config and a real Redis."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from http_support import request
from processes import GatewayLauncher
from support import RedisServer

KEY = {"Authorization": "Bearer demo-coregia-key"}
LEAD = {
    "campaign": "acme-always-on",
    "email": "ping.crash@example.org",
    "first_name": "Inès",
    "phone": "+33 6 71 22 33 44",
    "postal_code": "75011",
    "consent": True,
}


def test_a_ping_outlives_the_gateway_that_took_it(
    gateways: GatewayLauncher, spare_redis: Callable[[], RedisServer]
) -> None:
    redis = spare_redis()
    redis.start()
    first = gateways.start(redis_url=redis.url)
    body = {
        "campaign": "acme-always-on",
        "postal_code": "75011",
        "email_sha256": hashlib.sha256(b"ping.crash@example.org").hexdigest(),
    }
    pinged = request("POST", f"{first.url}/v1/ping", body=body, headers=KEY)
    assert pinged.status == 200, pinged.body
    assert pinged.body["status"] == "open", pinged.body
    first.kill()

    second = gateways.start(redis_url=redis.url)
    post = {**LEAD, "ping_id": pinged.body["ping_id"]}
    answer = request("POST", f"{second.url}/v1/leads", body=post, headers=KEY)
    assert answer.status == 200, answer.body
    assert (answer.body["decision"], answer.body["ping_status"]) == ("accepted", "committed")
    again = request("POST", f"{second.url}/v1/leads", body=post, headers=KEY)
    assert (again.body["decision"], again.body["ping_status"]) == ("duplicate", "used")
