"""``python -m bench.peer PORT REDIS_URL``: the same work as the gateway, written the obvious
way, in one file: what a team would write in an afternoon, and what the gateway must beat.

Plain and honest: no deliberate slowness, no tricks. One aiohttp handler per route; the body
parsed with orjson; the partner found by the SHA-256 of its API key; the email through
email-validator (syntax, no DNS) and lower-cased, Gmail dots and ``+tags`` folded; the phone
through phonenumbers to E.164 in the campaign's region; each identity fingerprinted with
keyed BLAKE2b; **one** ``EVALSHA`` per lead through redis-py with hiredis that checks both
identities in both dedup scopes (advertiser 30 days, campaign 90 days: a key per fingerprint
and scope, ``SET ... PX window``), two calendar counters (campaign per day, partner per hour)
and appends the accepted lead to a stream; a Prometheus counter per partner and decision.
It answers every lead as the gateway words it (``lead_id``, ``decision``, ``reasons``,
``ref``, ``campaign``, ``channel``, ``test``; 422 with the bad fields for an invalid lead).

What it leaves out, on purpose (the gateway does them): rule packs, Idempotency-Keys, rate
limits, contact pressure, the quality ledger, problem+json details, the delivery worker.
Its campaign is the bench's (``bench/scenarios/gateway.yaml``), written into the code.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import AsyncIterator
from datetime import datetime
from zoneinfo import ZoneInfo

import orjson
import phonenumbers
import uuid_utils
import uvloop
from aiohttp import web
from email_validator import EmailNotValidError, validate_email
from prometheus_client import Counter
from redis.asyncio import Redis

#: The bench partners' published keys (bench/scenarios/gateway.yaml).
API_KEYS = {
    hashlib.sha256(b"bench-key-alpha").hexdigest(): "p-alpha",
    hashlib.sha256(b"bench-key-beta").hexdigest(): "p-beta",
    hashlib.sha256(b"bench-key-gamma").hexdigest(): "p-gamma",
}
CAMPAIGN = "bench"
ADVERTISER = "bench-adv"
REGION = "FR"
ZONE = ZoneInfo("Europe/Paris")
FINGERPRINT_KEY = b"peer-bench-fingerprint-key-32-b!"
ADVERTISER_WINDOW_MS = 30 * 86_400_000
CAMPAIGN_WINDOW_MS = 90 * 86_400_000
DAY_LIMIT = HOUR_LIMIT = 1_000_000_000

# KEYS: 4 dedup keys (email/phone x advertiser/campaign), 2 counters, the stream.
# ARGV: advertiser window ms, campaign window ms, day limit, hour limit, day TTL ms,
#       hour TTL ms, lead id, record.
DECIDE = """
local dup = {}
if redis.call('EXISTS', KEYS[1]) == 1 or redis.call('EXISTS', KEYS[2]) == 1 then
  dup[#dup + 1] = 'duplicate.advertiser'
end
if redis.call('EXISTS', KEYS[3]) == 1 or redis.call('EXISTS', KEYS[4]) == 1 then
  dup[#dup + 1] = 'duplicate.campaign'
end
if #dup > 0 then return {'duplicate', table.concat(dup, ',')} end
local capped = {}
if tonumber(redis.call('GET', KEYS[5]) or '0') >= tonumber(ARGV[3]) then
  capped[#capped + 1] = 'cap.campaign.day'
end
if tonumber(redis.call('GET', KEYS[6]) or '0') >= tonumber(ARGV[4]) then
  capped[#capped + 1] = 'cap.partner.hour'
end
if #capped > 0 then return {'capped', table.concat(capped, ',')} end
redis.call('SET', KEYS[1], 1, 'PX', ARGV[1])
redis.call('SET', KEYS[2], 1, 'PX', ARGV[1])
redis.call('SET', KEYS[3], 1, 'PX', ARGV[2])
redis.call('SET', KEYS[4], 1, 'PX', ARGV[2])
if redis.call('INCR', KEYS[5]) == 1 then redis.call('PEXPIRE', KEYS[5], ARGV[5]) end
if redis.call('INCR', KEYS[6]) == 1 then redis.call('PEXPIRE', KEYS[6], ARGV[6]) end
redis.call('XADD', KEYS[7], '*', 'lead_id', ARGV[7], 'record', ARGV[8])
return {'accepted', ''}
"""

LEADS = Counter("peer_leads", "Leads by partner and decision", ["partner", "decision"])

_JSON = "application/json"
REDIS = web.AppKey("redis", Redis)
SHA = web.AppKey("sha", str)


class Invalid(Exception):
    def __init__(self, problems: list[dict[str, str]]) -> None:
        self.problems = problems


def fingerprint(kind: str, value: str) -> str:
    return hashlib.blake2b(
        value.encode(), key=FINGERPRINT_KEY, digest_size=16, person=kind.encode()
    ).hexdigest()


def normalize(lead: dict[str, object]) -> tuple[str, str | None]:
    """The email identity and the phone in E.164; ``Invalid`` with every bad field."""
    problems: list[dict[str, str]] = []
    email = lead.get("email")
    identity = ""
    if not isinstance(email, str) or not email:
        problems.append({"field": "email", "message": "required"})
    else:
        try:
            valid = validate_email(email, check_deliverability=False)
            local, domain = valid.local_part.lower(), valid.domain
            if domain in ("gmail.com", "googlemail.com"):
                local = local.partition("+")[0].replace(".", "")
                domain = "gmail.com"
            identity = f"{local}@{domain}"
        except EmailNotValidError:
            problems.append({"field": "email", "message": "not a valid email address"})
    phone = lead.get("phone")
    e164 = None
    if isinstance(phone, str) and phone:
        try:
            number = phonenumbers.parse(phone, REGION)
            if not phonenumbers.is_valid_number(number):
                raise ValueError
            e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
        except (phonenumbers.NumberParseException, ValueError):
            problems.append({"field": "phone", "message": "not a valid phone number"})
    first_name = lead.get("first_name")
    if not isinstance(first_name, str) or not first_name.strip():
        problems.append({"field": "first_name", "message": "required"})
    if problems:
        raise Invalid(problems)
    return identity, e164


async def decide(
    app: web.Application, partner: str, lead: dict[str, object]
) -> tuple[int, dict[str, object]]:
    try:
        email, phone = normalize(lead)
    except Invalid as bad:
        LEADS.labels(partner, "invalid").inc()
        return 422, {"title": "invalid lead", "problems": bad.problems}
    identities = [fingerprint("email", email)]
    if phone is not None:
        identities.append(fingerprint("phone", phone))
    else:
        identities.append(identities[0])
    now = datetime.now(ZONE)
    lead_id = str(uuid_utils.uuid7())
    tag = f"peer:{{{ADVERTISER}}}"
    record = {"lead_id": lead_id, "partner": partner, "campaign": CAMPAIGN, "lead": lead}
    day_end = now.replace(hour=23, minute=59, second=59, microsecond=999_999)
    hour_end = now.replace(minute=59, second=59, microsecond=999_999)
    decision, reasons = await app[REDIS].evalsha(
        app[SHA],
        7,
        f"{tag}:seen:adv:{identities[0]}",
        f"{tag}:seen:adv:{identities[1]}",
        f"{tag}:seen:{CAMPAIGN}:{identities[0]}",
        f"{tag}:seen:{CAMPAIGN}:{identities[1]}",
        f"{tag}:cap:{CAMPAIGN}:{now:%Y-%m-%d}",
        f"{tag}:cap:{CAMPAIGN}:{partner}:{now:%Y-%m-%dT%H}",
        f"{tag}:stream",
        ADVERTISER_WINDOW_MS,
        CAMPAIGN_WINDOW_MS,
        DAY_LIMIT,
        HOUR_LIMIT,
        int((day_end - now).total_seconds() * 1000) + 1,
        int((hour_end - now).total_seconds() * 1000) + 1,
        lead_id,
        orjson.dumps(record),
    )
    LEADS.labels(partner, decision).inc()
    return 200, {
        "lead_id": lead_id,
        "decision": decision,
        "reasons": [r for r in reasons.split(",") if r],
        "ref": lead.get("ref"),
        "campaign": CAMPAIGN,
        "channel": lead.get("channel"),
        "test": False,
    }


def authenticate(request: web.Request) -> str:
    auth = request.headers.get("Authorization", "")
    partner = API_KEYS.get(hashlib.sha256(auth.removeprefix("Bearer ").encode()).hexdigest())
    if partner is None:
        raise web.HTTPUnauthorized(text='{"title":"unknown API key"}', content_type=_JSON)
    return partner


def _json(data: object, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type=_JSON)


async def single(request: web.Request) -> web.Response:
    partner = authenticate(request)
    lead = orjson.loads(await request.read())
    if not isinstance(lead, dict):
        return _json({"title": "expected a JSON object"}, 400)
    status, answer = await decide(request.app, partner, lead)
    return _json(answer, status)


async def batch(request: web.Request) -> web.Response:
    partner = authenticate(request)
    body = orjson.loads(await request.read())
    leads = body.get("leads") if isinstance(body, dict) else None
    if not isinstance(leads, list):
        return _json({"title": "expected {leads: [...]}"}, 400)
    results: list[dict[str, object]] = []
    counts: dict[str, int] = {}
    for index, lead in enumerate(leads):
        status, answer = (
            await decide(request.app, partner, lead)
            if isinstance(lead, dict)
            else (422, {"title": "expected a JSON object"})
        )
        decision = str(answer["decision"]) if status == 200 else "invalid"
        counts[decision] = counts.get(decision, 0) + 1
        results.append({"index": index, **answer})
    return _json({"results": results, "counts": counts})


async def health(request: web.Request) -> web.Response:
    return _json({"status": "ok"})


def make_app(redis_url: str) -> web.Application:
    async def connect(app: web.Application) -> AsyncIterator[None]:
        app[REDIS] = Redis.from_url(redis_url, decode_responses=True)
        app[SHA] = await app[REDIS].script_load(DECIDE)
        yield
        await app[REDIS].aclose()

    app = web.Application()
    app.cleanup_ctx.append(connect)
    app.router.add_post("/v1/leads", single)
    app.router.add_post("/v1/leads/batch", batch)
    app.router.add_get("/healthz", health)
    return app


def main() -> None:
    port, redis_url = int(sys.argv[1]), sys.argv[2]
    uvloop.install()
    web.run_app(make_app(redis_url), host="127.0.0.1", port=port, access_log=None, print=None)


if __name__ == "__main__":
    main()
