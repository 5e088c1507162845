"""RFC 9457 problem+json: the one place errors become HTTP answers."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import orjson
from aiohttp import web

from gateway.errors import (
    IdempotencyInProgress,
    InvalidFields,
    RateLimited,
    RequestError,
    StoreUnavailable,
)
from gateway.web.state import OBSERVER

LOG = logging.getLogger("leadgate.web")
CONTENT_TYPE = "application/problem+json"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def problem_body(error: RequestError, instance: str) -> dict[str, object]:
    body: dict[str, object] = {
        "type": f"urn:leadgate:problem:{error.type_slug}",
        "title": error.title,
        "status": error.status,
        "detail": error.detail,
        "instance": instance,
    }
    if isinstance(error, InvalidFields):
        body["errors"] = [{"field": p.field, "message": p.message} for p in error.problems]
    return body


def problem_response(
    status: int,
    slug: str,
    title: str,
    detail: str,
    instance: str,
    headers: dict[str, str] | None = None,
) -> web.Response:
    body = {
        "type": f"urn:leadgate:problem:{slug}",
        "title": title,
        "status": status,
        "detail": detail,
        "instance": instance,
    }
    return web.Response(
        body=orjson.dumps(body), status=status, content_type=CONTENT_TYPE, headers=headers
    )


def render(error: RequestError, instance: str) -> web.Response:
    headers: dict[str, str] = {}
    if isinstance(error, RateLimited | IdempotencyInProgress):
        headers["Retry-After"] = str(error.retry_after_s)
    if error.status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="leadgate"'
    return web.Response(
        body=orjson.dumps(problem_body(error, instance)),
        status=error.status,
        content_type=CONTENT_TYPE,
        headers=headers,
    )


_HTTP_SLUGS = {
    400: ("bad-request", "Bad request"),
    404: ("not-found", "Not found"),
    405: ("method-not-allowed", "Method not allowed"),
    413: ("payload-too-large", "Payload too large"),
    415: ("unsupported-media-type", "Unsupported media type"),
}


@web.middleware
async def problems_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    path = request.path
    try:
        return await handler(request)
    except RequestError as error:
        return render(error, path)
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
            path,
            {"Retry-After": str(error.retry_after_s)},
        )
    except web.HTTPException as http:
        if http.status < 400:
            raise
        slug, title = _HTTP_SLUGS.get(http.status, ("http-error", http.reason))
        headers = {"Allow": http.headers["Allow"]} if "Allow" in http.headers else None
        return problem_response(http.status, slug, title, http.reason, path, headers)
    except Exception:
        LOG.exception("unhandled error", extra={"fields": {"path": path}})
        return problem_response(500, "internal", "Internal error", "unexpected error", path)
