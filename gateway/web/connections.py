"""Connections that cannot deny service: deadlines on slow and idle clients, a bound on open
connections, and aiohttp's own error pages replaced.

aiohttp bounds neither how long a client may take to send a request's head nor how many
connections a process holds, so a client trickling a header a byte at a time holds a
connection (and a file descriptor) for as long as it likes, and enough of them exhaust the
process's open-file limit: new clients are reset and a config reload fails. Each listener
(``GuardedSite``) therefore makes its connections with a ``ConnectionGuard``:

- **head deadline**: a request's line and headers must be complete within
  ``head_timeout_s`` of the connection opening, or of the first byte of the next request on a
  kept-alive connection; otherwise the connection is closed, after a raw ``408`` when it
  started its first request (a later one could read it as the answer to another request);
- **idle deadline**: a kept-alive connection with no request for ``keepalive_timeout_s`` is
  closed (aiohttp's own keep-alive timer is left at its long default; this one is exact);
- **body deadline**: enforced where bodies are read (``web.body.read_body``: 408 problem+json);
- **bound**: beyond ``max_connections`` open connections, a new one gets a raw ``503`` with
  ``Retry-After`` and ``Connection: close`` and is closed, instead of the process running out
  of file descriptors.

The phase of a connection changes on three events: bytes arrive (idle -> head), the handler
starts (head -> busy, no deadline: the body and store deadlines bound what follows), the
handler returns (busy -> idle; or busy -> closing when the answer closes the connection:
what is left of the body is discarded for at most ``CLOSE_LINGER_S``, so the client reads the
answer rather than a reset). One timer per connection, moved lazily (a later deadline waits
for the timer to fire and re-arms it), so a request on a kept-alive connection costs a few
attribute writes.

Errors aiohttp answers itself (a malformed request line or header, a URL or header too long)
are problem+json here, never echoing what was sent, and are not logged with the request's
text (it may hold an API key or an email): only counted.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol, cast

import orjson
from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

LOG = logging.getLogger("leadgate.web")
#: A refused connection is read (and discarded) this long before it is closed, so the client
#: reads the 503 instead of a reset (closing with unread input sends RST).
REFUSAL_LINGER_S = 1.0
#: At most this many refused connections linger at once; beyond, they are closed at once.
REFUSAL_MAX_LINGERING = 64
#: An answer that closes its connection (a 408 on a slow body, an error) is followed by this
#: long at most of reading and discarding what the client still sends.
CLOSE_LINGER_S = 1.0
_REFUSAL_MAX_BYTES = 65536


class Phase(enum.Enum):
    HEAD = "head"  # waiting for a request's line and headers
    BUSY = "busy"  # a request is being handled
    IDLE = "idle"  # kept alive between requests
    CLOSING = "closing"  # answered with Connection: close; the rest of a body is discarded


@dataclass(frozen=True, slots=True)
class Limits:
    """What a listener allows, read at each connection and request (a reload changes it)."""

    head_timeout_s: float
    keepalive_timeout_s: float
    max_connections: int


class ConnectionEvents(Protocol):
    """Told about connections, for metrics (``observe.connections``): nothing from the
    request, only the listener's fixed name."""

    def opened(self) -> None: ...

    def closed(self) -> None: ...

    def refused(self) -> None: ...

    def timed_out(self, phase: str) -> None:
        """``head``, ``idle`` or ``body``."""
        ...

    def malformed(self, status: int) -> None:
        """A request aiohttp refused before any handler (bad request line or headers)."""
        ...


