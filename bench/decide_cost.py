"""``python -m bench.decide_cost``: Redis CPU per decision, as Redis itself counts it.

Decides ``--leads`` new people (an email and a mobile each) for the bench campaign
(``bench/scenarios/gateway.yaml``: advertiser scope 30 days, campaign scope 90 days, two caps)
through the real plan and Redis store, in batches of 500, against a redis-server of its own
(pinned to CPU 1 where ``taskset`` exists), then reads ``INFO commandstats``: the ``usec``
of ``EVALSHA`` over the decisions is what one decision costs Redis's single thread, the calls
of the other commands what the script asked of Redis per decision, and ``used_memory`` what
the leads left behind (dedup marks, cap counters, the delivery stream, the lead index).
Run it from two trees to compare two versions of ``decide.lua``.
``--prefill N``: N other people decided first, unmeasured (a Redis that has served a while).
``--migrating``: as right after an upgrade from the weekly layout, whose hashes are then read
too until the windows pass.
``--callgrind``: Redis runs under valgrind's callgrind, counting only while the measured
decisions run (``callgrind_control -i``), and the instructions per decision are printed, in
all and inside ``EVALSHA``: a count that the machine's load does not move (the same binary,
script and inputs give the same figure), where the µs of ``commandstats`` move by a third
from one run to the next on a shared VM. About 50 times slower: use ``--leads 2000``.
``--field-expiry``: the leads decided by ``bench/field_expiry.lua`` instead, what a decision
would cost if each dedup mark expired on its own (Redis 7.4's ``HPEXPIRE``; one hash a check
instead of one a generation): a measurement, not a layout the gateway has.
``--hpexpire``: with ``--field-expiry`` on Redis 8, a mark written as 7.4 must (``HSET`` then
``HPEXPIRE``) rather than with 8.0's ``HSETEX``.
``--seconds``: with ``--field-expiry``, a mark's value in epoch seconds rather than ms.
``--redis-server PATH``: the redis-server binary to measure (default: the one on ``PATH``).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import redis
import redis.asyncio

from bench import field_expiry
from bench.scratch_redis import scratch_redis
from gateway.config.load import load_config
from gateway.decision.engine import DecisionEngine
from gateway.decision.model import DecisionRequest
from gateway.decision.plan import build_request
from gateway.leads.fingerprint import Fingerprinter
from gateway.leads.parse import parse_lead
from gateway.storage import keys
from gateway.storage.redis import RedisStore, parse_version
from gateway.types import CampaignId, ChannelId, FingerprintKey, LeadId, PartnerId

HERE = Path(__file__).resolve().parent
BATCH = 500


class BenchLeads:
    """The bench campaign's decision requests for new people (an email and a mobile each,
    person ``i`` always the same person), through the real parse and plan."""

    def __init__(self) -> None:
        self.config = load_config(HERE / "scenarios" / "gateway.yaml")
        self.campaign = self.config.campaigns[CampaignId("bench")]
        self.partner = self.config.partners[PartnerId("p-alpha")]
        self.fingerprinter = Fingerprinter(
            [FingerprintKey("b1", b"bench-decide-cost-key-32-bytes!!")]
        )

    def requests(self, people: range, now_s: float) -> list[DecisionRequest]:
        """One request per person of ``people``, decided at ``now_s``."""
        requests = []
        for i in people:
            lead = parse_lead(
                {
                    "campaign": "bench",
                    "email": f"person{i}@example.fr",
                    "phone": f"+336{i:08d}",
                    "first_name": "Jo",
                },
                self.config.campaigns,
                now_s=now_s,
            )
            requests.append(
                build_request(
                    lead=lead,
                    lead_id=LeadId(f"lead-{i}"),
                    campaign=self.campaign,
                    partner=self.partner,
                    channel=ChannelId("email"),
                    pressure=None,
                    fingerprinter=self.fingerprinter,
                    now_s=now_s,
                )
            )
        return requests


async def _decide_all(
    url: str,
    leads: int,
    first: int = 0,
    *,
    fields: bool = False,
    hsetex: bool = False,
    seconds: bool = False,
    single: bool = False,
) -> None:
    """Decide ``leads`` new people (numbered from ``first``) through the real plan and store,
    or, with ``fields``, through ``field_expiry.lua`` (its marks written with ``HSETEX``
    where ``hsetex``); ``single``: each as a single post of its own, ``BATCH`` at once (the
    store then shares ``decide.lua`` calls among those waiting together), rather than as
    batches."""
    bench = BenchLeads()
    # The real store, or a plain client for the measured script.
    store = None if fields else RedisStore(url)
    client = redis.asyncio.Redis.from_url(url) if fields else None
    sha = await client.script_load(field_expiry.SCRIPT) if client is not None else ""
    try:
        if store is not None:
            # As a gateway before it serves: connected, the layout learnt, the scripts loaded.
            await store.connect_all()
            await store.load_scripts()
        for start in range(first, first + leads, BATCH):
            # The clock of each batch, as a gateway's: the TTLs a lead asks for are worked out
            # from its own time, and Redis's moves on meanwhile.
            requests = bench.requests(range(start, min(first + leads, start + BATCH)), time.time())
            if client is not None:
                for command in field_expiry.commands(sha, requests, hsetex, seconds):
                    await client.execute_command(*command)  # type: ignore[no-untyped-call]
            elif store is not None and single:
                engine = DecisionEngine(store)
                await asyncio.gather(*(engine.run([rq]) for rq in requests))
            elif store is not None:
                await DecisionEngine(store).run(requests)
    finally:
        if store is not None:
            await store.close()
        if client is not None:
            await client.aclose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leads", type=int, default=20_000)
    parser.add_argument(
        "--migrating",
        action="store_true",
        help="as in the window after an upgrade from the weekly layout: the legacy weekly "
        "hashes are read too (docs/decision.md, 'Upgrading')",
    )
    parser.add_argument(
        "--prefill",
        type=int,
        default=0,
        metavar="N",
        help="decide N other people first, unmeasured: the dedup hashes and the lead index "
        "then hold marks already, as in a Redis that has served a while (with few leads every "
        "lead writes to hashes of its own)",
    )
    parser.add_argument(
        "--callgrind",
        action="store_true",
        help="count Redis's instructions per decision under valgrind's callgrind "
        "(deterministic; slow: use --leads 2000)",
    )
    parser.add_argument(
        "--field-expiry",
        action="store_true",
        help="decide through bench/field_expiry.lua: one hash a dedup check, each mark "
        "expiring on its own (needs Redis 7.4 or later; a measurement, not the gateway's layout)",
    )
    parser.add_argument(
        "--hpexpire",
        action="store_true",
        help="with --field-expiry on Redis 8: write a mark as Redis 7.4 must (HSET, then "
        "HPEXPIRE) rather than with HSETEX",
    )
    parser.add_argument(
        "--seconds",
        action="store_true",
        help="with --field-expiry: a mark's value in epoch seconds rather than ms (a smaller "
        "integer in the listpack)",
    )
    parser.add_argument(
        "--single",
        action="store_true",
        help=f"each lead a single post of its own, {BATCH} at once (as a gateway under load "
        "decides them: single leads waiting together share decide.lua calls), rather than "
        "batches of 100 in a call",
    )
    parser.add_argument(
        "--redis-server",
        default="redis-server",
        metavar="PATH",
        help="the redis-server binary to measure (default: redis-server on PATH)",
    )
    args = parser.parse_args()
    if shutil.which(args.redis_server) is None:
        parser.error(f"no redis-server at {args.redis_server!r}")
    if args.callgrind:
        for tool in ("valgrind", "callgrind_control", "callgrind_annotate"):
            if shutil.which(tool) is None:
                parser.error(f"--callgrind needs {tool} (Debian's valgrind package)")
    with tempfile.TemporaryDirectory(prefix="leadgate-callgrind-") as tmp:
        out = Path(tmp) / "callgrind.out"
        wrapper = (
            ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}"]
            if args.callgrind
            else []
        )
        _measure(args, wrapper)
        if args.callgrind:
            _print_instructions(out, args.leads)
    return 0


def _instrument(client: redis.Redis, on: bool) -> None:
    """callgrind's counting on or off in the server (valgrind's process is Redis's)."""
    pid = str(client.info("server")["process_id"])
    subprocess.run(["callgrind_control", "-i", "on" if on else "off", pid], check=True,
                   capture_output=True)  # fmt: skip


