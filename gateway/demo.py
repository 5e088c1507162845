"""``leadgate demo``: the gateway on its embedded store, a realistic mix of leads, a table.

It starts the real HTTP server on loopback and posts through real HTTP, like publishers would:
the same person through several channels and spellings, an always-on and a peak campaign of
one advertiser competing for the same people, caps filling up, a closed campaign, test mode,
an idempotent retry, a batch and an invalid lead.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections import Counter
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web

from gateway.observe import configure_logging
from gateway.runtime import build_intake, load_settings
from gateway.storage.memory import MemoryStore
from gateway.web.app import create_app

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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _row(cols: list[str], widths: list[int]) -> str:
    return "  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)).rstrip()


async def run_demo(config_path: str, port: int, keep_running: bool) -> int:
    environ = {k: v for k, v in os.environ.items() if k.startswith("LEADGATE_")}
    environ.pop("LEADGATE_REDIS_URL", None)  # the demo always runs on the embedded store
    environ.pop("LEADGATE_REDIS_URL_FILE", None)
    configure_logging("warning")
    settings = load_settings(environ, config_path)
    intake = await build_intake(settings)
    app = create_app(intake)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = port or _free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    base = f"http://127.0.0.1:{port}"
    print(f"leadgate demo: gateway on {base} (embedded store), config {config_path}\n")

    header = ["#", "partner", "channel", "campaign", "person", "decision", "reasons / note"]
    widths = [3, 11, 10, 18, 40, 10, 0]
    print(_row(header, widths))
    print(_row(["-" * max(w, 6) for w in widths[:-1]] + ["-" * 30], widths))
    tally: Counter[str] = Counter()
    async with aiohttp.ClientSession() as http:
        for n, step in enumerate(scenario(), 1):
            headers = {"Authorization": f"Bearer {KEYS[step.partner]}", **step.headers}
            async with http.post(f"{base}/v1/leads", json=step.lead, headers=headers) as resp:
                body = await resp.json(content_type=None)
                replayed = resp.headers.get("Idempotent-Replayed") == "true"
            if resp.status == 200:
                decision = body["decision"] + (" (replay)" if replayed else "")
                why = ", ".join(body["reasons"]) or "-"
                channel = body["channel"]
                tally[body["decision"]] += 1
            else:
                decision = f"HTTP {resp.status}"
                why = "; ".join(f"{e['field']}: {e['message']}" for e in body.get("errors", []))
                channel = "-"
                tally[f"http {resp.status}"] += 1
            campaign = str(step.lead.get("campaign", ""))
            cols = [str(n), step.partner[2:], channel, campaign, step.who[:40], decision]
            print(_row([*cols, f"{why}  [{step.note}]"], widths))

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
        async with http.get(f"{base}/metrics") as resp:
            metrics_lines = sum(1 for line in (await resp.text()).splitlines()
                                if line.startswith("leadgate_leads_total"))  # fmt: skip

    print("\nsingle posts: " + ", ".join(f"{k} {v}" for k, v in sorted(tally.items())))
    store = intake.engine.store
    if isinstance(store, MemoryStore):
        queued = {k.split("{a:")[1].split("}")[0]: len(v) for k, v in store.streams.items()}
        print(f"queued for delivery per advertiser: {queued}")
        print("  (the delivery worker that forwards them to CRMs is not built yet: see README)")
    print(f"metrics: {base}/metrics ({metrics_lines} leadgate_leads_total series)")
    if keep_running:
        print(f"\nstill serving on {base}; Ctrl-C to stop")
        try:
            await asyncio.Event().wait()
        finally:
            await runner.cleanup()
    await runner.cleanup()
    return 0
