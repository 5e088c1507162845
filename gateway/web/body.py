"""Reading request bodies safely: a size bound, the content type, JSON / form / query parsing.

A hostile or sloppy publisher can send anything; every refusal says what was wrong.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from urllib.parse import parse_qsl

import orjson
from aiohttp import web

from gateway.errors import (
    BadRequest,
    FieldProblem,
    InvalidLead,
    PayloadTooLarge,
    UnsupportedMediaType,
)

#: Form posts may carry many fields, but not enough to make parsing itself a denial of service.
MAX_FORM_FIELDS = 200


async def read_body(request: web.Request, limit: int) -> bytes:
    """The whole body, refusing more than ``limit`` bytes before reading them where possible."""
    length = request.content_length
    if length is not None and length > limit:
        raise PayloadTooLarge(f"body of {length} bytes exceeds the limit of {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await request.content.read(65536)
        if not chunk:
            break
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def media_type(request: web.Request) -> str:
    # aiohttp answers application/octet-stream when the header is missing.
    if "Content-Type" not in request.headers:
        return ""
    return request.content_type.lower()


def parse_json_object(body: bytes) -> dict[str, object]:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as bad:
        raise BadRequest(f"the body is not valid JSON: {bad}") from None
    if not isinstance(data, dict):
        raise InvalidLead([FieldProblem("body", "expected a JSON object")])
    return data


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
    shown = kind or "none"
    raise UnsupportedMediaType(
        f"content type {shown[:80]!r}: send application/json or application/x-www-form-urlencoded"
    )


def query_fields(query: Mapping[str, str], items: Iterable[tuple[str, str]]) -> dict[str, object]:
    if len(query) > MAX_FORM_FIELDS:
        raise PayloadTooLarge(f"more than {MAX_FORM_FIELDS} query parameters")
    return flat_fields(items)
