"""``JsonAnswer`` against aiohttp's own ``web.Response``: the same bytes on the wire.

Both answer the same raw requests on one real socket (HTTP/1.0 and 1.1, every ``Connection``
header, GET, HEAD and POST, statuses with and without headers of their own, a forced close);
what a client reads must be the same: the status line, every header (``Date`` aside: it is the
second's), the body, and whether the connection is kept for a next request.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from gateway.web.json_answer import JsonAnswer, json_answer

BODY = b'{"decision":"accepted","reasons":[]}'
_DATE = re.compile(r"[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT")


def _answer(request: web.Request, *, ours: bool) -> web.StreamResponse:
    status = int(request.match_info["status"])
    headers = {"Retry-After": "3"} if request.query.get("retry") else None
    kind = request.query.get("type", "application/json")
    if ours:
        response: web.StreamResponse = JsonAnswer(
            BODY, status=status, content_type=kind, headers=headers
        )
    else:
        response = web.Response(body=BODY, status=status, content_type=kind, headers=headers)
    if request.query.get("close"):
        response.force_close()
    return response


async def _theirs(request: web.Request) -> web.StreamResponse:
    await request.read()
    return _answer(request, ours=False)


async def _ours(request: web.Request) -> web.StreamResponse:
    await request.read()
    return _answer(request, ours=True)


@pytest.fixture
async def port() -> AsyncIterator[int]:
    app = web.Application()
    app.router.add_route("*", "/theirs/{status}", _theirs)
    app.router.add_route("*", "/ours/{status}", _ours)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    assert server.port is not None
    yield server.port
    await server.close()


class Read:
    """One answer as a client reads it."""

    def __init__(self, status_line: str, headers: dict[str, str], body: bytes, kept: bool):
        self.status_line, self.headers, self.body, self.kept = status_line, headers, body, kept


async def _exchange(port: int, head: bytes, method: str) -> Read:
    """Send ``head`` (and a body for a POST), read the answer, then try a second request on
    the same connection: ``kept`` is whether it was answered."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head)
        await writer.drain()
        async with asyncio.timeout(5):
            status_line = (await reader.readline()).decode().rstrip("\r\n")
            headers: dict[str, str] = {}
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode().rstrip("\r\n").partition(": ")
                assert name.lower() not in {h.lower() for h in headers}, f"{name} twice"
                headers[name] = value
            length = int(headers.get("Content-Length", "0"))
            body = b"" if method == "HEAD" else await reader.readexactly(length)
            writer.write(b"GET /ours/200 HTTP/1.1\r\nHost: t\r\n\r\n")
            await writer.drain()
            kept = bool(await reader.readline())
        return Read(status_line, headers, body, kept)
    finally:
        writer.close()


@pytest.mark.parametrize("version", ["1.0", "1.1"])
@pytest.mark.parametrize("connection", [None, "keep-alive", "close"])
@pytest.mark.parametrize("method", ["GET", "HEAD", "POST"])
@pytest.mark.parametrize(
    "query",
    ["", "?retry=1", "?close=1", "?type=application/problem%2Bjson&retry=1"],
)
@pytest.mark.parametrize("status", [200, 429, 503, 599])
async def test_the_same_answer_as_aiohttps_response(
    port: int, version: str, connection: str | None, method: str, query: str, status: int
) -> None:
    reads = []
    for side in ("theirs", "ours"):
        head = f"{method} /{side}/{status}{query} HTTP/{version}\r\nHost: t\r\n"
        if connection is not None:
            head += f"Connection: {connection}\r\n"
        if method == "POST":
            head += "Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
        else:
            head += "\r\n"
        reads.append(await _exchange(port, head.encode(), method))
    theirs, ours = reads
    assert ours.status_line == theirs.status_line
    assert _DATE.fullmatch(ours.headers.pop("Date"))
    theirs.headers.pop("Date")
    assert ours.headers == theirs.headers
    assert ours.body == theirs.body
    assert ours.kept == theirs.kept
    assert ours.body == (b"" if method == "HEAD" else BODY)


@pytest.mark.parametrize("status", [100, 101, 199, 204, 304, 1000])
def test_a_status_without_a_body_is_refused(status: int) -> None:
    with pytest.raises(ValueError, match=str(status)):
        JsonAnswer(BODY, status=status)


@pytest.mark.parametrize(
    "headers",
    [
        {"Retry-After": "3\r\nSet-Cookie: x=1"},  # a header smuggled into a value
        {"Retry-After\r\nX": "3"},
        {"Bad Name": "1"},
        {"X-Name": "caf\u00e9"},
        {"Content-Length": "3"},  # written by the answer itself
        {"connection": "close"},
    ],
)
def test_headers_that_would_break_the_head_are_refused(headers: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="not a header a JSON answer can carry"):
        JsonAnswer(BODY, headers=headers)


def test_its_own_headers_are_readable_in_process() -> None:
    answer = json_answer({"a": 1}, status=429, headers={"Retry-After": "2"})
    assert answer.status == 429
    assert answer.reason == "Too Many Requests"
    assert answer.body == b'{"a":1}'
    assert answer.headers["Retry-After"] == "2"
