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

from bench.scratch_redis import scratch_redis
from gateway.config.load import load_config
from gateway.decision.engine import DecisionEngine
from gateway.decision.plan import build_request
from gateway.leads.fingerprint import Fingerprinter
from gateway.leads.parse import parse_lead
from gateway.storage import keys
from gateway.storage.redis import RedisStore
from gateway.types import CampaignId, ChannelId, FingerprintKey, LeadId, PartnerId

HERE = Path(__file__).resolve().parent
BATCH = 500


async def _decide_all(url: str, leads: int, first: int = 0) -> None:
    config = load_config(HERE / "scenarios" / "gateway.yaml")
    campaign = config.campaigns[CampaignId("bench")]
    partner = config.partners[PartnerId("p-alpha")]
    fingerprinter = Fingerprinter([FingerprintKey("b1", b"bench-decide-cost-key-32-bytes!!")])
    store = RedisStore(url)
    engine = DecisionEngine(store)
    try:
        for start in range(first, first + leads, BATCH):
            # The clock of each batch, as a gateway's: the TTLs a lead asks for are worked out
            # from its own time, and Redis's moves on meanwhile.
            now_s = time.time()
            requests = []
            for i in range(start, min(first + leads, start + BATCH)):
                lead = parse_lead(
                    {
                        "campaign": "bench",
                        "email": f"person{i}@example.fr",
                        "phone": f"+336{i:08d}",
                        "first_name": "Jo",
                    },
                    config.campaigns,
                    now_s=now_s,
                )
                requests.append(
                    build_request(
                        lead=lead,
                        lead_id=LeadId(f"lead-{i}"),
                        campaign=campaign,
                        partner=partner,
                        channel=ChannelId("email"),
                        pressure=None,
                        fingerprinter=fingerprinter,
                        now_s=now_s,
                    )
                )
            await engine.run(requests)
    finally:
        await store.close()


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
    args = parser.parse_args()
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
    with scratch_redis("leadgate-decide-cost-", wrapper) as (sock, client):
        if args.migrating:
            client.set(keys.SEEN_LAYOUT_SINCE, int(time.time() * 1000))
        if args.prefill:
            asyncio.run(_decide_all(f"unix://{sock}", args.prefill, first=args.leads))
            client.config_resetstat()
        before = int(client.info("memory")["used_memory"])
        cpu_before = time.process_time()
        if callgrind:
            _instrument(client, True)
        asyncio.run(_decide_all(f"unix://{sock}", args.leads))
        if callgrind:
            _instrument(client, False)
        # This process's side: parse, plan, engine and store (no HTTP, no metrics).
        python_us = (time.process_time() - cpu_before) / args.leads * 1e6
        commands = client.info("commandstats")
        stats = commands["cmdstat_evalsha"]
        after = int(client.info("memory")["used_memory"])
        # A call decides up to 100 leads (a batch's, in order): the figure is per lead.
        print(
            f"{args.leads:,} decisions: EVALSHA {stats['calls']:,} calls, "
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
