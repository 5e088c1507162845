"""Turning one accepted lead into the body an advertiser's CRM understands.

Every adapter reads the same ``Source`` (the stream entry's ``record``: the lead's fields plus
``lead_id``, ``campaign``, ``partner``, ``channel``, ``ref``, ``accepted_at``) and renders
bytes with a content type. The body depends only on the lead, never on the attempt, so every
retry sends the same bytes (only the signature headers are fresh).

- ``webhook``: JSON ``{"type": "lead.accepted", "timestamp": ..., "data": {...}}`` (the
  Standard Webhooks payload shape), every field under its mapped name;
- ``salesforce``: an ``application/x-www-form-urlencoded`` post with Web-to-Lead names
  (``first_name``, ``last_name``, ``email``, ``phone``, ``zip``, ... plus ``oid`` and
  ``lead_source`` from ``static_fields``);
- ``hubspot``: the Forms submission JSON ``{"fields": [{"name", "value"}], "context": {...}}``;
- ``template``: the endpoint's ``body`` with ``{{placeholders}}`` filled in, each value escaped
  for the content type (a JSON literal, form-encoded, XML-escaped, or as is).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from operator import methodcaller
from typing import Final
from urllib.parse import quote_plus, urlencode
from xml.sax.saxutils import escape as xml_escape

import orjson

from gateway.config.delivery import PLACEHOLDER, AdapterKind, Endpoint
from gateway.leads.lead import LEAD_FIELDS

_PERSON: Final = tuple(f for f in LEAD_FIELDS if f != "consent")
#: ``price``: what the buyer of a distributed campaign's lead pays (absent otherwise).
_META: Final = ("lead_id", "campaign", "partner", "channel", "ref", "accepted_at", "price")

#: lead source -> CRM field name, per adapter; the endpoint's ``fields`` are merged over these.
DEFAULT_FIELDS: Final[Mapping[AdapterKind, Mapping[str, str]]] = {
    AdapterKind.WEBHOOK: {name: name for name in (*_META, *_PERSON, "consent", "extra", "test")},
    AdapterKind.SALESFORCE: {
        "first_name": "first_name",
        "last_name": "last_name",
        "email": "email",
        "phone": "phone",
        "company": "company",
        "city": "city",
        "postal_code": "zip",
        "country": "country",
    },
    AdapterKind.HUBSPOT: {
        "email": "email",
        "first_name": "firstname",
        "last_name": "lastname",
        "phone": "phone",
        "company": "company",
        "city": "city",
        "postal_code": "zip",
        "country": "country",
    },
    AdapterKind.TEMPLATE: {},
}


class Source:
    """The values a lead offers to a mapping or a template, by source name."""

    __slots__ = ("_accepted_at", "lead", "record")

    def __init__(self, record: Mapping[str, object]) -> None:
        lead = record.get("lead")
        self.lead: Mapping[str, object] = lead if isinstance(lead, dict) else {}
        self.record = record
        self._accepted_at: object = _UNSET

    @classmethod
    def from_bytes(cls, record: bytes) -> Source:
        data = orjson.loads(record)
        if not isinstance(data, dict):
            raise ValueError("a delivery record is a JSON object")
        return cls(data)

    def accepted_at(self) -> object:
        """The acceptance instant as ISO 8601 (computed once: the webhook adapter asks twice)."""
        if self._accepted_at is _UNSET:
            ms = self.record.get("accepted_at_ms")
            self._accepted_at = _iso_ms(ms) if isinstance(ms, int) else None
        return self._accepted_at

    def get(self, name: str) -> object:
        """The value of ``name`` (None when the lead does not have it)."""
        if name == "accepted_at":
            return self.accepted_at()
        if name in ("lead_id", "partner", "price"):
            return self.record.get(name)
        if name in ("campaign", "channel", "ref"):
            value = self.record.get(name)
            return value if value is not None else self.lead.get(name)
        part, dot, key = name.partition(".")
        if dot and part in ("extra", "consent"):
            nested = self.lead.get(part)
            return nested.get(key) if isinstance(nested, dict) else None
        return self.lead.get(name)

    def mapped(self, plan: Plan) -> dict[str, object]:
        """CRM name -> value for every mapped source the lead has (``plan``: ``compile_plan``)."""
        out: dict[str, object] = {}
        lead = self.lead
        for target, key, get in plan:
            # Most sources are plain lead fields: looked up here without a call.
            value = lead.get(key) if get is None else get(self)
            if value is not None and value != {}:
                out[target] = value
        return out


#: One mapped source: (CRM name, lead field name, getter). The getter is None for a plain lead
#: field (read directly from the lead), else a function of the ``Source``.
Plan = tuple[tuple[str, str, "Callable[[Source], object] | None"], ...]
_UNSET: Final = object()


def _iso_ms(ms: int) -> str:
    """``ms`` (epoch milliseconds) as ISO 8601 UTC with milliseconds, the second formatted
    once for every lead accepted within it."""
    second, millis = divmod(ms, 1000)
    return f"{_iso_second(second)}.{millis:03d}+00:00"


@functools.lru_cache(maxsize=256)
def _iso_second(second: int) -> str:
    return datetime.fromtimestamp(second, UTC).isoformat(timespec="seconds").removesuffix("+00:00")


def _is_plain(name: str) -> bool:
    part, dot, _ = name.partition(".")
    return name not in _META and not (dot and part in ("extra", "consent"))


def _from_record(name: str) -> Callable[[Source], object]:
    return lambda source: source.record.get(name)


def _getter(name: str) -> Callable[[Source], object] | None:
    """``Source.get(name)`` decided once per name rather than once per lead (None: a plain
    lead field)."""
    if name == "accepted_at":
        return Source.accepted_at
    if name in ("lead_id", "partner", "price"):
        return _from_record(name)
    if _is_plain(name):
        return None
    return methodcaller("get", name)


def compile_plan(mapping: Mapping[str, str | None]) -> Plan:
    """The mapping as a list of lookups, in the mapping's order (dropped sources left out)."""
    return tuple(
        (target, source, _getter(source))
        for source, target in mapping.items()
        if target is not None
    )


