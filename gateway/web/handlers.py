"""Route handlers: parse the transport, authenticate, rate-limit, hand over to ``Intake``."""

from __future__ import annotations

import asyncio
import hmac
import time
from importlib import resources

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from gateway.config.model import Partner
from gateway.decision.answer import Answer, check_json
from gateway.errors import (
    BadRequest,
    FieldProblem,
    InvalidLead,
    PingLimit,
    RateLimited,
    StoreError,
    Unauthorized,
    UnsupportedMediaType,
)
from gateway.observe import caps as capusage
from gateway.web import body as bodies
from gateway.web.auth import api_key, authenticate
from gateway.web.json_answer import JsonAnswer, json_answer
from gateway.web.problems import problem_body, route_path
from gateway.web.ratelimit import TokenBucket, retry_after_s
from gateway.web.state import (
    ADDRESS_LIMITS,
    BUCKETS,
    DRAINING,
    INTAKE,
    METRICS_TOKEN,
    OBSERVER,
    PING_LIMITS,
    STORE,
)

_IDEMPOTENCY_KEY_CHARS = frozenset(chr(c) for c in range(0x21, 0x7F))


def _partner(
    request: web.Request,
    app: web.Application,
    *,
    allow_query: bool = False,
    cost: int = 1,
    probe: str = "",
) -> Partner:
    """The partner whose API key the request carries, within its rate limit (its own or
    ``server.default_rate_limit``); ``cost``: leads counted against it. ``probe``: ``check``
    or ``ping``, counted against that limit instead (``check_rate_limit``,
    ``ping_rate_limit``). ``app``: ``request.app``, which each handler reads once (it is two
    property calls in aiohttp, and each item of it one more)."""
    intake = app[INTAKE]
    server = intake.config.server
    partner = authenticate(
        request,
        server,
        lambda r: intake.authenticate(api_key(r, allow_query=allow_query)),
        "unknown API key",
        limits=app[ADDRESS_LIMITS],
    )
    if probe == "check":
        limit, what = partner.check_rate_limit or server.default_check_rate_limit, "checks"
    elif probe == "ping":
        limit, what = partner.ping_rate_limit or server.default_ping_rate_limit, "pings"
    else:
        limit, what = partner.rate_limit or server.default_rate_limit, "leads"
    buckets = app[BUCKETS]
    now_s = time.monotonic()
    # A NUL cannot occur in a configured id: a probe's bucket never meets a partner's own.
    name = f"{partner.id}\x00{probe}" if probe else partner.id
    bucket = buckets.get(name)
    if bucket is None or not bucket.matches(limit):
        # A partner new to this process, or whose limit a reload changed: a full bucket.
        bucket = buckets[name] = TokenBucket.full(limit, now_s)
    wait_s = bucket.take(cost, now_s)
    if wait_s > 0:
        raise RateLimited(
            f"rate limit of {limit.per_s:g} {what}/s exceeded",
            retry_after_s(wait_s),
        )
    return partner


def _idempotency_key(request: web.Request) -> str | None:
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None
    if not 1 <= len(key) <= 255 or not set(key) <= _IDEMPOTENCY_KEY_CHARS:
        raise BadRequest("Idempotency-Key must be 1 to 255 printable ASCII characters")
    return key


def _answer_response(answer: Answer) -> JsonAnswer:
    headers = {"Idempotent-Replayed": "true"} if answer.replayed else None
    return json_answer(answer.to_json(), headers=headers)


async def post_lead(request: web.Request) -> web.StreamResponse:
    app = request.app
    intake = app[INTAKE]
    partner = _partner(request, app)
    key = _idempotency_key(request)
    server = intake.config.server
    raw = await bodies.read_body(request, server.max_body_bytes, server.body_timeout_s)
    data = bodies.parse_lead_body(request, raw)
    answer = await intake.submit(partner, data, idempotency_key=key, body=raw)
    _count_pinged_post(request, partner, answer)
    return _answer_response(answer)


def _count_pinged_post(request: web.Request, partner: Partner, answer: Answer) -> None:
    """A post naming a ping counts for its partner's pings per post (``ping-limit``)."""
    if answer.ping_status is not None and not answer.replayed:
        request.app[PING_LIMITS].posted(partner.id, time.monotonic())


async def post_ping(request: web.Request) -> web.StreamResponse:
    """A ping (docs/api.md): a JSON object of the campaign, hashed identifiers and the
    non-personal fields; its rate limit, then its partner's pings per post."""
    app = request.app
    intake = app[INTAKE]
    partner = _partner(request, app, probe="ping")
    server = intake.config.server
    if request.headers.get("Idempotency-Key") is not None:
        raise BadRequest(
            "a ping takes no Idempotency-Key: it reserves nothing a retry could double "
            "(an unused reservation ends by itself); send the key with the post"
        )
    wait_s = app[PING_LIMITS].ping(partner.id, server.max_pings_per_post, time.monotonic())
    if wait_s:
        raise PingLimit(
            f"more than {server.max_pings_per_post} pings per post naming one over the last "
            "hour: post the leads you pinged for",
            wait_s,
        )
    answer = await intake.ping(partner, await _probe_body(request, "a ping"))
    return json_answer(answer.to_json())


