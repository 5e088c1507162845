"""``leadgate demo``: the gateway on its embedded store, a realistic mix of leads, a table.

It starts the real HTTP server on loopback and posts through real HTTP, like publishers would:
the same person through several channels and spellings, an always-on and a peak campaign of
one advertiser competing for the same people, caps filling up, a closed campaign, test mode,
an idempotent retry, a batch and an invalid lead; then leads of campaigns sold to buyers: one
flowing down the waterfall (a capped buyer, a filtering one, a buyer that already has the
person), a shared sale reaching two CRMs. Each of those rows is followed by its waterfall,
buyer by buyer, as the decision log records it. The delivery worker runs in-process and
forwards the accepted leads to a local CRM receiver (port 8099, the example config's endpoint
URLs; another free port, with the URLs rewritten, when 8099 is taken), which checks each
request's signature or credentials the way the advertiser's CRM would.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import hmac
import logging
import os
import socket
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
from aiohttp import web

from gateway.app.root import App
from gateway.app.settings import Settings, load_settings
from gateway.config.delivery import AuthKind, Endpoint, resolve_secret, webhook_keys
from gateway.config.model import Config
from gateway.delivery.signing import signature
from gateway.delivery.worker import Worker
from gateway.leads.email import normalize_email
from gateway.leads.phone import normalize_phone
from gateway.observe.logs import configure_logging
from gateway.types import AdvertiserId
from gateway.web.app import create_app, create_ops_app

KEYS = {
    "p-mailfox": "demo-mailfox-key",
    "p-coregia": "demo-coregia-key",
    "p-cashmoon": "demo-cashmoon-key",
    "p-compario": "demo-compario-key",
}


@dataclass(frozen=True)
class Step:
    partner: str
    who: str  # a label for the table; the demo never prints personal data
    lead: dict[str, object]
    note: str = ""
    headers: dict[str, str] = field(default_factory=dict)


MARIE = {"email": "marie.dupont@gmail.com", "first_name": "Marie", "last_name": "Dupont",
         "phone": "06 12 34 56 78", "postal_code": "75011", "consent": True}  # fmt: skip


def _people(n: int, prefix: str, mobile: str, first: int) -> list[dict[str, object]]:
    return [
        {"email": f"{prefix}{i}@example.fr", "first_name": f"Client{i}", "last_name": "Martin",
         "phone": f"+33 {mobile} {first + i:02d} 23 45 67", "postal_code": "69003", "consent": True}
        for i in range(n)
    ]  # fmt: skip


def scenario() -> list[Step]:
    steps = [
        Step("p-mailfox", "Marie", {**MARIE, "campaign": "acme-always-on", "ref": "mf-1"},
             "first sighting"),
        Step("p-coregia", "Marie (M.ARIE.DUPONT+promo@googlemail.com)",
             {**MARIE, "email": "M.ARIE.DUPONT+promo@googlemail.com", "phone": "",
              "campaign": "acme-always-on", "ref": "cg-1"},
             "another spelling, another channel"),
        Step("p-cashmoon", "Marie (marie.dupont+bf@gmail.com)",
             {"email": "marie.dupont+bf@gmail.com", "first_name": "Marie", "postal_code": "75011",
              "campaign": "acme-black-friday", "ref": "cm-1"},
             "peak campaign, same advertiser: cannibalisation"),
        Step("p-compario", "Marie", {**MARIE, "campaign": "novabank-credit", "ref": "cp-1"},
             "another advertiser, network window 1d"),
        Step("p-mailfox", "Marie", {**MARIE, "campaign": "solaris-install", "ref": "mf-4"},
             "3rd advertiser in 30 days: contact pressure"),
        Step("p-mailfox", "Jean", {"email": "jean.morel@orange.fr", "first_name": "Jean",
             "last_name": "Morel", "phone": "0698765432", "campaign": "novabank-credit",
             "ref": "mf-2"}, "new person"),
        Step("p-compario", "Jean (site channel)", {"email": "jean.morel@orange.fr",
             "first_name": "Jean", "last_name": "Morel", "phone": "0698765432",
             "campaign": "novabank-credit", "channel": "site", "ref": "cp-2"},
             "same person, 1 h later"),
        Step("p-mailfox", "Léa", {"email": "lea@example.fr", "first_name": "Léa",
             "phone": "+33 6 01 02 03 04", "campaign": "acme-summer-2026", "ref": "mf-3"},
             "peak campaign that has ended"),
        Step("p-mailfox", "Tom (throwaway mail, landline)", {"email": "tom@yopmail.com",
             "first_name": "Tom", "phone": "01 23 45 67 89", "campaign": "acme-always-on",
             "ref": "mf-5"}, "quality rules: every failed rule listed"),
        Step("p-cashmoon", "Paul (test mode)", {"email": "paul@example.fr", "first_name": "Paul",
             "postal_code": "13001", "campaign": "acme-black-friday", "test": True,
             "ref": "cm-2"}, "decided, nothing remembered"),
        Step("p-cashmoon", "Paul", {"email": "paul@example.fr", "first_name": "Paul",
             "postal_code": "13001", "campaign": "acme-black-friday", "ref": "cm-3"},
             "accepted for real",
             {"Idempotency-Key": "cm-3-attempt"}),
        Step("p-cashmoon", "Paul (retry)", {"email": "paul@example.fr", "first_name": "Paul",
             "postal_code": "13001", "campaign": "acme-black-friday", "ref": "cm-3"},
             "network timeout, publisher retries",
             {"Idempotency-Key": "cm-3-attempt"}),
    ]  # fmt: skip
    for i, person in enumerate(_people(6, "bf.client", "6", 11)):
        steps.append(
            Step(
                "p-coregia",
                f"Client{i}",
                {**person, "campaign": "acme-black-friday", "ref": f"cg-bf-{i}"},
                "Black Friday: 4/hour for this partner",
            )
        )
    steps += sale_steps()
    steps.append(
        Step(
            "p-mailfox",
            "(bad lead)",
            {
                "email": "not-an-email",
                "phone": "12",
                "first_name": "",
                "campaign": "acme-always-on",
                "ref": "mf-bad",
            },
            "invalid fields",
        )
    )
    return steps


def _installer_lead(n: int, name: str, postal_code: str, campaign: str) -> dict[str, object]:
    return {"email": f"{name.lower()}.solar{n}@example.fr", "first_name": name,
            "last_name": "Leroy", "phone": f"+33 6 44 {n:02d} 12 34",
            "postal_code": postal_code, "consent": True, "campaign": campaign,
            "ref": f"sq-{n}"}  # fmt: skip


def sale_steps() -> list[Step]:
    """Leads of the example's campaigns sold to buyers (docs/distribution.md)."""
    anne = _installer_lead(1, "Anne", "69003", "solar-quotes")
    chloe = _installer_lead(3, "Chloé", "31000", "solar-quotes")
    return [
        Step("p-mailfox", "Anne, 69003", anne, "solar: sold to Solaris (priority 1)"),
        Step("p-coregia", "Bruno, 13001", _installer_lead(2, "Bruno", "13001", "solar-quotes"),
             "Solaris again: its 2nd of the day"),
        Step("p-mailfox", "Chloé, 31000", chloe, "Solaris capped: down the waterfall"),
        Step("p-coregia", "Damien, 97400 (Réunion)",
             _installer_lead(4, "Damien", "97400", "solar-quotes"),
             "Solaris' filter: mainland only"),
        Step("p-coregia", "Anne (another partner)", {**anne, "ref": "sq-1b"},
             "the campaign sold her already"),
        Step("p-mailfox", "Élise", _installer_lead(5, "Élise", "75011", "energy-week-2026"),
             "shared: sold to both buyers"),
        Step("p-coregia", "Chloé", {**chloe, "campaign": "energy-week-2026", "ref": "ew-3"},
             "shared: Hélio already has her"),
    ]  # fmt: skip