@dataclass(frozen=True, slots=True)
class Rendered:
    content_type: str
    body: bytes


class Adapter:
    """Renders leads for one endpoint."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self.mapping: dict[str, str | None] = {
            **DEFAULT_FIELDS[endpoint.adapter],
            **endpoint.fields,
        }
        self._plan = compile_plan(self.mapping)
        self._render: Callable[[Source], Rendered] = {
            AdapterKind.WEBHOOK: self._webhook,
            AdapterKind.SALESFORCE: self._salesforce,
            AdapterKind.HUBSPOT: self._hubspot,
            AdapterKind.TEMPLATE: self._template,
        }[endpoint.adapter]

    def render(self, record: bytes) -> Rendered:
        """Raises ``ValueError`` when ``record`` is not a delivery record (JSON object)."""
        return self._render(Source.from_bytes(record))

    def _webhook(self, source: Source) -> Rendered:
        data = {**self.endpoint.static_fields, **source.mapped(self._plan)}
        payload = {"type": "lead.accepted", "timestamp": source.accepted_at(), "data": data}
        return Rendered("application/json", orjson.dumps(payload))

    def _salesforce(self, source: Source) -> Rendered:
        fields = {**self.endpoint.static_fields, **source.mapped(self._plan)}
        pairs = [(name, _form_value(value)) for name, value in fields.items()]
        return Rendered(
            "application/x-www-form-urlencoded",
            urlencode([(n, v) for n, v in pairs if v is not None]).encode("ascii"),
        )

    def _hubspot(self, source: Source) -> Rendered:
        fields = {**self.endpoint.static_fields, **source.mapped(self._plan)}
        context: dict[str, object] = {"pageName": str(source.get("campaign") or "")}
        ip = source.get("ip")
        if ip is not None and self.mapping.get("ip", "") is not None:
            context["ipAddress"] = ip  # HubSpot attributes the submission with it
        payload = {
            "fields": [
                {"name": name, "value": text}
                for name, value in fields.items()
                if (text := _form_value(value)) is not None
            ],
            "context": context,
        }
        return Rendered("application/json", orjson.dumps(payload))

    def _template(self, source: Source) -> Rendered:
        content_type = self.endpoint.content_type
        escape = _escaper(content_type)
        body = PLACEHOLDER.sub(
            lambda m: escape(source.get(m.group(1))), self.endpoint.body_template
        )
        return Rendered(content_type, body.encode("utf-8"))


def _form_value(value: object) -> str | None:
    """A form field's text; nested values (consent, extra) are not sent as one field."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, str | int | float):
        return str(value)
    return None


def _escaper(content_type: str) -> Callable[[object], str]:
    kind = content_type.split(";", 1)[0].strip().lower()
    if kind == "application/json" or kind.endswith("+json"):
        return lambda v: orjson.dumps(v).decode("utf-8")
    if kind == "application/x-www-form-urlencoded":
        return lambda v: "" if v is None else quote_plus(_form_value(v) or "")
    if kind in ("application/xml", "text/xml", "text/html") or kind.endswith("+xml"):
        return lambda v: "" if v is None else xml_escape(_form_value(v) or "", {'"': "&quot;"})
    return lambda v: "" if v is None else (_form_value(v) or "")
