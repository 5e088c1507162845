"""HTTP on loopback to the processes a test started, one bounded exchange at a time.

``request`` is synchronous (``urllib``): the tests of processes and Prometheus, and the health
probes of ``processes``. ``post_lead`` and ``get_status`` are asynchronous (``aiohttp``, through
the ``http`` fixture) for the tests that keep requests in flight while they signal or crash a
process. Both answer a ``Reply``; no exchange waits longer than ``REQUEST_TIMEOUT_S``.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp
from multidict import CIMultiDict, CIMultiDictProxy

#: Any single HTTP exchange with a process under test (small bodies, loopback).
REQUEST_TIMEOUT_S = 10.0
#: The demo API key published at the top of ``examples/leadgate.yaml`` (partner p-mailfox).
MAILFOX_KEY = "demo-mailfox-key"


class Listening(Protocol):
    """Anything serving HTTP on loopback: a ``processes.GatewayProcess``."""

    @property
    def url(self) -> str: ...


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    #: A JSON body decoded (``{}`` when empty), any other body as text.
    body: Any
    headers: CIMultiDictProxy[str]


def decode(raw: bytes, content_type: str) -> Any:
    if "json" in content_type:
        return json.loads(raw) if raw else {}
    return raw.decode("utf-8", "replace")


def request(
    method: str,
    url: str,
    *,
    body: object = None,
    raw: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    timeout_s: float = REQUEST_TIMEOUT_S,
) -> Reply:
    """One exchange: ``body`` sent as JSON, or ``raw`` bytes as they are. An error status is
    a ``Reply`` like any other; a refused connection or a timeout raises ``OSError``."""
    data = json.dumps(body).encode() if body is not None else raw
    json_type = {"Content-Type": "application/json"} if body is not None else {}
    sent = {**json_type, **(headers or {})}
    req = urllib.request.Request(url, data=data, method=method, headers=sent)  # noqa: S310
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as response:  # noqa: S310
            status, answer, received = response.status, response.read(), response.headers
    except urllib.error.HTTPError as error:
        status, answer, received = error.code, error.read(), error.headers
    kind = received.get_content_type()
    return Reply(status, decode(answer, kind), CIMultiDictProxy(CIMultiDict(received.items())))


async def post_lead(
    http: aiohttp.ClientSession,
    gateway: Listening,
    lead: Mapping[str, object],
    *,
    api_key: str = MAILFOX_KEY,
    idempotency_key: str | None = None,
) -> Reply:
    """POST one lead as JSON to ``/v1/leads``."""
    headers = {"Authorization": f"Bearer {api_key}"}
    if idempotency_key is not None:
        headers["Idempotency-Key"] = idempotency_key
    async with http.post(f"{gateway.url}/v1/leads", json=lead, headers=headers) as response:
        answer = await response.read()
        return Reply(response.status, decode(answer, response.content_type), response.headers)


async def get_status(http: aiohttp.ClientSession, url: str) -> int:
    async with http.get(url) as response:
        await response.read()
        return response.status


def decided(reply: Reply, decision: str, reasons: list[str] | None = None) -> str:
    """Assert a 200 answer with ``decision`` (and exactly ``reasons``); its lead id."""
    assert reply.status == 200, (reply.status, reply.body)
    assert reply.body["decision"] == decision, reply.body
    if reasons is not None:
        assert reply.body["reasons"] == reasons, reply.body
    lead_id: str = reply.body["lead_id"]
    assert lead_id
    return lead_id