class DecisionLog(logging.Handler):
    """The decision log lines of campaigns sold to buyers, kept to print their waterfall."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.offers: dict[str, list[str]] = {}

    def emit(self, record: logging.LogRecord) -> None:
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict) and "offers" in fields:
            self.offers[str(fields.get("lead_id"))] = list(fields["offers"])


#: How each buyer's part reads in the demo's table.
_PARTS = {"sold": "SOLD", "buyer.duplicate": "has the person", "buyer.capped": "capped",
          "buyer.filtered": "filtered out", "buyer.closed": "closed",
          "buyer.disabled": "endpoint disabled"}  # fmt: skip
#: Refusals decided before the waterfall: those buyers were not offered the lead.
_NOT_OFFERED = ("buyer.filtered", "buyer.closed", "buyer.disabled")


def waterfall(offers: list[str]) -> str:
    """``["solaris:buyer.capped", "helio-install:sold", "voltaic-call:buyer.closed"]`` as ops
    read it: ``solaris capped -> helio-install SOLD; not offered: voltaic-call closed``."""
    tried: list[str] = []
    passed: list[str] = []
    for offer in offers:
        buyer, _, result = offer.partition(":")
        (passed if result in _NOT_OFFERED else tried).append(
            f"{buyer} {_PARTS.get(result, result)}"
        )
    shown = " -> ".join(tried) or "offered to no buyer"
    return f"{shown}; not offered: {', '.join(passed)}" if passed else shown


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _row(cols: list[str], widths: list[int]) -> str:
    return "  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)).rstrip()


#: What the demo CRM answers, and the port the example config's endpoints name.
CRM_PORT = 8099
#: Demo values for the secrets the config names (set in-process only, when not already set).
DEMO_WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"leadgate-demo-webhook-secret-32b").decode()
DEMO_TOKEN = "demo-crm-credential"  # noqa: S105 - a published demo value, like the API keys
#: How long the demo waits for the worker to deliver everything it accepted.
DELIVERY_WAIT_S = 10.0


def demo_secrets(config: Config, environ: Mapping[str, str]) -> dict[str, str]:
    """Values for the secret variables the endpoints name and the environment lacks."""
    added: dict[str, str] = {}
    for advertiser in config.advertisers.values():
        endpoint = advertiser.endpoint
        if endpoint is None:
            continue
        if endpoint.signing is not None and endpoint.signing.env is not None:
            added.setdefault(endpoint.signing.env, DEMO_WEBHOOK_SECRET)
        if endpoint.auth is not None and endpoint.auth.secret.env is not None:
            added.setdefault(endpoint.auth.secret.env, DEMO_TOKEN)
    return {k: v for k, v in added.items() if k not in environ}


def _moved(url: str, port: int) -> str:
    parts = urlsplit(url)
    if parts.hostname not in ("127.0.0.1", "localhost") or parts.port != CRM_PORT:
        return url
    return urlunsplit(parts._replace(netloc=f"127.0.0.1:{port}"))


def with_crm_port(settings: Settings, port: int) -> Settings:
    """The settings with the endpoints that point at the demo CRM's port moved to ``port``."""
    if port == CRM_PORT:
        return settings
    config = settings.config
    advertisers = {
        key: dataclasses.replace(
            a, endpoint=dataclasses.replace(a.endpoint, url=_moved(a.endpoint.url, port))
        )
        if a.endpoint is not None
        else a
        for key, a in config.advertisers.items()
    }
    return dataclasses.replace(
        settings, config=dataclasses.replace(config, advertisers=advertisers)
    )


