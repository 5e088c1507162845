"""The admin API, behind its own token (``LEADGATE_ADMIN_TOKEN``) and, optionally, on its own
listener (``LEADGATE_ADMIN_LISTEN``)::

    DELETE /v1/admin/identities                     erase one person {email?, phone?, region?}
    GET    /v1/admin/suppression-lists              every list and its size
    POST   /v1/admin/suppression-lists/{list}/entries   put people on a list
    DELETE /v1/admin/suppression-lists/{list}/entries   take people off a list
    GET    /v1/admin/caps?campaign=C                used / limit / reset time of every cap
    POST   /v1/admin/config/reload                  reload the config file now
    GET    /v1/admin/reports/partners?since=7d      partners ranked by net quality
    GET    /v1/admin/deliveries                     every advertiser's queue state
    GET    /v1/admin/deliveries/dead?advertiser=A&since=2h&limit=100
    POST   /v1/admin/deliveries/replay   {"lead_id": "..."} | {"advertiser": "A", "since": "2h"}
    POST   /v1/admin/deliveries/enable   {"advertiser": "A"}

``Authorization: Bearer <LEADGATE_ADMIN_TOKEN>``; a partner's or an advertiser's API key never
opens them (it is not the token). Without a token configured the routes do not exist (404).
Personal data goes in request bodies only, never in a query string (proxies log those), and
answers hold ids, codes, counts and times only; errors are problem+json naming the field.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from aiohttp import web

from gateway.config.model import Config
from gateway.delivery import ops
from gateway.delivery.queue_base import Queue
from gateway.errors import (
    BadRequest,
    FieldProblem,
    InvalidFields,
    InvalidLead,
    InvalidValue,
    NotFound,
    RequestError,
    Unauthorized,
)
from gateway.leads.fingerprint import Fingerprinter
from gateway.observe import caps as capusage
from gateway.privacy import suppression
from gateway.privacy.erasure import Eraser, Person
from gateway.quality import report
from gateway.quality.ledger import QualityLedger
from gateway.storage.base import Store
from gateway.types import AdvertiserId, LeadId
from gateway.web import body as bodies
from gateway.web.auth import authenticate
from gateway.web.json_answer import json_answer
from gateway.web.problems import Handler, problem_response, route_path
from gateway.web.state import ADDRESS_LIMITS

PREFIX = "/v1/admin"
#: An admin body holds at most a few thousand people; a bigger one is a mistake.
MAX_BODY_BYTES = 4 * 1024 * 1024
#: People put on or taken off a list per request (a CSV goes through ``leadgate suppress``).
MAX_ENTRIES = 10_000


class Reloader(Protocol):
    """What the reload route needs (``app.reload.ConfigReloader``)."""

    path: str
    refusal: tuple[str, ...]

    async def reload(self, *, trigger: str) -> Config | None: ...


@dataclass
class Admin:
    """What the admin routes act on; ``config`` answers the configuration served now."""

    config: Callable[[], Config]
    store: Store
    queue: Queue
    fingerprinter: Fingerprinter
    ledger: QualityLedger
    token: str
    reloader: Reloader | None = None
    clock: Callable[[], float] = time.time

    def authorized(self, request: web.Request) -> bool:
        auth = request.headers.get("Authorization", "")
        if auth[:7].lower() != "bearer ":
            return False
        return hmac.compare_digest(auth[7:].strip().encode(), self.token.encode())

    async def _body(self, request: web.Request) -> dict[str, Any]:
        """The JSON object body (at most ``MAX_BODY_BYTES``, within the body deadline)."""
        raw = await bodies.read_body(request, MAX_BODY_BYTES, self.config().server.body_timeout_s)
        try:
            return bodies.parse_json_object(raw)
        except BadRequest:
            raise RequestError("the body must be a JSON object") from None
        except InvalidLead as invalid:
            # Repeated names, or no object at all: the admin API's own problem types.
            if invalid.problems[0].field == "body":
                raise RequestError("the body must be a JSON object") from None
            raise InvalidFields(invalid.problems) from None

    @property
    def advertisers(self) -> list[AdvertiserId]:
        return list(self.config().advertisers)

    def advertiser(self, value: object) -> AdvertiserId | None:
        if isinstance(value, str) and value in self.config().advertisers:
            return AdvertiserId(value)
        return None

    # --- erasure ---------------------------------------------------------------------------

    async def erase_identity(self, request: web.Request) -> web.StreamResponse:
        body = await self._body(request)
        _only(body, ("email", "phone", "region"))
        try:
            person = Person.parse(
                _text(body, "email"), _text(body, "phone"), _text(body, "region") or "FR"
            )
        except InvalidValue as bad:
            raise InvalidFields([FieldProblem(bad.field, bad.why)]) from None
        eraser = Eraser(self.config(), self.fingerprinter, self.store, self.queue, clock=self.clock)
        return json_answer((await eraser.erase(person)).to_json())

    # --- suppression lists -----------------------------------------------------------------

    def _list_id(self, request: web.Request) -> str:
        list_id = request.match_info["list"]
        if list_id not in self.config().suppression_lists:
            raise NotFound("no such suppression list in the configuration")
        return list_id

    async def suppression_lists(self, _: web.Request) -> web.StreamResponse:
        lists = []
        for list_id, declared in self.config().suppression_lists.items():
            size = await self.store.suppression_size(list_id)
            lists.append(
                {"id": list_id, "name": declared.name, "network": declared.network, "size": size}
            )
        return json_answer({"suppression_lists": lists})

    async def suppression_add(self, request: web.Request) -> web.StreamResponse:
        return await self._suppression_change(request, add=True)

    async def suppression_remove(self, request: web.Request) -> web.StreamResponse:
        return await self._suppression_change(request, add=False)

    async def _suppression_change(self, request: web.Request, *, add: bool) -> web.StreamResponse:
        list_id, store = self._list_id(request), self.store
        body = await self._body(request)
        _only(body, ("email", "phone", "region", "entries"))
        region = _text(body, "region") or "FR"
        if "entries" in body:
            entries, where = body["entries"], "entries/"
            if not isinstance(entries, list) or not entries:
                raise InvalidFields([FieldProblem("entries", "must be a non-empty list")])
            if len(entries) > MAX_ENTRIES:
                raise InvalidFields([FieldProblem("entries", f"at most {MAX_ENTRIES} per request")])
        else:
            entries, where = [body], ""
        found: list[str] = []
        problems: list[FieldProblem] = []
        for n, entry in enumerate(entries):
            at = f"{where}{n}/" if where else ""
            if not isinstance(entry, dict):
                problems.append(FieldProblem(at.rstrip("/") or "body", "must be an object"))
                continue
            email, phone = entry.get("email"), entry.get("phone")
            if not (isinstance(email, str) and email) and not (isinstance(phone, str) and phone):
                problems.append(FieldProblem(f"{at}email", "give an email and/or a phone"))
                continue
            for name, value in (("email", email), ("phone", phone)):
                if value is None or value == "":
                    continue
                if not isinstance(value, str):
                    problems.append(FieldProblem(f"{at}{name}", "must be a string"))
                    continue
                try:
                    found += suppression.identity_keys(
                        self.fingerprinter,
                        email=value if name == "email" else None,
                        phone=value if name == "phone" else None,
                        region=region,
                        every_key=not add,
                    )
                except ValueError as bad:
                    problems.append(FieldProblem(f"{at}{name}", str(bad)))
        if problems:
            # All or nothing: a list half-changed by a request the caller sees refused would
            # leave them guessing what to send again.
            raise InvalidFields(problems)
        changed = await store.suppression_change(list_id, found, add=add)
        return json_answer(
            {
                "list": list_id,
                "people": len(entries),
                ("added" if add else "removed"): changed,
                "size": await store.suppression_size(list_id),
            }
        )

    # --- caps, reload, report --------------------------------------------------------------

    async def caps(self, request: web.Request) -> web.StreamResponse:
        config = self.config()
        campaign = request.rel_url.query.get("campaign")
        if campaign is not None and campaign not in config.campaigns:
            raise NotFound("no such campaign in the configuration")
        rows = await capusage.caps_status(config, self.store, self.clock(), campaign)
        return json_answer({"caps": rows})

    async def reload(self, _: web.Request) -> web.StreamResponse:
        if self.reloader is None:
            raise NotFound("this process was not started from a config file it can reload")
        previous = self.config().checksum
        config = await self.reloader.reload(trigger="api")
        if config is None and self.reloader.refusal:
            raise InvalidFields(
                # The file's problems as check-config prints them, under one field.
                [FieldProblem("config", issue) for issue in self.reloader.refusal]
            )
        return json_answer(
            {
                "reloaded": config is not None,
                "checksum": self.config().checksum,
                "previous_checksum": previous,
            }
        )

    async def partner_report(self, request: web.Request) -> web.StreamResponse:
        query = request.rel_url.query
        now_ms = int(self.clock() * 1000)
        campaign = query.get("campaign")
        if campaign is not None and campaign not in self.config().campaigns:
            raise NotFound("no such campaign in the configuration")
        try:
            body = await report.report_json(
                self.ledger.read,
                self.config(),
                since=query.get("since", report.DEFAULT_SINCE),
                now_ms=now_ms,
                campaign=campaign,
            )
        except ValueError as bad:
            raise InvalidFields([FieldProblem("since", str(bad))]) from None
        return json_answer(body)

    # --- deliveries ------------------------------------------------------------------------

    async def deliveries(self, _: web.Request) -> web.StreamResponse:
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
        return json_answer({"advertisers": body})

    async def dead(self, request: web.Request) -> web.StreamResponse:
        query = request.rel_url.query
        chosen = self.advertisers
        if "advertiser" in query:
            one = self.advertiser(query["advertiser"])
            if one is None:
                raise NotFound("no such advertiser in the configuration")
            chosen = [one]
        try:
            since = ops.parse_since(query["since"]) if "since" in query else 0
        except ValueError as error:
            raise InvalidFields([FieldProblem("since", str(error))]) from None
        try:
            limit = int(query.get("limit", "100"))
        except ValueError:
            limit = 0
        if not 1 <= limit <= 10_000:
            raise InvalidFields([FieldProblem("limit", "must be a number from 1 to 10000")])
        now = ops.now_ms()
        rows = []
        for advertiser in chosen:
            rows += [
                ops.dead_row(e, now)
                for e in await ops.dead_letters(self.queue, advertiser, since, limit)
            ]
        return json_answer({"dead_letters": rows})

    async def replay(self, request: web.Request) -> web.StreamResponse:
        body = await self._body(request)
        lead_id = body.get("lead_id")
        if isinstance(lead_id, str):
            entry = await ops.find_dead(self.queue, self.advertisers, LeadId(lead_id))
            if entry is None:
                raise NotFound("no dead letter for this lead")
            moved = await self.queue.replay(entry.advertiser, [entry], ops.now_ms())
            return json_answer({"replayed": moved, "advertiser": entry.advertiser})
        advertiser = self.advertiser(body.get("advertiser"))
        if advertiser is None:
            raise NotFound("no such advertiser in the configuration (or give a lead_id)")
        since = body.get("since")
        if not isinstance(since, str | int):
            raise InvalidFields(
                [FieldProblem("since", "a duration back (2h), an ISO instant or epoch ms")]
            )
        try:
            since_ms = ops.parse_since(str(since))
        except ValueError as error:
            raise InvalidFields([FieldProblem("since", str(error))]) from None
        moved = await ops.replay_since(self.queue, advertiser, since_ms)
        return json_answer({"replayed": moved, "advertiser": advertiser})

    async def enable(self, request: web.Request) -> web.StreamResponse:
        body = await self._body(request)
        advertiser = self.advertiser(body.get("advertiser"))
        if advertiser is None:
            raise NotFound("no such advertiser in the configuration")
        was_disabled = await self.queue.enable(advertiser)
        return json_answer({"advertiser": advertiser, "was_disabled": was_disabled})


def add_admin_routes(app: web.Application, admin: Admin | None) -> None:
    """Add the admin routes to ``app`` (none without an admin: they answer 404)."""
    if admin is None or not admin.token:
        return

    def guarded(handler: Handler) -> Handler:
        async def check(request: web.Request) -> web.StreamResponse:
            try:
                authenticate(
                    request,
                    admin.config().server,
                    lambda r: True if admin.authorized(r) else None,
                    "send the admin token as 'Authorization: Bearer <token>'",
                    limits=request.app.get(ADDRESS_LIMITS),
                )
            except Unauthorized as refused:
                return problem_response(
                    401,
                    "unauthorized",
                    "Unauthorized",
                    refused.detail,
                    route_path(request),
                    {"WWW-Authenticate": 'Bearer realm="leadgate-admin"'},
                )
            return await handler(request)

        return check

    routes: Sequence[tuple[str, str, Handler]] = (
        ("DELETE", "/identities", admin.erase_identity),
        ("GET", "/suppression-lists", admin.suppression_lists),
        ("POST", "/suppression-lists/{list}/entries", admin.suppression_add),
        ("DELETE", "/suppression-lists/{list}/entries", admin.suppression_remove),
        ("GET", "/caps", admin.caps),
        ("POST", "/config/reload", admin.reload),
        ("GET", "/reports/partners", admin.partner_report),
        ("GET", "/deliveries", admin.deliveries),
        ("GET", "/deliveries/dead", admin.dead),
        ("POST", "/deliveries/replay", admin.replay),
        ("POST", "/deliveries/enable", admin.enable),
    )
    for method, path, handler in routes:
        if method == "GET":
            app.router.add_get(PREFIX + path, guarded(handler), allow_head=False)
        else:
            app.router.add_route(method, PREFIX + path, guarded(handler))


def _only(body: dict[str, Any], allowed: Sequence[str]) -> None:
    unknown = [name for name in body if name not in allowed]
    if unknown:
        raise InvalidFields(
            [FieldProblem(name, f"unknown field (known: {', '.join(allowed)})") for name in unknown]
        )


def _text(body: dict[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidFields([FieldProblem(name, "must be a string")])
    return value
