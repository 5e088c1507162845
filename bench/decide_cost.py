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
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path

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
    args = parser.parse_args()
    with scratch_redis("leadgate-decide-cost-") as (sock, client):
        if args.migrating:
            client.set(keys.SEEN_LAYOUT_SINCE, int(time.time() * 1000))
        if args.prefill:
            asyncio.run(_decide_all(f"unix://{sock}", args.prefill, first=args.leads))
            client.config_resetstat()
        before = int(client.info("memory")["used_memory"])
        cpu_before = time.process_time()
        asyncio.run(_decide_all(f"unix://{sock}", args.leads))
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
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