@dataclass
class CrmReceiver:
    """A local stand-in for the advertisers' CRMs: answers 200 and checks every request the
    way the real CRM would (Standard Webhooks signature, or the configured credential)."""

    endpoints: Mapping[AdvertiserId, Endpoint]
    environ: Mapping[str, str]
    received: Counter[tuple[AdvertiserId, str]] = field(default_factory=Counter)
    lead_ids: dict[AdvertiserId, set[str]] = field(default_factory=dict)

    def _advertiser(self, path: str) -> AdvertiserId | None:
        for advertiser, endpoint in self.endpoints.items():
            if urlsplit(endpoint.url).path == path:
                return advertiser
        return None

    def _check(self, endpoint: Endpoint, request: web.Request, body: bytes) -> str:
        if endpoint.signing is not None:
            keys = webhook_keys(endpoint.signing, self.environ)
            msg_id = request.headers.get("webhook-id", "")
            try:
                timestamp = int(request.headers.get("webhook-timestamp", ""))
            except ValueError:
                return "signature MISSING"
            if abs(time.time() - timestamp) > 300:
                return "signature TOO OLD"
            sent = request.headers.get("webhook-signature", "").split()
            expected = signature(keys, msg_id, timestamp, body).split()
            ok = any(hmac.compare_digest(s, e) for s in sent for e in expected)
            return "signature verified" if ok else "signature WRONG"
        if endpoint.auth is not None:
            secret = resolve_secret(endpoint.auth.secret, self.environ)
            if endpoint.auth.kind is AuthKind.API_KEY:
                ok = hmac.compare_digest(request.headers.get(endpoint.auth.header, ""), secret)
                return "api key verified" if ok else "api key WRONG"
            given = request.headers.get("Authorization", "")
            if endpoint.auth.kind is AuthKind.BEARER:
                ok = hmac.compare_digest(given, f"Bearer {secret}")
            else:
                pair = base64.b64encode(f"{endpoint.auth.username}:{secret}".encode()).decode()
                ok = hmac.compare_digest(given, f"Basic {pair}")
            return (
                f"{endpoint.auth.kind.value} verified"
                if ok
                else f"{endpoint.auth.kind.value} WRONG"
            )
        return "unauthenticated"

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        advertiser = self._advertiser(request.path)
        if advertiser is None:
            return web.json_response({"status": "error", "message": "unknown path"}, status=404)
        check = self._check(self.endpoints[advertiser], request, body)
        self.received[(advertiser, check)] += 1
        self.lead_ids.setdefault(advertiser, set()).add(request.headers.get("Idempotency-Key", ""))
        return web.json_response({"status": "ok"})

    async def start(self) -> tuple[web.AppRunner, int]:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, "127.0.0.1", CRM_PORT).start()
            return runner, CRM_PORT
        except OSError:
            port = _free_port()
            await web.TCPSite(runner, "127.0.0.1", port).start()
            return runner, port


