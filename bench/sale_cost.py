"""``python -m bench.sale_cost``: what a lead sold to buyers costs, next to a single-advertiser
lead, in the gateway's CPU and in Redis.

Decides new people (an email and a mobile each) through the real intake (parse, rules, plan,
protocol, the metrics and the quality ledger) for the campaigns of
``bench/scenarios/gateway.yaml``: ``bench`` (one advertiser), ``bench-sold`` (five buyers with
the bench campaign's checks: each lead is sold to the first) and ``bench-waterfall`` (the first
two buyers capped: three tried per lead). Two measures:

- **gateway CPU per lead**, on the embedded store (no socket, so only Python runs): the
  minimum and the median of ``--reps`` runs of ``--leads`` leads each, the campaigns
  interleaved so a busy spell of the machine hits each alike;
- **Redis per lead**, against a redis-server of its own (pinned to CPU 1 where ``taskset``
  exists): round trips (counted by the store) and the Redis CPU of the scripts (``INFO
  commandstats``), per lead.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from bench.scenario import GATEWAY_CONFIG
from bench.scratch_redis import scratch_redis
from gateway.config.load import load_config
from gateway.config.model import Config
from gateway.decision.engine import DecisionEngine
from gateway.decision.intake import Intake
from gateway.decision.waterfall import Waterfall
from gateway.leads.fingerprint import Fingerprinter
from gateway.observe.metrics import Observer
from gateway.quality.ledger import QualityLedger
from gateway.storage.base import Store
from gateway.storage.memory import MemoryStore
from gateway.storage.redis import RedisStore
from gateway.types import FingerprintKey, PartnerId

CAMPAIGNS = ("bench", "bench-sold", "bench-waterfall")
KEY = FingerprintKey("b1", b"bench-sale-cost-key-32-bytes!!!!")


def _intake(config: Config, store: Store) -> Intake:
    recorders = (Observer(config), QualityLedger(store))
    engine = DecisionEngine(store)
    return Intake(
        config, engine, Fingerprinter([KEY]), recorders=recorders, waterfall=Waterfall(store)
    )


def _leads(campaign: str, first: int, n: int) -> list[dict[str, object]]:
    return [
        {
            "campaign": campaign,
            "email": f"person{i}@example.fr",
            "phone": f"+3361{i % 10_000_000:07d}",
            "first_name": "Jo",
            "last_name": "Martin",
        }
        for i in range(first, first + n)
    ]


async def _run(config: Config, store: Store, campaign: str, first: int, n: int) -> float:
    """Seconds of this process's CPU per lead, all of them accepted."""
    intake = _intake(config, store)
    partner = config.partners[PartnerId("p-alpha")]
    leads = _leads(campaign, first, n)
    started = time.process_time()
    for lead in leads:
        answer = await intake.submit(partner, lead)
        assert answer.decision.value == "accepted", answer
    return (time.process_time() - started) / n


async def _cpu(config: Config, reps: int, n: int) -> dict[str, list[float]]:
    got: dict[str, list[float]] = {c: [] for c in CAMPAIGNS}
    for rep in range(reps):
        for k, campaign in enumerate(CAMPAIGNS):
            store = MemoryStore()
            got[campaign].append(await _run(config, store, campaign, (rep * 3 + k) * n, n))
    return got


async def _redis(config: Config, url: str, n: int) -> dict[str, float]:
    """Round trips per lead, per campaign (a warm-up lead loads the scripts first)."""
    per_lead: dict[str, float] = {}
    store = RedisStore(url)
    try:
        await _run(config, store, "bench", 9_000_000, 1)
        for k, campaign in enumerate(CAMPAIGNS):
            before = store.round_trips
            await _run(config, store, campaign, 1_000_000 * (k + 1), n)
            per_lead[campaign] = (store.round_trips - before) / n
    finally:
        await store.close()
    return per_lead


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leads", type=int, default=1500, help="leads per run")
    parser.add_argument("--reps", type=int, default=9, help="runs per campaign")
    args = parser.parse_args()
    config = load_config(GATEWAY_CONFIG)
    cpu = asyncio.run(_cpu(config, args.reps, args.leads))
    with scratch_redis("leadgate-sale-cost-") as (sock, _):
        trips = asyncio.run(_redis(config, f"unix://{sock}", args.leads))
    print(f"{'campaign':<18}{'µs CPU/lead min':>16}{'median':>9}{'round trips/lead':>18}")
    for campaign in CAMPAIGNS:
        runs = [s * 1e6 for s in cpu[campaign]]
        print(
            f"{campaign:<18}{min(runs):>16.0f}{statistics.median(runs):>9.0f}"
            f"{trips[campaign]:>18.2f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
