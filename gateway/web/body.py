"""Reading request bodies safely: a size bound, a deadline, the content type, JSON / form /
query parsing.

A hostile or sloppy publisher can send anything; every refusal says what was wrong, never
quoting what was sent.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterable, Mapping
from urllib.parse import parse_qsl

import orjson
from aiohttp import web

from gateway.errors import (
    BadRequest,
    FieldProblem,
    InvalidLead,
    PayloadTooLarge,
    RequestTimeout,
    UnsupportedMediaType,
)

#: Form posts may carry many fields, but not enough to make parsing itself a denial of service.
MAX_FORM_FIELDS = 200
#: The end of a JSON object member's name written with spaces before its colon (``"a" : 1``).
_SPACED_NAME_END = re.compile(rb'"[ \t\n\r]+:')


async def read_body(request: web.Request, limit: int, timeout_s: float) -> bytes:
    """The whole body, refusing more than ``limit`` bytes before reading them where possible,
    and a body still arriving ``timeout_s`` after the handler started reading it (408)."""
    length = request.content_length
    if length is not None and length > limit:
        raise PayloadTooLarge(f"body of {length} bytes exceeds the limit of {limit} bytes")
    content = request.content
    if content.is_eof():
        # The common case: the body came with the headers, nothing to wait for (no timer).
        body = content.read_nowait()
        if len(body) > limit:
            raise PayloadTooLarge(f"body exceeds the limit of {limit} bytes")
        return body
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(timeout_s):
            while True:
                chunk = await content.read(65536)
                if not chunk:
                    break
                size += len(chunk)
                if size > limit:
                    raise PayloadTooLarge(f"body exceeds the limit of {limit} bytes")
                chunks.append(chunk)
    except TimeoutError:
        raise RequestTimeout(f"the body did not arrive within {timeout_s:g} s") from None
    return b"".join(chunks)


def media_type(request: web.Request) -> str:
    """The request's media type, lower case, without parameters; "" without the header."""
    # aiohttp answers application/octet-stream when the header is missing.
    sent = request.headers.get("Content-Type")
    if sent is None:
        return ""
    if sent == "application/json":  # what nearly every post sends: no parsing
        return sent
    return request.content_type.lower()


def parse_json_object(body: bytes) -> dict[str, object]:
    """A JSON object; a member name given twice in any object is refused (422 naming it), as
    a form field given twice is: which one was meant?"""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as bad:
        # orjson's message says where (line, column), never what.
        raise BadRequest(f"the body is not valid JSON: {bad}") from None
    if not isinstance(data, dict):
        raise InvalidLead([FieldProblem("body", "expected a JSON object")])
    # orjson keeps the last of repeated names silently. Every member of the text ends its
    # name with a quote, maybe spaces, and a colon, none of which can be escaped; so when the
    # text has no more such endings than the parsed objects have members, nothing repeats.
    # Counting them is two byte scans and a walk of the parsed objects (~3 us a lead, ~2 ms
    # a 1,000-lead batch: BENCHMARKS.md); only when the count is higher (a repeat, or an
    # escaped quote before a colon inside a value) is the body parsed again, by the standard
    # library, to find which name repeats.
    # A text with one brace and no bracket is one flat object (the usual single lead): its
    # members are the dict's, without walking it.
    flat = body.count(b"{") == 1 and b"[" not in body
    if _name_ends(body) > (len(data) if flat else _members(data)):
        repeated = _repeated_names(body)
        if repeated:
            raise InvalidLead([FieldProblem(path, "given more than once") for path in repeated])
    return data


def _name_ends(body: bytes) -> int:
    ends = body.count(b'":')
    if _SPACED_NAME_END.search(body) is not None:  # rare: compact JSON has none
        ends += len(_SPACED_NAME_END.findall(body))
    return ends


def _members(value: object) -> int:
    """Members of every object in ``value``, nested ones included."""
    count = 0
    stack: list[object] = [value]
    while stack:
        item = stack.pop()
        nested: Iterable[object]
        if type(item) is dict:
            count += len(item)
            nested = item.values()
        elif type(item) is list:
            nested = item
        else:
            continue
        for child in nested:
            if type(child) is dict or type(child) is list:
                stack.append(child)
    return count


def _repeated_names(body: bytes) -> list[str]:
    """The paths (``leads/3/email``) of member names repeated within one object."""
    repeated: list[str] = []

    def pairs(items: list[tuple[str, object]]) -> dict[str, object]:
        seen: set[str] = set()
        for name, _ in items:
            if name in seen:
                repeated.append(name)
            seen.add(name)
        return dict(items)

    json.loads(body, object_pairs_hook=pairs)
    return list(dict.fromkeys(repeated))[:20]


def flat_fields(pairs: Iterable[tuple[str, str]]) -> dict[str, object]:
    """Form or query pairs as a mapping; a field given twice is refused (which one is meant?)."""
    data: dict[str, object] = {}
    repeated: list[FieldProblem] = []
    for name, value in pairs:
        if name in data:
            repeated.append(FieldProblem(name, "given more than once"))
        data[name] = value
    if repeated:
        raise InvalidLead(repeated)
    return data


def parse_form(body: bytes) -> dict[str, object]:
    try:
        text = body.decode("utf-8")
        pairs = parse_qsl(text, keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS)
    except UnicodeDecodeError:
        raise BadRequest("the form body is not valid UTF-8") from None
    except ValueError:
        raise PayloadTooLarge(f"more than {MAX_FORM_FIELDS} form fields") from None
    return flat_fields(pairs)


def parse_lead_body(request: web.Request, body: bytes) -> dict[str, object]:
    kind = media_type(request)
    if kind == "application/json" or kind.endswith("+json"):
        return parse_json_object(body)
    if kind == "application/x-www-form-urlencoded":
        return parse_form(body)
    raise UnsupportedMediaType(
        "send the lead as application/json or application/x-www-form-urlencoded"
    )


def query_fields(query: Mapping[str, str], items: Iterable[tuple[str, str]]) -> dict[str, object]:
    if len(query) > MAX_FORM_FIELDS:
        raise PayloadTooLarge(f"more than {MAX_FORM_FIELDS} query parameters")
    return flat_fields(items)