async def run_demo(config_path: str, port: int, keep_running: bool) -> int:
    environ = {k: v for k, v in os.environ.items() if k.startswith("LEADGATE_")}
    environ.pop("LEADGATE_REDIS_URL", None)  # the demo always runs on the embedded store
    environ.pop("LEADGATE_REDIS_URL_FILE", None)
    configure_logging("warning")
    settings = load_settings(environ, config_path)
    environ.update(demo_secrets(settings.config, environ))
    endpoints = {a.id: a.endpoint for a in settings.config.advertisers.values() if a.endpoint}
    crm = CrmReceiver(endpoints, environ)
    crm_runner, crm_port = await crm.start()
    settings = with_crm_port(settings, crm_port)
    crm.endpoints = {
        a.id: a.endpoint for a in settings.config.advertisers.values() if a.endpoint is not None
    }
    async with App(settings, environ=environ) as gateway:
        return await _run(
            gateway, settings, config_path, crm, crm_runner, crm_port, port, keep_running
        )


async def _run(
    gateway: App,
    settings: Settings,
    config_path: str,
    crm: CrmReceiver,
    crm_runner: web.AppRunner,
    crm_port: int,
    port: int,
    keep_running: bool,
) -> int:
    await gateway.open_store()  # the embedded store: the demo unsets LEADGATE_REDIS_URL
    app = create_app(gateway)
    worker = gateway.delivery_worker()
    await worker.start()
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = port or _free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    base = f"http://127.0.0.1:{port}"
    # /metrics on a listener of its own, as `leadgate serve` does (never the partners' port).
    ops_runner = web.AppRunner(create_ops_app(gateway), access_log=None)
    await ops_runner.setup()
    metrics_port = _free_port()
    await web.TCPSite(ops_runner, "127.0.0.1", metrics_port).start()
    metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
    print(f"leadgate demo: gateway on {base} (embedded store), config {config_path}")
    print(f"               metrics on {metrics_url}\n")

    log = DecisionLog()
    decisions = logging.getLogger("leadgate.decision")
    decisions.addHandler(log)
    decisions.setLevel(logging.INFO)
    decisions.propagate = False  # the demo prints the waterfall itself, not JSON lines
    header = ["#", "partner", "channel", "campaign", "person", "decision", "reasons / note"]
    widths = [3, 11, 10, 18, 40, 10, 0]
    print(_row(header, widths))
    print(_row(["-" * max(w, 6) for w in widths[:-1]] + ["-" * 30], widths))
    tally: Counter[str] = Counter()
    #: Leads sold to several buyers: (who, lead id, buyers), to follow to their CRMs.
    shared: list[tuple[str, str, list[str]]] = []
    async with aiohttp.ClientSession() as http:
        for n, step in enumerate(scenario(), 1):
            headers = {"Authorization": f"Bearer {KEYS[step.partner]}", **step.headers}
            async with http.post(f"{base}/v1/leads", json=step.lead, headers=headers) as resp:
                body = await resp.json(content_type=None)
                replayed = resp.headers.get("Idempotent-Replayed") == "true"
            if resp.status == 200:
                decision = body["decision"] + (" (replay)" if replayed else "")
                why = ", ".join(body["reasons"]) or "-"
                if "buyers" in body:
                    sold = ", ".join(body.get("sold_to", [])) or "no buyer"
                    shown = (
                        f"{body['buyers']} buyer(s): {sold}"
                        if "sold_to" in body
                        else (f"{body['buyers']} buyer(s)")
                    )
                    why = f"{why}; {shown}" if why != "-" else shown
                channel = body["channel"]
                tally[body["decision"]] += 1
                if len(body.get("sold_to", [])) > 1:
                    shared.append((step.who, body["lead_id"], body["sold_to"]))
            else:
                decision = f"HTTP {resp.status}"
                why = "; ".join(f"{e['field']}: {e['message']}" for e in body.get("errors", []))
                channel = "-"
                tally[f"http {resp.status}"] += 1
            campaign = str(step.lead.get("campaign", ""))
            cols = [str(n), step.partner[2:], channel, campaign, step.who[:40], decision]
            print(_row([*cols, f"{why}  [{step.note}]"], widths))
            offers = log.offers.get(str(body.get("lead_id"))) if resp.status == 200 else None
            if offers:
                print(f"{'':>{sum(widths[:4]) + 8}}waterfall: {waterfall(offers)}")

        people = _people(20, "batch.client", "7", 60)
        batch = {
            "leads": [
                {**p, "campaign": "acme-always-on", "ref": f"cm-b{i}"} for i, p in enumerate(people)
            ]
        }
        batch["leads"][5] = {**batch["leads"][2], "ref": "cm-b5-dup"}  # a repeat inside the batch
        headers = {"Authorization": f"Bearer {KEYS['p-cashmoon']}"}
        async with http.post(f"{base}/v1/leads/batch", json=batch, headers=headers) as resp:
            result = await resp.json()
        print(f"\nbatch of 20 from cashmoon -> {result['counts']}")
        await _ping_post(http, base)
        async with http.get(metrics_url) as resp:
            metrics_lines = sum(1 for line in (await resp.text()).splitlines()
                                if line.startswith("leadgate_leads_total"))  # fmt: skip

    print("\nsingle posts: " + ", ".join(f"{k} {v}" for k, v in sorted(tally.items())))
    await _wait_delivered(worker, DELIVERY_WAIT_S)
    _print_deliveries(settings.config, crm, crm_port)
    for who, lead_id, buyers in shared:
        reached = [b for b in buyers if lead_id in crm.lead_ids.get(AdvertiserId(b), set())]
        print(f"shared sale of {who} (lead {lead_id[:13]}…): sold to {', '.join(buyers)}; "
              f"reached the CRMs of {', '.join(reached) or 'none yet'}")  # fmt: skip
    print(f"metrics: {metrics_url} ({metrics_lines} leadgate_leads_total series)")
    try:
        if keep_running:
            print(f"\nstill serving on {base}; Ctrl-C to stop")
            await asyncio.Event().wait()
    finally:
        await worker.stop(5.0)
        await runner.cleanup()
        await ops_runner.cleanup()
        await crm_runner.cleanup()
    return 0


