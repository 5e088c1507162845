"""``python -m bench.ceiling PORT parse|validate``: a server that does only part of a lead's
work, posted the same bodies as the gateway (``python -m bench --ceilings``).

What the gateway does on top of a bare hello-world, in the order it does it; each mode stops
at one point, so its throughput is a ceiling no full pipeline on the same stack can pass:

- ``parse``: the "parse-only handler" of the bench's goals. The body is read and parsed
  (orjson), each lead answered with a decision (``accepted``) as the gateway words it: no
  validation, no rules, no store.
- ``validate``: ``parse``, then each lead's email and phone through the gateway's own
  normalizers (``gateway.leads.email.normalize_email``: email-validator;
  ``gateway.leads.phone.normalize_phone``: phonenumbers), as ``parse_lead`` calls them. A lead
  they refuse is answered ``invalid`` (a single lead with a 422 problem, as the gateway does).
  No other field, no rules, no fingerprint, no store.

The server is set up like the gateway's listener and the hello-world (aiohttp, uvloop, no
access log). It ignores the partner's API key: authentication is part of what it leaves out.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import orjson
import uvloop
from aiohttp import web

from gateway.leads.email import normalize_email
from gateway.leads.ids import new_lead_id
from gateway.leads.phone import normalize_phone

#: The bench campaign's phone region (bench/scenarios/gateway.yaml).
PHONE_REGION = "FR"
MODES = ("parse", "validate")

_JSON = "application/json"


def _accept(lead: dict[str, object]) -> dict[str, object]:
    # The gateway's answer, field for field (gateway.intake.Answer.to_json).
    return {
        "lead_id": new_lead_id(),
        "decision": "accepted",
        "reasons": [],
        "ref": lead.get("ref"),
        "campaign": lead.get("campaign"),
        "channel": lead.get("channel"),
        "test": False,
    }


def _validate(lead: dict[str, object]) -> dict[str, object]:
    problems = []
    email, phone = lead.get("email"), lead.get("phone")
    try:
        if isinstance(email, str):
            normalize_email(email)
    except ValueError as exc:
        problems.append({"field": "email", "message": str(exc)})
    try:
        if isinstance(phone, str):
            normalize_phone(phone, PHONE_REGION)
    except ValueError as exc:
        problems.append({"field": "phone", "message": str(exc)})
    if problems:
        return {"decision": "invalid", "title": "invalid lead", "problems": problems}
    return _accept(lead)


def make_app(mode: str) -> web.Application:
    """The ceiling server of ``mode`` (one of ``MODES``)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}")
    judge: Callable[[dict[str, object]], dict[str, object]] = (
        _validate if mode == "validate" else _accept
    )

    async def single(request: web.Request) -> web.Response:
        lead = orjson.loads(await request.read())
        if not isinstance(lead, dict):
            return web.Response(status=400, body=b'{"title":"not a JSON object"}')
        answer = judge(lead)
        status = 422 if answer["decision"] == "invalid" else 200
        return web.Response(status=status, body=orjson.dumps(answer), content_type=_JSON)

    async def batch(request: web.Request) -> web.Response:
        body = orjson.loads(await request.read())
        leads = body.get("leads") if isinstance(body, dict) else None
        if not isinstance(leads, list):
            return web.Response(status=400, body=b'{"title":"expected {\\"leads\\": [...]}"}')
        counts = {"accepted": 0, "invalid": 0}
        results: list[dict[str, object]] = []
        for index, lead in enumerate(leads):
            answer = judge(lead) if isinstance(lead, dict) else {"decision": "invalid"}
            counts[str(answer["decision"])] += 1
            results.append({"index": index, **answer})
        return web.Response(
            body=orjson.dumps({"results": results, "counts": counts}), content_type=_JSON
        )

    async def health(request: web.Request) -> web.Response:
        return web.Response(body=b'{"status":"ok"}', content_type=_JSON)

    app = web.Application()
    app.router.add_post("/v1/leads", single)
    app.router.add_post("/v1/leads/batch", batch)
    app.router.add_get("/healthz", health)
    return app


def main() -> None:
    port, mode = int(sys.argv[1]), sys.argv[2]
    app = make_app(mode)
    uvloop.install()
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


if __name__ == "__main__":
    main()
