"""The advertisers' feedback routes: ``POST /v1/feedback`` and the ``GET`` postback.

::

    POST /v1/feedback   {"lead_id": "...", "status": "returned", "reason": "invalid_contact"}
                        or {"feedback": [{...}, {...}]}  (at most ``server.batch_max_leads``)
    GET  /v1/feedback?lead_id=...&status=converted&value=49.9[&api_key=...]

Authenticated with an advertiser's key (``Authorization: Bearer``, ``X-Api-Key``, or
``api_key`` in the postback's query). A single item answers 200 with its result or a
problem+json (404 unknown lead, 409 return window over, 422 invalid); a list answers 200 with
one result or problem per item, in order, and counts.
"""

from __future__ import annotations

import time

from aiohttp import web

from gateway.config.model import Advertiser
from gateway.errors import (
    FieldProblem,
    InvalidLead,
    RateLimited,
    RequestError,
    UnsupportedMediaType,
    detached,
)
from gateway.quality.feedback import FeedbackItem, Recorded, parse_item
from gateway.web import body as bodies
from gateway.web.auth import api_key, authenticate
from gateway.web.json_answer import json_answer
from gateway.web.problems import problem_body, route_path
from gateway.web.ratelimit import client_address, retry_after_s
from gateway.web.state import ADDRESS_LIMITS, FEEDBACK_DESK, INTAKE


def _advertiser(request: web.Request, *, allow_query: bool = False) -> Advertiser:
    desk = request.app[FEEDBACK_DESK]
    return authenticate(
        request,
        request.app[INTAKE].config.server,
        lambda r: desk.authenticate(api_key(r, allow_query=allow_query)),
        "unknown API key (feedback takes an advertiser's key)",
        limits=request.app.get(ADDRESS_LIMITS),
    )


def _within_limit(request: web.Request, items: int) -> None:
    """``items`` feedback items against the client address's ``server.feedback_rate_limit``
    (per process; a list larger than the burst passes when the bucket is full, in debt)."""
    server = request.app[INTAKE].config.server
    address = client_address(request, server.trusted_proxies)
    limit = server.feedback_rate_limit
    wait_s = request.app[ADDRESS_LIMITS].feedback.take(address, limit, items, time.monotonic())
    if wait_s > 0:
        raise RateLimited(
            f"feedback limit of {limit.per_s:g} items/s from this address exceeded",
            retry_after_s(wait_s),
        )


async def _one(
    request: web.Request, advertiser: Advertiser, item: FeedbackItem
) -> web.StreamResponse:
    (answer,) = await request.app[FEEDBACK_DESK].record(advertiser.id, [item])
    if isinstance(answer, RequestError):
        raise answer
    return json_answer(answer.to_json())


async def post_feedback(request: web.Request) -> web.StreamResponse:
    advertiser = _advertiser(request)
    server = request.app[INTAKE].config.server
    raw = await bodies.read_body(request, server.batch_max_body_bytes, server.body_timeout_s)
    if bodies.media_type(request) != "application/json":
        raise UnsupportedMediaType("feedback takes application/json")
    data = bodies.parse_json_object(raw)
    if "feedback" not in data:
        _within_limit(request, 1)
        return await _one(request, advertiser, parse_item(data))
    listed = data["feedback"]
    if not isinstance(listed, list) or not listed:
        raise InvalidLead([FieldProblem("feedback", "expected a non-empty list")])
    if len(listed) > server.batch_max_leads:
        raise InvalidLead(
            [FieldProblem("feedback", f"at most {server.batch_max_leads} items per request")]
        )
    extra = [name for name in data if name != "feedback"]
    if extra:
        raise InvalidLead([FieldProblem(name, "unknown field") for name in extra[:20]])
    _within_limit(request, len(listed))
    parsed: list[FeedbackItem | RequestError] = []
    for index, entry in enumerate(listed):
        try:
            parsed.append(parse_item(entry, f"feedback/{index}/"))
        except RequestError as refused:
            parsed.append(detached(refused))
    valid = [p for p in parsed if isinstance(p, FeedbackItem)]
    recorded = iter(await request.app[FEEDBACK_DESK].record(advertiser.id, valid))
    results: list[dict[str, object]] = []
    counts = {"recorded": 0, "already_recorded": 0, "refused": 0}
    for index, item in enumerate(parsed):
        answer = next(recorded) if isinstance(item, FeedbackItem) else item
        if isinstance(answer, Recorded):
            counts[answer.result] += 1
            results.append({"index": index, **answer.to_json()})
        else:
            counts["refused"] += 1
            results.append({"index": index, "error": problem_body(answer, route_path(request))})
    return json_answer({"results": results, "counts": counts})


async def get_feedback(request: web.Request) -> web.StreamResponse:
    advertiser = _advertiser(request, allow_query=True)
    query = request.rel_url.query
    data = bodies.query_fields(query, ((k, v) for k, v in query.items() if k != "api_key"))
    _within_limit(request, 1)
    return await _one(request, advertiser, parse_item(data))


def add_feedback_routes(app: web.Application) -> None:
    """The feedback routes; ``app[FEEDBACK_DESK]`` records what they receive."""
    app.router.add_post("/v1/feedback", post_feedback)
    app.router.add_get("/v1/feedback", get_feedback, allow_head=False)