SOPHIE = {"email": "Sophie.Bernard@free.fr", "first_name": "Sophie", "last_name": "Bernard",
          "phone": "06 55 44 33 22", "postal_code": "69007", "consent": True}  # fmt: skip


def _sha256(kind: str, value: str) -> str:
    """What a publisher sends for an identifier (docs/api.md, "Hashed identifiers")."""
    email = kind == "email"
    identity = normalize_email(value).identity if email else normalize_phone(value, "FR")
    return hashlib.sha256(identity.encode()).hexdigest()


async def _ping_post(http: aiohttp.ClientSession, base: str) -> None:
    """A pre-ping check, a ping and its post, as a publisher's code would send them."""
    print("\nping/post on hashed identifiers (acme-always-on, compario):")
    headers = {"Authorization": f"Bearer {KEYS['p-compario']}"}

    async def call(path: str, body: Mapping[str, object]) -> dict[str, Any]:
        async with http.post(f"{base}{path}", json=body, headers=headers) as resp:
            answer: dict[str, Any] = await resp.json(content_type=None)
            return answer

    marie = {"campaign": "acme-always-on", "email_sha256": _sha256("email", str(MARIE["email"]))}
    checked = await call("/v1/leads/check", marie)
    print(f"  check Marie by email_sha256    -> {checked['status']} {checked['reasons']}")
    hashes = {
        "email_sha256": _sha256("email", str(SOPHIE["email"])),
        "phone_sha256": _sha256("phone", str(SOPHIE["phone"])),
    }
    pinged = await call(
        "/v1/ping", {"campaign": "acme-always-on", "postal_code": "69007", **hashes}
    )
    held = f"room held {pinged.get('expires_in_s')} s as {pinged.get('ping_id', '-')[:9]}…"
    print(f"  ping Sophie (hashes, 69007)    -> {pinged['status']}, {held}")
    posted = await call(
        "/v1/leads",
        {**SOPHIE, "campaign": "acme-always-on", "ref": "cp-ping-1", "ping_id": pinged["ping_id"]},
    )
    print(f"  post Sophie with its ping_id   -> {posted['decision']} "
          f"(ping {posted.get('ping_status')})")  # fmt: skip
    again = await call("/v1/leads/check", {"campaign": "acme-always-on", **hashes})
    print(f"  check Sophie by her hashes     -> {again['status']} {again['reasons']}")


async def _wait_delivered(worker: Worker, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        states = [await worker.queue.state(a) for a in worker.lanes]
        if all(s.depth == 0 for s in states):
            return
        await asyncio.sleep(0.05)


def _print_deliveries(config: Config, crm: CrmReceiver, port: int) -> None:
    print(f"\ndelivered to the local CRM receiver (127.0.0.1:{port}) by the in-process worker:")
    widths = [14, 11, 9, 0]
    print(_row(["advertiser", "adapter", "leads", "checked by the CRM"], widths))
    print(_row(["-" * 14, "-" * 11, "-" * 9, "-" * 20], widths))
    for advertiser in config.advertisers.values():
        endpoint = advertiser.endpoint
        if endpoint is None:
            print(_row([advertiser.id, "-", "queued", "no endpoint configured"], widths))
            continue
        checks = {c: n for (a, c), n in crm.received.items() if a == advertiser.id}
        leads = len(crm.lead_ids.get(advertiser.id, set()))
        summary = ", ".join(f"{c} ({n})" for c, n in sorted(checks.items())) or "-"
        print(_row([advertiser.id, endpoint.adapter.value, str(leads), summary], widths))
