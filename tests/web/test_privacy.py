"""No personal data in logs, metrics, Redis key names or error messages (DESIGN §8).

A lead made of unique canaries goes through every route, valid and invalid; then every log
line (as the JSON formatter writes it), the /metrics page, every key name in the store (SCAN on
Redis) and every error answer are searched for each canary in every form it could take:
as sent, lower-cased, normalized (E.164, ISO date), digits only.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Iterable
from typing import Any, cast
from urllib.parse import unquote, urlencode

import orjson
import pytest
import redis.asyncio

from gateway.observe.logs import JsonFormatter
from gateway.storage import keys
from gateway.storage.redis import RedisStore
from gateway.types import AdvertiserId

from .conftest import Gateway, GatewayFactory, Reply, network

CANARY: dict[str, object] = {
    "email": "Canary.Qvw7m+Promo@Example.ORG",
    "phone": "+33 6 47 11 93 28",
    "first_name": "Zorglubine",
    "last_name": "Qwixotlanne",
    "postal_code": "ZQ8 1XK",
    "country": "GB",
    "city": "Blorptown",
    "company": "Xyzzyplugh",
    "birth_date": "14/03/1987",
    "ip": "203.0.113.197",
}
#: Each canary as it could appear once normalized: lower-case, E.164 / national / digits only
#: (searched in text whose digit groups were joined, percent-decoded too), ISO date, postal
#: code without space.
NEEDLES: tuple[str, ...] = (
    "qvw7m",
    "647119328",
    "zorglubine",
    "qwixotlanne",
    "zq8 1xk",
    "zq81xk",
    "blorptown",
    "xyzzyplugh",
    "1987-03-14",
    "14/03/1987",
    "203.0.113.197",
)
#: Invalid spellings that still carry a canary, so a message that quotes them is caught.
BAD_CANARY: dict[str, object] = {
    "email": "Canary.Qvw7m@@Example.ORG",
    "phone": "+33 6 47 11 93 28 99 99 99",
    "first_name": "Zorglubine\x07",
    "last_name": "Qwixotlanne" * 20,
    "postal_code": "ZQ8 1XK",  # not a French postal code
    "city": "Blorptown\x00",
    "country": "Zorglubine",
    "birth_date": "1987-03-14T00:00",
    "ip": "203.0.113.1977",
}
#: The canary's identifiers as a publisher hashes them for a check or a ping (docs/api.md):
#: personal data too, so searched for like the rest (in full and their first 16 characters).
CANARY_HASHES = {
    "email_sha256": hashlib.sha256(b"canary.qvw7m+promo@example.org").hexdigest(),
    "phone_sha256": hashlib.sha256(b"+33647119328").hexdigest(),
}
NEEDLES += tuple(h[:16] for h in CANARY_HASHES.values())
_BETWEEN_DIGITS = re.compile(r"(?<=\d)[\s.+\-()/]+(?=\d)")


def leaks(texts: Iterable[str]) -> list[tuple[str, str]]:
    """Every (needle, excerpt) found in ``texts``."""
    found: list[tuple[str, str]] = []
    for text in texts:
        low = text.lower()
        decoded = unquote(low)  # query strings and form bodies, percent-encoded
        haystacks = (low, _BETWEEN_DIGITS.sub("", low), _BETWEEN_DIGITS.sub("", decoded))
        for needle in NEEDLES:
            for haystack in haystacks:
                at = haystack.find(needle)
                if at >= 0:
                    found.append((needle, haystack[max(0, at - 60) : at + 60]))
                    break
    return found


@pytest.mark.parametrize(
    "text",
    [
        "+33647119328",
        "0647119328",
        "tel: 06 47 11 93 28",
        "%2B33%206%2047%2011%2093%2028",
        "+33+6+47+11+93+28",
        "CANARY.QVW7M@EXAMPLE.ORG",
        "canary.qvw7m%40example.org",
        "Zorglubine",
        "zq8 1xk",
        "1987-03-14",
        "203.0.113.197",
    ],
)
def test_the_search_finds_every_spelling_of_a_canary(text: str) -> None:
    """The check above is only as good as its search: it must not pass by missing a form."""
    assert leaks([f'{{"msg": "x", "value": "{text}"}}'])


def problem_texts(reply: Reply) -> list[str]:
    """What an error answer says to people: ``detail`` and every ``errors[].message``."""
    problem: dict[str, Any] = reply.json()
    return [problem["detail"], *(e["message"] for e in problem.get("errors", []))]


async def exercise_every_route(gw: Gateway) -> list[Reply]:
    """Send the canary person through every route, valid and invalid; the error answers."""
    lead = {**CANARY, "campaign": "acme-always-on", "ref": "canary-1"}
    form_headers = {"Content-Type": "application/x-www-form-urlencoded"}
    decided = [
        await gw.post("p-mail", lead),
        await gw.post("p-coreg", lead),  # duplicate
        await gw.post("p-mail", {**lead, "campaign": "nova-ten", "test": True}),
        # A sloppy publisher using the email as its Idempotency-Key.
        await gw.post(
            "p-cash",
            {**lead, "campaign": "nova-ten"},
            headers={"Idempotency-Key": str(CANARY["email"])},
        ),
        await gw.request(
            "POST",
            "/v1/leads",
            partner="p-comp",
            data=urlencode({**lead, "campaign": "nova-daily"}),
            headers=form_headers,
        ),
        await gw.request(
            "GET",
            "/v1/leads",
            params={**{k: str(v) for k, v in lead.items()}, "api_key": gw.keys["p-coreg"]},
        ),
    ]
    mixed = await gw.batch("p-mail", [lead, {**lead, "campaign": "nova-daily"}, {**BAD_CANARY}])
    decided.append(mixed)
    probe = {"campaign": "acme-peak", **CANARY_HASHES}
    checked = await gw.post("p-cash", probe, path="/v1/leads/check")
    place = {k: CANARY[k] for k in ("postal_code", "country", "city")}
    pinged = await gw.post("p-cash", {**probe, **place, "campaign": "nova-pinged"}, path="/v1/ping")
    assert pinged.status == 200, pinged.body
    ping_id = pinged.json()["ping_id"]
    pinged_lead = {**lead, "campaign": "nova-pinged", "ping_id": ping_id}
    decided += [checked, pinged]
    # A post that is not the pinged lead, then the pinged one.
    mismatched = await gw.post("p-cash", {**pinged_lead, "phone": "+33 6 47 11 93 29"})
    assert mismatched.status == 422, mismatched.body
    decided.append(await gw.post("p-cash", pinged_lead))
    for reply in decided:
        assert reply.status == 200, reply.body

    bad = {**BAD_CANARY, "campaign": "acme-always-on"}
    bad_query = {k: str(v) for k, v in bad.items()}
    twice = urlencode([("email", str(CANARY["email"])), ("email", "qvw7m@example.org")])
    broken = b'{"campaign": "acme-always-on", "email": "canary.qvw7m@example.org", "phone": '
    refused = [
        await gw.post("p-mail", bad),
        await gw.post("p-mail", {**bad, "consent": {"given": True, "text": "\x00Zorglubine"}}),
        await gw.request(
            "POST", "/v1/leads", partner="p-mail", data=urlencode(bad), headers=form_headers
        ),
        await gw.request("GET", "/v1/leads", partner="p-mail", params=bad_query),
        await gw.request("POST", "/v1/leads", partner="p-mail", data=twice, headers=form_headers),
        await gw.request(
            "POST",
            "/v1/leads",
            partner="p-mail",
            data=broken,
            headers={"Content-Type": "application/json"},
        ),
        await gw.post("p-mail", [bad]),
        await gw.post("p-mail", {**lead, "email": {"address": CANARY["email"]}}),
        await gw.post("p-comp", {**lead, "campaign": "acme-peak"}),  # forbidden
        await gw.post(None, lead, headers={"X-Api-Key": "qvw7m"}),
        await gw.post("p-mail", {"leads": [bad] * 1001}, path="/v1/leads/batch"),
    ]
    for reply in refused:
        assert 400 <= reply.status < 500, reply.body
    bad_batch = await gw.batch("p-mail", [bad, {**bad, "campaign": "acme-peak"}])
    item_errors = [
        item["error"]
        for batch in (mixed, bad_batch)
        for item in batch.json()["results"]
        if "error" in item
    ]
    assert len(item_errors) == 3
    refused += [
        mismatched,
        await gw.post("p-mail", {**probe, "email": CANARY["email"]}, path="/v1/leads/check"),
        await gw.post("p-mail", {**probe, "ip": CANARY["ip"]}, path="/v1/ping"),
    ]
    return refused + [Reply(422, bad_batch.headers, orjson.dumps(e)) for e in item_errors]


def privacy_network() -> dict[str, Any]:
    """``network()`` and ``nova-pinged``, nova's campaign that takes pings."""
    config = network()
    config["campaigns"].append(
        {"id": "nova-pinged", "advertiser": "nova", "kind": "always_on", "ping_ttl_s": 60,
         "dedup": [{"scope": "campaign", "window": "30d"}]}
    )  # fmt: skip
    for partner in config["partners"]:
        partner["campaigns"] = [*partner["campaigns"], "nova-pinged"]
    return config