def _print_instructions(out: Path, leads: int) -> None:
    annotated = subprocess.run(
        ["callgrind_annotate", "--inclusive=yes", str(out)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    total = _count(annotated, "PROGRAM TOTALS")
    script = _count(annotated, ":evalGenericCommand ")
    print(
        f"callgrind: {total / leads:,.0f} Redis instructions per decision, "
        f"{script / leads:,.0f} of them inside EVALSHA"
    )


def _count(annotated: str, what: str) -> int:
    """The instruction count on the first line of ``callgrind_annotate`` naming ``what``."""
    for line in annotated.splitlines():
        if what in line:
            return int(line.split()[0].replace(",", ""))
    raise SystemExit(f"callgrind: no {what!r} in the profile")


def _measure(args: argparse.Namespace, wrapper: list[str]) -> None:
    callgrind = bool(wrapper)
    server = args.redis_server
    with scratch_redis("leadgate-decide-cost-", wrapper, server=server) as (sock, client):
        version = str(client.info("server")["redis_version"])
        if args.field_expiry and parse_version(version) < (7, 4):
            raise SystemExit(
                f"--field-expiry needs Redis 7.4 or later (HPEXPIRE); this is {version}"
            )
        # Redis 8.0 sets a field with its expiry in one command (HSETEX).
        hsetex = parse_version(version) >= (8, 0) and not args.hpexpire
        if args.migrating:
            client.set(keys.SEEN_LAYOUT_SINCE, int(time.time() * 1000))
        if args.prefill:
            asyncio.run(
                _decide_all(
                    f"unix://{sock}",
                    args.prefill,
                    first=args.leads,
                    fields=args.field_expiry,
                    hsetex=hsetex,
                    seconds=args.seconds,
                )
            )
            client.config_resetstat()
        before = int(client.info("memory")["used_memory"])
        cpu_before = time.process_time()
        if callgrind:
            _instrument(client, True)
        asyncio.run(
            _decide_all(
                f"unix://{sock}",
                args.leads,
                fields=args.field_expiry,
                hsetex=hsetex,
                seconds=args.seconds,
                single=args.single,
            )
        )
        if callgrind:
            _instrument(client, False)
        # This process's side: parse, plan, engine and store (no HTTP, no metrics).
        python_us = (time.process_time() - cpu_before) / args.leads * 1e6
        commands = client.info("commandstats")
        stats = commands["cmdstat_evalsha"]
        after = int(client.info("memory")["used_memory"])
        # A call decides up to 100 leads (a batch's, in order): the figure is per lead.
        script = "decide.lua, single posts" if args.single else "decide.lua"
        if args.field_expiry:
            written = "HSETEX" if hsetex else "HSET + HPEXPIRE"
            script = f"field_expiry.lua ({written}, {'s' if args.seconds else 'ms'})"
        print(
            f"Redis {version}, {script}: {args.leads:,} decisions: "
            f"EVALSHA {stats['calls']:,} calls, "
            f"{stats['usec'] / args.leads:.1f} µs per decision (Redis CPU); "
            f"used_memory +{(after - before) / args.leads:,.0f} bytes per lead; "
            f"{python_us:.1f} µs of this process's CPU per decision (parse, plan, store)"
        )
        # What the script asked of Redis, by command: each call from Lua costs about the same
        # (its dispatch, the key's lookup), a count not subject to the machine's noise.
        calls = {
            name.removeprefix("cmdstat_").upper(): stat["calls"] / args.leads
            for name, stat in commands.items()
            if name not in ("cmdstat_evalsha", "cmdstat_config|resetstat", "cmdstat_info")
            and stat["calls"] >= args.leads / 100
        }
        print(
            f"per decision: {sum(calls.values()):.1f} commands from the script: "
            + ", ".join(f"{name} {n:.2f}" for name, n in sorted(calls.items()))
        )


if __name__ == "__main__":
    raise SystemExit(main())
