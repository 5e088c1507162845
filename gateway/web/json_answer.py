"""``JsonAnswer``: a JSON answer whose head is formatted here and sent with its body in one write.

aiohttp's ``web.Response`` is made for every kind of answer: each one builds a header multidict,
parses its content type back out of it, and walks the rules for compression, chunking, cookies
and bodies of unknown length before its head is serialized. An answer of the gateway is none of
those: a status, a JSON body of known length and a few headers of its own. That machinery was
about 40 % of a bare aiohttp hello-world's CPU, and 4 % of the instructions of a whole single
lead's request in the gateway (BENCHMARKS.md, 2026-12-07, ninth session).

``JsonAnswer`` is a ``web.StreamResponse`` that keeps aiohttp's rules where they apply to such an
answer and nothing else:

- the status line in the request's HTTP version, with the status's standard reason phrase;
- ``Content-Type``, ``Content-Length``, ``Date`` and ``Server`` as aiohttp writes them, then the
  answer's own headers (``Retry-After``, ``Idempotent-Replayed``...);
- ``Connection: close`` on HTTP/1.1 when the connection will not be kept (``force_close()``, or
  the request asked for it), ``Connection: keep-alive`` on a kept HTTP/1.0 connection;
- no body to a ``HEAD`` request (its ``Content-Length`` is still the body's);
- head and body written as one piece through the request's own stream writer (aiohttp's
  ``StreamWriter``, which counts what was written and drains).

What it leaves out: the application's ``on_response_prepare`` signal (leadgate registers none),
compression, cookies and chunking. Statuses without a body (1xx, 204, 304) are refused.
"""

from __future__ import annotations

import re
from http import HTTPStatus

import orjson
from aiohttp import web
from aiohttp.abc import AbstractStreamWriter
from aiohttp.helpers import rfc822_formatted_time
from aiohttp.http import SERVER_SOFTWARE, HttpVersion10, HttpVersion11

#: The status line after the version (``" 200 OK"``), by status.
_STATUS_LINES = {s.value: f" {s.value} {s.phrase}" for s in HTTPStatus}
#: A header's name: an RFC 9110 token.
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
#: Headers this class writes itself: an answer's own headers may not name them.
_OWN_HEADERS = frozenset(
    {"content-type", "content-length", "date", "server", "connection", "transfer-encoding"}
)


class JsonAnswer(web.StreamResponse):
    """``body`` (JSON, already encoded) answered with ``status`` and ``headers`` (names and
    values of printable ASCII, so never a line break; none of the headers this class writes
    itself: ``ValueError`` otherwise)."""

    def __init__(
        self,
        body: bytes,
        *,
        status: int = 200,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
    ) -> None:
        if not 200 <= status <= 999 or status in (204, 304):
            raise ValueError(f"a JSON answer needs a status with a body, not {status}")
        # Not a standard status: no reason phrase, as aiohttp answers it.
        self._status_line = _STATUS_LINES.get(status) or f" {status} "
        # StreamResponse's own initialiser, with the reason given: no look-up of it.
        super().__init__(status=status, reason=self._status_line[5:])
        self._json = body
        self._head_tail = f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
        if headers:
            for name, value in headers.items():
                if (
                    name.lower() in _OWN_HEADERS
                    or not _TOKEN.fullmatch(name)
                    or not (value.isascii() and value.isprintable())
                ):
                    raise ValueError(f"not a header a JSON answer can carry: {name!r}")
            self._head_tail += "".join(f"{name}: {value}\r\n" for name, value in headers.items())
            self.headers.update(headers)  # for whoever reads the answer's headers in process

    @property
    def body(self) -> bytes:
        """The JSON body, as encoded."""
        return self._json

    async def prepare(self, request: web.BaseRequest) -> AbstractStreamWriter | None:
        if self._eof_sent:
            return None
        if self._payload_writer is not None:
            return self._payload_writer
        self._req = request
        writer = self._payload_writer = request.writer
        keep_alive = self._keep_alive
        if keep_alive is None:
            keep_alive = self._keep_alive = request.keep_alive
        version = request.version
        if version == HttpVersion11:
            line = "HTTP/1.1"
            connection = "" if keep_alive else "Connection: close\r\n"
        else:
            line = f"HTTP/{version.major}.{version.minor}"
            connection = (
                "Connection: keep-alive\r\n" if keep_alive and version == HttpVersion10 else ""
            )
        head = (
            f"{line}{self._status_line}\r\n{self._head_tail}"
            f"Date: {rfc822_formatted_time()}\r\nServer: {SERVER_SOFTWARE}\r\n{connection}\r\n"
        ).encode()
        self._head = head if request.method == "HEAD" else head + self._json
        return writer

    async def write_eof(self, data: bytes = b"") -> None:
        if self._eof_sent:
            return
        writer = self._payload_writer
        if writer is None or data:
            raise RuntimeError("a JSON answer is written once prepared, with its own body only")
        await writer.write_eof(self._head)
        self._eof_sent = True
        self._req = None
        self._body_length = writer.output_size
        self._payload_writer = None


def json_answer(
    data: object, status: int = 200, headers: dict[str, str] | None = None
) -> JsonAnswer:
    """``data`` encoded with orjson, answered with ``status`` and ``headers``."""
    return JsonAnswer(orjson.dumps(data), status=status, headers=headers)
