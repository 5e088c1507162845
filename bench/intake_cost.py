"""``python -m bench.intake_cost``: the CPU a lead costs from its parsed JSON to its answer,
without HTTP.

The gateway's own ``Intake`` (as ``leadgate serve`` assembles it: rules, plan, engine, Redis
store and its auto-pipeline, metrics, quality ledger; the heap settled as it settles it)
decides the ``single`` scenario's generated leads posted by one partner, ``--concurrency`` at a
time on one event loop (uvloop), against a redis-server of its own (``bench.scratch_redis``: on
CPU 1; pin this process to CPU 0 with ``taskset -c 0``). Each round decides ``--leads`` new
leads, after a warm-up; the figure is this process's CPU time (``time.process_time``) per
lead: parse, validation, rules, plan, the store call and its reply, recorders. A request's
HTTP part (aiohttp, the middleware, the handler) is what ``python -m bench`` adds to it.

On this project's 2-vCPU VM one end-to-end run moves by 5-10 % with the machine; this figure
by about 3 % in a quiet hour and by 10 % in a busy one. Two trees' hot paths are compared by
``python -m bench.intake_count``, which counts this same path (opcodes and frames by function;
machine instructions under callgrind) and does not move with the machine; this figure says
what the counts are worth in CPU time (run it from each tree, alternately: ``PYTHONPATH=<tree>
python -m bench.intake_cost``), and ``python -m bench`` confirms them end to end.
``--profile FILE`` writes a cProfile of the last round (call counts are exact; times are
inflated by the profiler).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import orjson
import uvloop

from bench.generate import LeadGenerator
from bench.scenario import PARTNERS, load_scenario, write_gateway_config
from bench.scratch_redis import scratch_redis
from gateway.app.heap import settle_heap
from gateway.app.root import App
from gateway.app.settings import load_settings
from gateway.errors import RequestError

PARTNER = "p-alpha"
#: Entered around each measured round (``bench.intake_count`` counts opcodes in it).
Around = Callable[[], contextlib.AbstractContextManager[None]]
#: Leads decided before the rounds: scripts loaded, routes planned, connections open.
WARM_UP = 2000


def bench_gateway(sock: Path, config: Path) -> App:
    """The gateway ``leadgate serve`` would assemble for the bench's ``config``, on the Redis
    at unix socket ``sock`` (its store not opened yet)."""
    env = {
        "LEADGATE_REDIS_URL": f"unix://{sock}",
        "LEADGATE_FINGERPRINT_KEY": "bench:" + "s" * 40,
        "LEADGATE_LOG_LEVEL": "warning",
    }
    return App(load_settings(env, str(config)), environ=env)


async def _measure(
    sock: Path,
    config: Path,
    leads: int,
    concurrency: int,
    rounds: int,
    profile: Path | None,
    batch: int,
    around: Around | None = None,
    warm_up: int = WARM_UP,
) -> list[float]:
    gateway = bench_gateway(sock, config)
    try:
        await gateway.open_store()
        intake = gateway.intake
        partner = intake.authenticate(PARTNERS[PARTNER][0])
        assert partner is not None
        generator = LeadGenerator(load_scenario("single"))

        def new_bodies(count: int) -> list[bytes]:
            # New people each time: the generator goes on where it was. A batch's body is
            # the batch endpoint's ({"leads": [...]}), one per ``batch`` leads.
            leads = [generator.lead(PARTNER).lead for _ in range(count)]
            if batch == 1:
                return [orjson.dumps(lead) for lead in leads]
            return [orjson.dumps({"leads": leads[i : i + batch]}) for i in range(0, count, batch)]

        async def decide(bodies: list[bytes]) -> None:
            work = iter(bodies)

            async def one_caller() -> None:
                for raw in work:
                    if batch > 1:
                        data = orjson.loads(raw)
                        await intake.submit_batch(partner, data["leads"], body=raw)
                        continue
                    # The scenario's invalid leads: answered 422 by the gateway.
                    with contextlib.suppress(RequestError):
                        await intake.submit(partner, orjson.loads(raw), body=raw)

            await asyncio.gather(*(one_caller() for _ in range(concurrency)))

        await decide(new_bodies(warm_up))
        settle_heap(gateway.config)  # as `leadgate serve` does before it listens
        figures: list[float] = []
        for number in range(rounds):
            bodies = new_bodies(leads)
            profiler = cProfile.Profile() if profile is not None and number == rounds - 1 else None
            if profiler is not None:
                profiler.enable()
            with around() if around is not None else contextlib.nullcontext():
                started = time.process_time()
                await decide(bodies)
                figures.append((time.process_time() - started) / leads * 1e6)
            if profiler is not None and profile is not None:
                profiler.disable()
                profiler.dump_stats(profile)
        return figures
    finally:
        await gateway.aclose()


def measure(
    leads: int,
    concurrency: int = 64,
    rounds: int = 5,
    profile: Path | None = None,
    batch: int = 1,
    around: Around | None = None,
    warm_up: int = WARM_UP,
) -> list[float]:
    """µs of CPU per lead of each round; ``batch``: leads per ``submit_batch`` (1: each
    lead through ``submit``); ``around``: entered around each round's leads; ``warm_up``:
    leads decided before the rounds."""
    with tempfile.TemporaryDirectory(prefix="leadgate-intake-cost-") as tmp:
        config = write_gateway_config(Path(tmp) / "gateway.yaml")
        with scratch_redis("leadgate-intake-cost-") as (sock, _):
            return uvloop.run(
                _measure(sock, config, leads, concurrency, rounds, profile, batch, around, warm_up)
            )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leads", type=int, default=20000, help="leads a round (20000)")
    parser.add_argument("--concurrency", type=int, default=64, help="callers at once (64)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds (5)")
    parser.add_argument("--profile", type=Path, help="cProfile of the last round to FILE")
    parser.add_argument(
        "--batch", type=int, default=1, help="leads per submit_batch (1: submit, the default)"
    )
    parser.add_argument(
        "--warm-up", type=int, default=WARM_UP, help=f"leads before the rounds ({WARM_UP})"
    )
    args = parser.parse_args()
    figures = measure(
        args.leads, args.concurrency, args.rounds, args.profile, args.batch, warm_up=args.warm_up
    )
    what = "Intake.submit" if args.batch == 1 else f"Intake.submit_batch of {args.batch}"
    print(
        f"{what}, {args.leads:,} leads a round at {args.concurrency} at once: "
        f"{min(figures):.1f} µs of CPU a lead at best, {statistics.median(figures):.1f} "
        f"median ({', '.join(f'{f:.1f}' for f in figures)})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
