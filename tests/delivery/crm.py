"""A real local CRM receiver for delivery tests: an aiohttp app on 127.0.0.1 that answers each
path the way a test tells it to, and records every request.

Use (or take the ``crm`` fixture from ``tests/delivery/conftest.py``, already started)::

    crm = CRM()
    await crm.start()                      # picks a free port; crm.url("/hook") is the URL
    crm.answer("/hook", Reply.error())     # 500 from now on, for POSTs to /hook
    crm.script("/hook", [Reply.throttle(2), Reply.ok()])   # 429 then 200, then the default
    crm.default = Reply.ok()               # what paths without an answer get (200 {"status":"ok"})
    got = await crm.wait_for(3, timeout_s=5)   # the first 3 requests (fails after timeout_s)
    got[0].path, got[0].headers["webhook-id"], got[0].body, got[0].json()
    await crm.stop()                       # frees hanging requests; start() again reuses the port

Replies (``Reply`` class methods):
    ok()                    200 {"status":"ok"}
    error(status=500)       any status, e.g. error(503), error(400), error(422)
    throttle(retry_after)   429 with Retry-After (seconds, or an HTTP date when given text)
    gone()                  410
    refuse()                200 {"status":"error"} (a CRM that refuses in the body)
    redirect(to="/other")   302 Location: to (a correct client never follows it)
    hang()                  never answers (until stop(); the client must time out)
    reset()                 closes the connection without an answer
    slow(delay_s)           200 after delay_s
    big(size_bytes)         200 with a body of size_bytes (the client must cap what it reads)

``crm.down()`` / ``await crm.up()`` switch the whole receiver off (connection refused: the port
is closed) and back on, on the same port, for outage tests. ``crm.requests`` lists every
request received (also the ones answered with hang/reset), in arrival order.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web
from support import free_port

#: How long stop() lets in-flight handlers finish before closing their connections.
_SHUTDOWN_S = 0.5


@dataclass(frozen=True, slots=True)
class Reply:
    status: int = 200
    body: bytes = b'{"status":"ok"}'
    headers: tuple[tuple[str, str], ...] = (("Content-Type", "application/json"),)
    delay_s: float = 0.0
    hangs: bool = False
    resets: bool = False

    @classmethod
    def ok(cls) -> Reply:
        return cls()

    @classmethod
    def error(cls, status: int = 500) -> Reply:
        return cls(status=status, body=b'{"status":"error"}')

    @classmethod
    def throttle(cls, retry_after: float | str) -> Reply:
        value = retry_after if isinstance(retry_after, str) else f"{retry_after:g}"
        return cls(status=429, body=b"slow down", headers=(("Retry-After", value),))

    @classmethod
    def gone(cls) -> Reply:
        return cls(status=410, body=b"gone")

    @classmethod
    def refuse(cls) -> Reply:
        return cls(body=b'{"status":"error","message":"duplicate lead"}')

    @classmethod
    def redirect(cls, to: str = "/elsewhere") -> Reply:
        return cls(status=302, body=b"", headers=(("Location", to),))

    @classmethod
    def hang(cls) -> Reply:
        return cls(hangs=True)

    @classmethod
    def reset(cls) -> Reply:
        return cls(resets=True)

    @classmethod
    def slow(cls, delay_s: float) -> Reply:
        return cls(delay_s=delay_s)

    @classmethod
    def big(cls, size_bytes: int) -> Reply:
        return cls(body=b"x" * size_bytes, headers=(("Content-Type", "text/plain"),))


@dataclass(frozen=True, slots=True)
class Received:
    path: str
    method: str
    #: Lower-cased names; a header sent twice keeps its last value.
    headers: dict[str, str]
    body: bytes
    at: float = field(default_factory=time.monotonic)

    def json(self) -> Any:
        return orjson.loads(self.body)

    def text(self) -> str:
        return self.body.decode("utf-8")


class CRM:
    def __init__(self) -> None:
        self.default = Reply.ok()
        self.requests: list[Received] = []
        self.port = 0
        self._answers: dict[str, Reply] = {}
        self._scripts: dict[str, deque[Reply]] = defaultdict(deque)
        self._runner: web.AppRunner | None = None
        self._released = asyncio.Event()
        self._arrived = asyncio.Condition()

    # --- control --------------------------------------------------------------------------

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def answer(self, path: str, reply: Reply) -> None:
        """Answer every request to ``path`` with ``reply`` (after any scripted replies)."""
        self._answers[path] = reply

    def script(self, path: str, replies: list[Reply]) -> None:
        """Answer the next requests to ``path`` with ``replies``, one each, in order."""
        self._scripts[path].extend(replies)

    def on(self, path: str) -> list[Received]:
        return [r for r in self.requests if r.path == path]

    async def wait_for(
        self, count: int, timeout_s: float = 5.0, path: str | None = None
    ) -> list[Received]:
        """The first ``count`` requests (to ``path`` if given); AssertionError after timeout_s."""

        def seen() -> list[Received]:
            return self.requests if path is None else self.on(path)

        async with self._arrived:
            try:
                await asyncio.wait_for(
                    self._arrived.wait_for(lambda: len(seen()) >= count), timeout_s
                )
            except TimeoutError:
                raise AssertionError(
                    f"CRM got {len(seen())} request(s) in {timeout_s}s, expected {count}"
                ) from None
        return seen()[:count]

    # --- life -----------------------------------------------------------------------------

    async def start(self) -> str:
        """Listen on 127.0.0.1 (a free port the first time, the same port after); the base URL."""
        if self.port == 0:
            self.port = free_port()
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._released = asyncio.Event()
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=_SHUTDOWN_S)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return f"http://127.0.0.1:{self.port}"

    async def stop(self) -> None:
        self._released.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def down(self) -> None:
        """Close the port: clients get connection refused until ``up()``."""
        await self.stop()

    async def up(self) -> None:
        await self.start()

    # --- the app --------------------------------------------------------------------------

    def _next_reply(self, path: str) -> Reply:
        script = self._scripts.get(path)
        if script:
            return script.popleft()
        return self._answers.get(path, self.default)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        received = Received(
            path=request.path,
            method=request.method,
            headers={k.lower(): v for k, v in request.headers.items()},
            body=body,
        )
        reply = self._next_reply(request.path)
        async with self._arrived:
            self.requests.append(received)
            self._arrived.notify_all()
        if reply.resets:
            assert request.transport is not None
            request.transport.abort()
            await self._released.wait()  # the connection is gone; nothing left to answer
        if reply.hangs:
            await self._released.wait()
        if reply.delay_s:
            await asyncio.sleep(reply.delay_s)
        return web.Response(status=reply.status, body=reply.body, headers=dict(reply.headers))