async def post_check(request: web.Request) -> web.StreamResponse:
    """A pre-ping check (docs/api.md): a JSON object of the campaign and hashed identifiers."""
    app = request.app
    intake = app[INTAKE]
    partner = _partner(request, app, probe="check")
    answer = await intake.check(partner, await _probe_body(request, "a check"))
    return json_answer(check_json(answer))


async def _probe_body(request: web.Request, what: str) -> dict[str, object]:
    """A check's or a ping's body: one JSON object, within the lead routes' size and time."""
    server = request.app[INTAKE].config.server
    raw = await bodies.read_body(request, server.max_body_bytes, server.body_timeout_s)
    if bodies.media_type(request) != "application/json":
        raise UnsupportedMediaType(f"{what} is application/json")
    return bodies.parse_json_object(raw)


async def get_lead(request: web.Request) -> web.StreamResponse:
    app = request.app
    intake = app[INTAKE]
    partner = _partner(request, app, allow_query=True)
    key = _idempotency_key(request)
    query = request.rel_url.query
    data = bodies.query_fields(query, ((k, v) for k, v in query.items() if k != "api_key"))
    canonical = orjson.dumps(data, option=orjson.OPT_SORT_KEYS)
    answer = await intake.submit(partner, data, idempotency_key=key, body=canonical)
    _count_pinged_post(request, partner, answer)
    return _answer_response(answer)


async def post_batch(request: web.Request) -> web.StreamResponse:
    app = request.app
    intake = app[INTAKE]
    server = intake.config.server
    # Authenticate before reading a body of up to several MiB.
    _partner(request, app, cost=0)
    key = _idempotency_key(request)
    raw = await bodies.read_body(request, server.batch_max_body_bytes, server.body_timeout_s)
    if bodies.media_type(request) != "application/json":
        raise UnsupportedMediaType("the batch endpoint takes application/json")
    data = bodies.parse_json_object(raw)
    leads = data.get("leads")
    if not isinstance(leads, list) or not leads:
        raise InvalidLead([FieldProblem("leads", "expected a non-empty list of leads")])
    if len(leads) > server.batch_max_leads:
        raise InvalidLead(
            [FieldProblem("leads", f"at most {server.batch_max_leads} leads per batch")]
        )
    extra = [name for name in data if name != "leads"]
    if extra:
        raise InvalidLead([FieldProblem(name, "unknown field") for name in extra[:20]])
    partner = _partner(request, app, cost=len(leads))
    answers = await intake.submit_batch(partner, leads, idempotency_key=key, body=raw)
    counts = {"accepted": 0, "duplicate": 0, "capped": 0, "rejected": 0, "invalid": 0}
    results: list[dict[str, object]] = []
    decided = replayed = 0
    for index, answer in enumerate(answers):
        if isinstance(answer, Answer):
            counts[answer.decision] += 1  # a StrEnum: its value's key (no enum descriptor)
            result = {"index": index, **answer.to_json()}
            decided += 1
            if answer.replayed:
                result["replayed"] = True
                replayed += 1
            results.append(result)
        else:
            counts["invalid"] += 1
            problem = problem_body(answer, route_path(request))
            results.append({"index": index, "error": problem})
    # The header says the whole batch is a replay: every decided item's answer is the stored
    # one (items refused as invalid are never stored; the same body refuses them again).
    headers = {"Idempotent-Replayed": "true"} if decided and replayed == decided else None
    return json_answer({"results": results, "counts": counts}, headers=headers)


async def healthz(request: web.Request) -> web.StreamResponse:
    return json_answer({"status": "ok"})


async def readyz(request: web.Request) -> web.StreamResponse:
    store = request.app[STORE]
    if request.app[DRAINING].is_set():
        return json_answer({"status": "draining", "store": store.name}, status=503)
    try:
        async with asyncio.timeout(1.0):
            await store.ping()
    except (StoreError, TimeoutError):
        return json_answer({"status": "unavailable", "store": store.name}, status=503)
    return json_answer({"status": "ready", "store": store.name})


async def metrics(request: web.Request) -> web.Response:
    """The Prometheus page, on an ops listener only (``create_ops_app``); behind
    ``LEADGATE_METRICS_TOKEN`` when one is set."""
    token = request.app[METRICS_TOKEN]
    if token is not None:
        auth = request.headers.get("Authorization", "")
        given = auth[7:].strip() if auth[:7].lower() == "bearer " else ""
        if not hmac.compare_digest(given.encode(), token.encode()):
            raise Unauthorized("send the metrics token as 'Authorization: Bearer <token>'")
    intake, observer = request.app[INTAKE], request.app[OBSERVER]
    await capusage.refresh(observer, intake.config, request.app[STORE], intake.clock())
    observer.flush()
    # The page grows with the configured routes: ~70,000 lines and half a second to render
    # for 500 partners (docs/observability.md, "Cost"). Rendered in a thread, it leaves the
    # event loop to answer leads meanwhile, in turns of the GIL: the loop then paused 12 ms
    # at most, against the whole half second.
    response = web.Response(body=await asyncio.to_thread(observer.page))
    response.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return response


_OPENAPI = resources.files("gateway.web").joinpath("openapi.json")


async def openapi(request: web.Request) -> web.Response:
    return web.Response(body=_OPENAPI.read_bytes(), content_type="application/json")
