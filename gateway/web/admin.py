"""Admin HTTP endpoints for deliveries, behind their own token (``LEADGATE_ADMIN_TOKEN``).

::

    GET  /admin/deliveries                      every advertiser's queue state
    GET  /admin/deliveries/dead?advertiser=A&since=2h&limit=100
    POST /admin/deliveries/replay   {"lead_id": "..."} | {"advertiser": "A", "since": "2h"}
    POST /admin/deliveries/enable   {"advertiser": "A"}

``Authorization: Bearer <LEADGATE_ADMIN_TOKEN>``; a partner's API key never opens them (it is
not the token). Without a token configured the routes do not exist (404). Answers hold ids,
codes, counts and times only, like ``leadgate deliveries``; errors are problem+json.
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence

import orjson
from aiohttp import web

from gateway.delivery import ops
from gateway.delivery.queue_base import Queue
from gateway.types import AdvertiserId, LeadId
from gateway.web.problems import Handler, problem_response

PREFIX = "/admin/deliveries"


class _Admin:
    def __init__(self, queue: Queue, token: str, advertisers: Sequence[AdvertiserId]) -> None:
        self.queue = queue
        self._token = token.encode()
        self.advertisers = list(advertisers)

    def authorized(self, request: web.Request) -> bool:
        auth = request.headers.get("Authorization", "")
        if auth[:7].lower() != "bearer ":
            return False
        return hmac.compare_digest(auth[7:].strip().encode(), self._token)

    def advertiser(self, value: object) -> AdvertiserId | None:
        return AdvertiserId(value) if isinstance(value, str) and value in self.advertisers else None

    # --- handlers -------------------------------------------------------------------------

    async def state(self, _: web.Request) -> web.Response:
        now = ops.now_ms()
        body = {}
        for advertiser in self.advertisers:
            s = await self.queue.state(advertiser)
            body[advertiser] = {
                "undelivered": s.depth,
                "waiting_for_retry": s.delayed,
                "oldest_undelivered_age_s": round(s.oldest_age_s(now), 1),
                "dead_letters": s.dead_letters,
                "disabled": s.disabled,
            }
        return _json({"advertisers": body})

    async def dead(self, request: web.Request) -> web.Response:
        query = request.rel_url.query
        chosen = self.advertisers
        if "advertiser" in query:
            one = self.advertiser(query["advertiser"])
            if one is None:
                return _unknown_advertiser(request)
            chosen = [one]
        try:
            since = ops.parse_since(query["since"]) if "since" in query else 0
            limit = int(query.get("limit", "100"))
            if not 1 <= limit <= 10_000:
                raise ValueError("limit must be between 1 and 10000")
        except ValueError as error:
            return _bad(request, str(error))
        now = ops.now_ms()
        rows = []
        for advertiser in chosen:
            rows += [
                ops.dead_row(e, now)
                for e in await ops.dead_letters(self.queue, advertiser, since, limit)
            ]
        return _json({"dead_letters": rows})

    async def replay(self, request: web.Request) -> web.Response:
        body = await _body(request)
        if body is None:
            return _bad(request, "send a JSON object: {lead_id} or {advertiser, since}")
        lead_id = body.get("lead_id")
        if isinstance(lead_id, str):
            entry = await ops.find_dead(self.queue, self.advertisers, LeadId(lead_id))
            if entry is None:
                return problem_response(
                    404, "not-found", "Not found", "no dead letter for this lead", request.path
                )
            moved = await self.queue.replay(entry.advertiser, [entry], ops.now_ms())
            return _json({"replayed": moved, "advertiser": entry.advertiser})
        advertiser = self.advertiser(body.get("advertiser"))
        if advertiser is None:
            return _unknown_advertiser(request)
        since = body.get("since")
        if not isinstance(since, str | int):
            return _bad(request, "give since: a duration back (2h), an ISO instant or epoch ms")
        try:
            since_ms = ops.parse_since(str(since))
        except ValueError as error:
            return _bad(request, str(error))
        moved = await ops.replay_since(self.queue, advertiser, since_ms)
        return _json({"replayed": moved, "advertiser": advertiser})

    async def enable(self, request: web.Request) -> web.Response:
        body = await _body(request)
        advertiser = self.advertiser(None if body is None else body.get("advertiser"))
        if advertiser is None:
            return _unknown_advertiser(request)
        was_disabled = await self.queue.enable(advertiser)
        return _json({"advertiser": advertiser, "was_disabled": was_disabled})


def add_admin_routes(
    app: web.Application,
    queue: Queue,
    token: str | None,
    advertisers: Sequence[AdvertiserId],
) -> None:
    """Add the delivery admin routes to ``app`` (none without a token: they answer 404)."""
    if not token:
        return
    admin = _Admin(queue, token, advertisers)

    def guarded(handler: Handler) -> Handler:
        async def check(request: web.Request) -> web.StreamResponse:
            if not admin.authorized(request):
                return problem_response(
                    401,
                    "unauthorized",
                    "Unauthorized",
                    "send the admin token as 'Authorization: Bearer <token>'",
                    request.path,
                    {"WWW-Authenticate": 'Bearer realm="leadgate-admin"'},
                )
            return await handler(request)

        return check

    app.router.add_get(PREFIX, guarded(admin.state), allow_head=False)
    app.router.add_get(f"{PREFIX}/dead", guarded(admin.dead), allow_head=False)
    app.router.add_post(f"{PREFIX}/replay", guarded(admin.replay))
    app.router.add_post(f"{PREFIX}/enable", guarded(admin.enable))


async def _body(request: web.Request) -> dict[str, object] | None:
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        return None
    return body if isinstance(body, dict) else None


def _json(data: object) -> web.Response:
    return web.Response(body=orjson.dumps(data), content_type="application/json")


def _bad(request: web.Request, detail: str) -> web.Response:
    return problem_response(400, "bad-request", "Bad request", detail, request.path)


def _unknown_advertiser(request: web.Request) -> web.Response:
    return problem_response(
        404, "not-found", "Not found", "no such advertiser in the configuration", request.path
    )
