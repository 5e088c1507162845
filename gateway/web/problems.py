"""RFC 9457 problem+json: the one place errors become HTTP answers.

An answer never quotes what was sent: a problem names a field by its path only when each part
of it is a plain name (``email``, ``leads/3/consent/at``: letters, digits, ``_ . -``,
starting with a letter) or a list index; any other part (an email or a whole JSON text sent
as a form key, say) is shown as ``(unknown field N)``, numbered in order of appearance.
``instance`` is the route's path, never the request's.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable

import orjson
from aiohttp import web

from gateway.errors import (
    FieldProblem,
    IdempotencyInProgress,
    InvalidFields,
    RateLimited,
    RequestError,
    RequestTimeout,
    StoreUnavailable,
)
from gateway.web.json_answer import JsonAnswer
from gateway.web.state import OBSERVER

LOG = logging.getLogger("leadgate.web")
CONTENT_TYPE = "application/problem+json"
#: A part of a field path shown as it is: a name, or a list index (batches hold at most
#: a few thousand items; a longer number could be a phone number).
_SHOWN_PART = re.compile(r"[A-Za-z][A-Za-z0-9_.\-]{0,63}|[0-9]{1,5}")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def safe_fields(problems: list[FieldProblem]) -> list[dict[str, str]]:
    """The problems as ``{field, message}``, each field path rendered without echoing a part
    that is not a plain name or an index (``(unknown field N)`` instead)."""
    unknown: dict[str, int] = {}
    rendered: list[dict[str, str]] = []
    for problem in problems:
        parts = []
        for part in problem.field.split("/"):
            if _SHOWN_PART.fullmatch(part):
                parts.append(part)
            else:
                parts.append(f"(unknown field {unknown.setdefault(part, len(unknown) + 1)})")
        rendered.append({"field": "/".join(parts), "message": problem.message})
    return rendered


def route_path(request: web.Request) -> str | None:
    """The matched route's path (``/v1/leads``), or None: never the path as sent."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else None


def problem_body(error: RequestError, instance: str | None) -> dict[str, object]:
    detail = error.detail
    errors: list[dict[str, str]] | None = None
    if isinstance(error, InvalidFields):
        errors = safe_fields(error.problems)
        detail = f"{len(errors)} invalid field(s): " + ", ".join(e["field"] for e in errors)
    body = _problem(error.status, error.type_slug, error.title, detail, instance)
    if errors is not None:
        body["errors"] = errors
    return body


def _problem(
    status: int, slug: str, title: str, detail: str, instance: str | None
) -> dict[str, object]:
    """A problem+json body's members (RFC 9457), ``instance`` when there is one."""
    body: dict[str, object] = {
        "type": f"urn:leadgate:problem:{slug}",
        "title": title,
        "status": status,
        "detail": detail,
    }
    if instance is not None:
        body["instance"] = instance
    return body


def problem_response(
    status: int,
    slug: str,
    title: str,
    detail: str,
    instance: str | None,
    headers: dict[str, str] | None = None,
) -> JsonAnswer:
    body = _problem(status, slug, title, detail, instance)
    return JsonAnswer(orjson.dumps(body), status=status, content_type=CONTENT_TYPE, headers=headers)


def render(error: RequestError, instance: str | None) -> JsonAnswer:
    headers: dict[str, str] = {}
    if isinstance(error, RateLimited | IdempotencyInProgress):
        headers["Retry-After"] = str(error.retry_after_s)
    if error.status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="leadgate"'
    response = JsonAnswer(
        orjson.dumps(problem_body(error, instance)),
        status=error.status,
        content_type=CONTENT_TYPE,
        headers=headers,
    )
    if isinstance(error, RequestTimeout):
        # The rest of the body may still come: the connection cannot carry another request.
        response.force_close()
    return response


_HTTP_SLUGS = {
    400: ("bad-request", "Bad request"),
    404: ("not-found", "Not found"),
    405: ("method-not-allowed", "Method not allowed"),
    413: ("payload-too-large", "Payload too large"),
    415: ("unsupported-media-type", "Unsupported media type"),
}


@web.middleware
async def problems_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    # The route's path (the problem's instance) is read only for a problem: reading it is
    # five property calls in aiohttp, and most requests have none.
    try:
        return await handler(request)
    except RequestError as error:
        return render(error, route_path(request))
    except StoreUnavailable as error:
        request.app[OBSERVER].store_errors.inc()
        if error.outcome_unknown:
            detail = (
                "the decision store did not answer in time: the lead may or may not have been "
                "accepted; retry with the same Idempotency-Key to get the real answer"
            )
        else:
            detail = "the decision store is unreachable: the lead was not accepted; retry later"
        return problem_response(
            503,
            "store-unavailable",
            "Decision store unavailable",
            detail,
            route_path(request),
            {"Retry-After": str(error.retry_after_s)},
        )
    except web.HTTPException as http:
        if http.status < 400:
            raise
        slug, title = _HTTP_SLUGS.get(http.status, ("http-error", http.reason))
        headers = {"Allow": http.headers["Allow"]} if "Allow" in http.headers else None
        # The reason phrase only: aiohttp's own texts may quote the request.
        return problem_response(http.status, slug, title, http.reason, route_path(request), headers)
    except ConnectionResetError:
        if client_gone(request):
            raise  # the caller counts a client that hung up (499), not an error
        return _internal(route_path(request))
    except Exception:
        return _internal(route_path(request))


def _internal(path: str | None) -> JsonAnswer:
    """The answer to an error nobody foresaw, logged with its traceback (route only)."""
    LOG.exception("unhandled error", extra={"fields": {"route": path or "unmatched"}})
    return problem_response(500, "internal", "Internal error", "unexpected error", path)


def client_gone(request: web.Request) -> bool:
    """Whether the client closed its connection (so no answer can reach it)."""
    transport = request.transport
    return transport is None or transport.is_closing()