def _raw_problem(status: int, reason: str, slug: str, detail: str, retry_after_s: int) -> bytes:
    body = orjson.dumps(
        {
            "type": f"urn:leadgate:problem:{slug}",
            "title": reason,
            "status": status,
            "detail": detail,
        }
    )
    head = (
        f"HTTP/1.1 {status} {reason}\r\n"
        "Content-Type: application/problem+json\r\n"
        f"Content-Length: {len(body)}\r\n"
        + (f"Retry-After: {retry_after_s}\r\n" if retry_after_s else "")
        + "Connection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


REFUSED_RESPONSE = _raw_problem(
    503,
    "Service Unavailable",
    "too-many-connections",
    "the gateway holds as many connections as it allows; retry shortly",
    1,
)
HEAD_TIMEOUT_RESPONSE = _raw_problem(
    408,
    "Request Timeout",
    "request-timeout",
    "the request line and headers did not arrive in time",
    0,
)


class ConnectionGuard:
    """One listener's connections: how many are open, their deadlines, the refusals.

    ``name``: the listener (``public``, ``admin``, ``metrics``) for metrics; ``limits``:
    called at each connection and request; ``events``: metrics."""

    def __init__(self, name: str, limits: Callable[[], Limits], events: ConnectionEvents) -> None:
        self.name = name
        self.limits = limits
        self.events = events
        self.open = 0
        self.lingering = 0

    def protocol_factory(
        self, server: web.Server, handler_args: dict[str, Any]
    ) -> Callable[[], asyncio.BaseProtocol]:
        """What ``loop.create_server`` calls for each accepted connection."""
        loop = asyncio.get_running_loop()

        def make() -> asyncio.BaseProtocol:
            if self.open >= self.limits().max_connections:
                return _Refusal(self, loop)
            return GuardedHandler(self, server, loop=loop, **handler_args)

        return make


class GuardedHandler(RequestHandler):
    """aiohttp's request handler with a connection's deadlines and a problem+json error page
    for what aiohttp refuses itself."""

    __slots__ = ("_answered", "_deadline", "_guard", "_guard_open", "_partial", "_phase", "_timer")

    def __init__(self, guard: ConnectionGuard, manager: web.Server, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._guard = guard
        self._guard_open = False
        self._phase = Phase.HEAD
        self._partial = False
        self._answered = False
        self._deadline: float | None = None
        self._timer: asyncio.TimerHandle | None = None

    # --- the connection's life --------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._guard.open += 1
        self._guard_open = True
        self._guard.events.opened()
        self._wait_for_head(partial=False)

    def data_received(self, data: bytes) -> None:
        phase = self._phase
        if phase is Phase.IDLE:
            self._wait_for_head(partial=True)
        elif phase is Phase.HEAD:
            self._partial = True
        super().data_received(data)

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._guard_open:
            self._guard_open = False
            self._guard.open -= 1
            self._guard.events.closed()
        super().connection_lost(exc)

    # --- phases (the middleware calls request_started and request_finished) -----------------

    def request_started(self) -> None:
        self._phase = Phase.BUSY
        self._deadline = None

    def request_finished(self, *, closing: bool = False) -> None:
        """The handler returned; ``closing``: its answer closes the connection."""
        self._answered = True
        if closing:
            self._phase = Phase.CLOSING
            self._arm(self._loop.time() + CLOSE_LINGER_S)
            return
        self._phase = Phase.IDLE
        self._arm(self._loop.time() + self._guard.limits().keepalive_timeout_s)

    def body_timed_out(self) -> None:
        self._guard.events.timed_out("body")

    def _wait_for_head(self, *, partial: bool) -> None:
        self._phase = Phase.HEAD
        self._partial = partial
        self._arm(self._loop.time() + self._guard.limits().head_timeout_s)

    def _arm(self, deadline: float) -> None:
        self._deadline = deadline
        timer = self._timer
        if timer is not None and timer.when() <= deadline:
            return  # fires first, then re-arms for the later deadline
        if timer is not None:
            timer.cancel()
        self._timer = self._loop.call_at(deadline, self._expire)

    def _expire(self) -> None:
        self._timer = None
        deadline = self._deadline
        transport = self.transport
        if deadline is None or transport is None or self._phase is Phase.BUSY:
            return
        if self._loop.time() < deadline:
            self._timer = self._loop.call_at(deadline, self._expire)
            return
        phase = self._phase
        if phase is not Phase.CLOSING:
            self._guard.events.timed_out(phase.value)
        if phase is Phase.HEAD and self._partial and not self._answered:
            transport.write(HEAD_TIMEOUT_RESPONSE)
        self.force_close()

    # --- aiohttp's own error pages ------------------------------------------------------------

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """What aiohttp answers when no handler can: a request it could not parse (400), or
        an error that escaped every middleware (500). Problem+json naming no value; logged
        without the request's text or the client's address."""
        if request.writer.output_size > 0:
            raise ConnectionError("the response was already started")
        if status >= 500:
            LOG.error("unhandled error outside the handlers", exc_info=exc)
            slug, title, detail = "internal", "Internal error", "unexpected error"
        else:
            self._guard.events.malformed(status)
            slug, title = "bad-request", "Bad request"
            detail = "the request line or headers are malformed or too long"
        body = orjson.dumps(
            {
                "type": f"urn:leadgate:problem:{slug}",
                "title": title,
                "status": status,
                "detail": detail,
            }
        )
        response = web.Response(status=status, body=body, content_type="application/problem+json")
        response.force_close()
        return response


class _Refusal(asyncio.Protocol):
    """A connection over the bound: the 503, then a short linger reading what the client
    sends (so it reads the answer rather than a reset), then close."""

    def __init__(self, guard: ConnectionGuard, loop: asyncio.AbstractEventLoop) -> None:
        self._guard = guard
        self._loop = loop
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._read = 0
        self._lingers = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses; they have its methods.
        transport = cast(asyncio.Transport, transport)
        self._transport = transport
        self._guard.events.refused()
        transport.write(REFUSED_RESPONSE)
        if self._guard.lingering >= REFUSAL_MAX_LINGERING or not transport.can_write_eof():
            transport.close()
            return
        transport.write_eof()
        self._lingers = True
        self._guard.lingering += 1
        self._timer = self._loop.call_later(REFUSAL_LINGER_S, transport.close)

    def data_received(self, data: bytes) -> None:
        self._read += len(data)
        if self._read > _REFUSAL_MAX_BYTES and self._transport is not None:
            self._transport.close()

    def eof_received(self) -> bool:
        return False  # the client is done: close

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._lingers:
            self._lingers = False
            self._guard.lingering -= 1


@web.middleware
async def phases_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """A guarded connection's phases for an app without the gateway's own middleware (the
    delivery worker's ops listener, whose requests read no body): busy while the handler
    runs, then idle (or closing)."""
    protocol = request.protocol
    if not isinstance(protocol, GuardedHandler):
        return await handler(request)
    protocol.request_started()
    closing = False
    try:
        response = await handler(request)
        closing = response.keep_alive is False
        return response
    finally:
        protocol.request_finished(closing=closing)


class GuardedSite(web.BaseSite):
    """A TCP listener whose connections are made by ``guard`` (``web.TCPSite`` otherwise)."""

    __slots__ = ("_bound_port", "_guard", "_handler_args", "_host", "_port", "_reuse_port")

    def __init__(
        self,
        runner: web.BaseRunner,
        guard: ConnectionGuard,
        host: str,
        port: int,
        *,
        backlog: int = 128,
        reuse_port: bool | None = None,
    ) -> None:
        super().__init__(runner, backlog=backlog)
        self._guard = guard
        self._host = host
        self._port = port
        self._bound_port: int | None = None
        self._reuse_port = reuse_port
        # access_log=None: aiohttp's access log writes client addresses and request lines
        # (query strings can hold emails and API keys).
        self._handler_args: dict[str, Any] = {"access_log": None}

    @property
    def name(self) -> str:
        return f"http://{self._host}:{self.port}"

    @property
    def port(self) -> int:
        """The port listened on (the one the system chose for port 0, once started)."""
        return self._bound_port if self._bound_port is not None else self._port

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._guard.protocol_factory(server, self._handler_args),
            self._host,
            self._port,
            backlog=self._backlog,
            reuse_port=self._reuse_port,
        )
        sockets = self._server.sockets
        if sockets:
            self._bound_port = int(sockets[0].getsockname()[1])