async def test_no_canary_in_logs_metrics_keys_or_error_messages(
    make_gateway: GatewayFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="leadgate")
    gw = await make_gateway(privacy_network())
    errors = await exercise_every_route(gw)

    formatter = JsonFormatter()
    lines = [formatter.format(record) for record in caplog.records]
    lines += [record.getMessage() for record in caplog.records]
    decision_lines = [r for r in caplog.records if r.name == "leadgate.decision"]
    assert len(decision_lines) >= 8, "the decision log was not captured"
    assert leaks(lines) == []

    metrics = await gw.metrics()
    assert 'leadgate_leads_total{campaign="acme-always-on",channel="email"' in metrics
    assert leaks([metrics]) == []

    key_names = await gw.view.key_names()
    assert any(":seen:" in key for key in key_names), key_names
    assert leaks(key_names) == []

    for reply in errors:
        assert leaks(problem_texts(reply)) == [], reply.body


async def test_the_delivery_stream_is_the_only_place_redis_holds_the_lead(
    make_embedded_gateway: GatewayFactory, redis_url: str
) -> None:
    """Dedup marks, caps, idempotency answers and person slots hold ids and instants only."""
    gw = await make_embedded_gateway(privacy_network(), store=RedisStore(redis_url))
    await exercise_every_route(gw)
    client = redis.asyncio.Redis.from_url(redis_url, decode_responses=True)
    streams = {keys.deliveries(AdvertiserId(a)) for a in ("acme", "nova")}
    try:
        values: list[str] = []
        async for key in client.scan_iter(count=1000):
            kind = await client.type(key)
            if key in streams:
                assert kind == "stream"
                continue
            if kind == "string":
                values.append(str(await client.get(key)))
            elif kind == "zset":
                members = cast(list[tuple[str, float]], await client.zrange(key, 0, -1, True))
                values += [member for member, _ in members]
            elif kind == "hash":
                fields = cast(dict[str, str], await client.hgetall(key))
                values += [f"{k}={v}" for k, v in fields.items()]
            else:
                pytest.fail(f"unexpected {kind!r} key {key!r}")
        assert values
        assert leaks(values) == []
        # The canary is in the delivery stream, as it must be: the advertiser buys the lead.
        entries = cast(
            list[tuple[str, dict[str, str]]],
            await client.xrange(keys.deliveries(AdvertiserId("acme"))),
        )
        assert len(entries) == 1
        assert leaks(entries[0][1].values())
    finally:
        await client.aclose()
