"""Who is calling: the API key of a request, and the bound on failed attempts per client
address, so no key (a partner's, an advertiser's, the admin token) can be guessed at line
rate: after ``server.auth_failure_limit.burst`` failures an address gets 429 with
``Retry-After`` (refilled at ``per_s``) whatever key it sends, until it has waited.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from aiohttp import web

from gateway.config.model import ServerSettings
from gateway.errors import RateLimited, Unauthorized
from gateway.web.ratelimit import AddressLimits, client_address, retry_after_s

T = TypeVar("T")


def api_key(request: web.Request, *, allow_query: bool) -> str:
    auth = request.headers.get("Authorization", "")
    if auth[:7].lower() == "bearer " and auth[7:].strip():
        return auth[7:].strip()
    key = request.headers.get("X-Api-Key", "").strip()
    if key:
        return key
    if allow_query:
        key = request.rel_url.query.get("api_key", "").strip()
        if key:
            return key
    raise Unauthorized("send your API key as 'Authorization: Bearer <key>' or 'X-Api-Key'")


def authenticate(
    request: web.Request,
    server: ServerSettings,
    lookup: Callable[[web.Request], T | None],
    refusal: str,
    *,
    limits: AddressLimits | None,
) -> T:
    """``lookup(request)`` (who the request's credentials name, or None), counting a failure
    (no credentials, unknown ones) against the client's address in ``limits`` (the app's
    ``ADDRESS_LIMITS``; None: not counted). Raises ``RateLimited`` for an address out of
    attempts (before looking at its key), ``Unauthorized`` with ``refusal``."""
    failures = limits.auth_failures if limits is not None else None
    address: str | None = None
    now_s = time.monotonic()
    # Nothing to look up while no address has failed: the hot path stays free.
    if failures is not None and len(failures):
        address = client_address(request, server.trusted_proxies)
        wait_s = failures.wait_s(address, server.auth_failure_limit, now_s)
        if wait_s > 0:
            raise RateLimited(
                "too many failed authentications from this address", retry_after_s(wait_s)
            )
    try:
        found = lookup(request)
        if found is None:
            raise Unauthorized(refusal)
    except Unauthorized:
        if failures is not None:
            address = address or client_address(request, server.trusted_proxies)
            failures.take(address, server.auth_failure_limit, 1, now_s)
        raise
    return found
