"""``python -m bench.metrics_cost``: what the Prometheus metrics cost on the hot path.

Two measurements:

1. End to end: the gateway on Redis (``bench.serve_variant``) with its metrics and with every
   metric recording removed, wrk posting the ``single`` scenario's leads (its mix of partners,
   duplicates and invalid leads, against ``bench/scenarios/gateway.yaml``, as ``python -m
   bench`` does) in alternating rounds (with, without, without, with, …) so machine drift
   hits both alike; Redis is emptied before each run so every run decides the same leads.
   The median of each variant is compared. Any error (a refused key, a 5xx, a socket error)
   stops the run: it would measure something else.
2. In process: the microseconds the metrics add to one single-lead request (the decision's
   counters and histogram, and the request middleware's), timed over many calls; and what
   one scrape of ``/metrics`` costs the process (its exposition, ms, and its lines), for the
   bench's configuration (``bench/scenarios/gateway.yaml``).
3. ``--scrape N``: a scrape of a network of N partners (each posting to 5 campaigns on 2
   channels: every route's label sets are on the page from the start): its lines, the time to
   render it, and the event loop's longest pause while it is rendered on the loop (as
   ``/metrics`` did before 2026-12-07) and in a thread (as it does now), found by a task
   that sleeps a millisecond at a time meanwhile. With ``PROMETHEUS_MULTIPROC_DIR`` set (an
   empty directory), the page of ``--workers N``, read from one worker's file.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import timeit
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import redis
import uvloop

from bench.__main__ import (
    SERVER_CPU,
    _client_cpu,
    _ensure_wrk,
    _free_port,
    _pin,
    _process,
    _run_wrk,
    _wait_http,
    _wrk_record,
)
from bench.generate import LeadGenerator, write_bodies
from bench.scenario import GATEWAY_CONFIG, Scenario, load_scenario

MICRO_CALLS = 20_000


def _in_process_us(calls: int) -> dict[str, float]:
    from gateway.config.load import load_config
    from gateway.decision.answer import Answer
    from gateway.decision.model import Decision
    from gateway.observe.metrics import Observer
    from gateway.types import CampaignId, ChannelId, LeadId, PartnerId

    config = load_config(GATEWAY_CONFIG)
    # As ``leadgate serve`` builds it: multiprocess mode when the directory is set.
    observer = Observer(config, multiprocess_dir=os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
    partner = config.partners[PartnerId("p-alpha")]
    answer = Answer(
        lead_id=LeadId("01a2"),
        decision=Decision.ACCEPTED,
        reasons=(),
        ref=None,
        campaign=CampaignId("bench"),
        channel=ChannelId("email"),
        test=False,
    )

    def one_request() -> None:
        started = time.perf_counter()
        observer.decided(partner, [answer], 0.0012)
        observer.request("/v1/leads", "POST", 200, time.perf_counter() - started)
        observer.redis_round_trip(0.0004, None)

    best = min(timeit.repeat(one_request, number=calls, repeat=5)) / calls
    text = observer.exposition()
    scrape = min(timeit.repeat(observer.exposition, number=5, repeat=5)) / 5
    return {
        "metrics_per_request_us": best * 1e6,
        "scrape_ms": scrape * 1e3,
        "scrape_lines": text.count(b"\n"),
    }


def _network(partners: int, campaigns: int = 5, channels: int = 2) -> dict[str, Any]:
    """A configuration of ``partners`` partners, each posting to every campaign on every
    channel (one advertiser a campaign)."""
    return {
        "channels": [{"id": f"ch{h}"} for h in range(channels)],
        "advertisers": [{"id": f"adv{c}"} for c in range(campaigns)],
        "campaigns": [
            {
                "id": f"camp{c}",
                "advertiser": f"adv{c}",
                "kind": "always_on",
                "timezone": "Europe/Paris",
                "required": ["email"],
                "dedup": [{"scope": "advertiser", "window": "30d"}],
                "caps": [{"subject": "campaign", "window": "day", "limit": 1000}],
            }
            for c in range(campaigns)
        ],
        "partners": [
            {
                "id": f"p{p}",
                "api_keys": ["sha256:" + hashlib.sha256(f"key-{p}".encode()).hexdigest()],
                "channels": [f"ch{h}" for h in range(channels)],
                "campaigns": [f"camp{c}" for c in range(campaigns)],
            }
            for p in range(partners)
        ],
    }


async def _longest_pause_ms(render: Callable[[], Awaitable[object]]) -> tuple[float, float]:
    """The event loop's longest pause while ``render`` runs (a task sleeping 1 ms at a time
    meanwhile), and the time ``render`` took, both in ms."""
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    longest = 0.0

    async def tick() -> None:
        nonlocal longest
        last = loop.time()
        while not done.is_set():
            await asyncio.sleep(0.001)
            now = loop.time()
            longest, last = max(longest, now - last), now

    ticker = asyncio.create_task(tick())
    await asyncio.sleep(0.01)
    started = time.perf_counter()
    await render()
    took = time.perf_counter() - started
    done.set()
    await ticker
    return longest * 1e3, took * 1e3


def _scrape(partners: int) -> dict[str, float]:
    from gateway.app.heap import settle_heap
    from gateway.config.load import parse_config
    from gateway.observe.metrics import Observer

    # As ``leadgate serve`` builds it: multiprocess mode (``--workers N``: the page merged
    # from the workers' files) when the directory is set.
    observer = Observer(
        parse_config(_network(partners), checksum="bench"),
        multiprocess_dir=os.environ.get("PROMETHEUS_MULTIPROC_DIR"),
    )
    lines = observer.exposition().count(b"\n")
    settle_heap()  # as a server does once started: what start-up built, frozen

    async def inline() -> None:
        observer.exposition()

    async def threaded() -> None:
        observer.flush()
        await asyncio.to_thread(observer.page)

    async def both() -> dict[str, float]:
        await threaded()  # the executor's thread started before it is timed
        pause_inline, render_inline = await _longest_pause_ms(inline)
        pause_thread, render_thread = await _longest_pause_ms(threaded)
        return {
            "lines": lines,
            "render_ms": render_inline,
            "pause_inline_ms": pause_inline,
            "render_thread_ms": render_thread,
            "pause_thread_ms": pause_thread,
        }

    return uvloop.run(both())


def _one_run(
    variant: str, scenario: Scenario, bodies: Path, env: dict[str, str], log: Path
) -> dict[str, Any]:
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    argv = [
        *_pin(str(SERVER_CPU)),
        sys.executable,
        "-m",
        "bench.serve_variant",
        str(port),
        variant,
    ]
    with _process(argv, env, log) as proc:
        try:
            _wait_http(url + "/healthz", proc)
            result, _ = asyncio.run(_run_wrk(url, scenario, bodies, sample=False))
        except BaseException:
            tail = log.read_text(errors="replace").splitlines()[-20:]
            print("gateway log tail:\n" + "\n".join(tail), file=sys.stderr)
            raise
    record = _wrk_record(result, scenario)
    if record["errors"]:
        raise RuntimeError(f"{variant}: errors {record['errors']}: not a measure of metrics")
    record["requests_per_s"] = record["requests"] / max(record["duration_s"], 1e-9)
    return record


def _micro(multiprocess: bool) -> dict[str, float]:
    """``--micro`` in a process of its own: prometheus-client picks its value class (one
    process or multiprocess files) at import, from the environment."""
    env = {**os.environ}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    with tempfile.TemporaryDirectory() as metrics_dir:
        if multiprocess:
            env["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
        out = subprocess.run(
            [sys.executable, "-m", "bench.metrics_cost", "--micro"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        ).stdout
    return {name: float(value) for name, value in json.loads(out).items()}


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.metrics_cost")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3, help="runs of each variant")
    parser.add_argument("--micro", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--micro-calls", type=int, default=MICRO_CALLS, help=argparse.SUPPRESS)
    parser.add_argument(
        "--scrape",
        type=int,
        metavar="PARTNERS",
        help="only a scrape of a network of PARTNERS partners: its lines, its rendering and "
        "the event loop's longest pause meanwhile",
    )
    args = parser.parse_args()
    if args.scrape is not None:
        scrape = _scrape(args.scrape)
        print(
            f"{args.scrape} partners x 5 campaigns x 2 channels: {scrape['lines']:,.0f} lines; "
            f"rendered on the event loop in {scrape['render_ms']:.0f} ms (the loop's longest "
            f"pause {scrape['pause_inline_ms']:.0f} ms), in a thread in "
            f"{scrape['render_thread_ms']:.0f} ms (longest pause "
            f"{scrape['pause_thread_ms']:.1f} ms)"
        )
        return 0
    if args.micro:  # the in-process part, in a process of its own (multiprocess mode or not)
        print(json.dumps(_in_process_us(args.micro_calls)))
        return 0
    if not _ensure_wrk():
        return 2
    if not shutil.which("redis-server"):
        print("redis-server is missing (Debian: redis-server)", file=sys.stderr)
        return 2
    scenario = replace(
        load_scenario("single"), duration_s=args.seconds, concurrency=args.connections
    )
    tmp = Path(tempfile.mkdtemp(prefix="leadgate-bench-metrics-"))
    bodies = tmp / "single.bodies"
    write_bodies(LeadGenerator(scenario).requests(scenario.body_count()), bodies)
    sock = tmp / "redis.sock"
    redis_argv = [
        *_pin(str(_client_cpu())), "redis-server", "--port", "0", "--unixsocket", str(sock),
        "--save", "", "--appendonly", "no", "--maxmemory-policy", "noeviction",
    ]  # fmt: skip
    env = {
        "PATH": "/usr/bin:/bin",
        "LEADGATE_CONFIG": str(GATEWAY_CONFIG),
        "LEADGATE_LOG_LEVEL": "warning",
        "LEADGATE_FINGERPRINT_KEY": "bench:" + "s" * 40,
        "LEADGATE_REDIS_URL": f"unix://{sock}",
    }
    runs: dict[str, list[dict[str, Any]]] = {"with": [], "without": []}
    try:
        with _process(redis_argv):
            deadline = time.monotonic() + 10
            while not sock.exists() and time.monotonic() < deadline:
                time.sleep(0.05)
            r = redis.Redis(unix_socket_path=str(sock))
            for n in range(args.rounds):
                order = ("with", "without") if n % 2 == 0 else ("without", "with")
                for variant in order:
                    r.flushall()
                    result = _one_run(variant, scenario, bodies, env, tmp / f"{variant}.log")
                    runs[variant].append(result)
                    latency = result["latency_ms"]
                    print(f"round {n + 1} {variant:<8} {result['requests_per_s']:>8.0f} req/s "
                          f"p50 {latency['p50']:>7.2f} ms p99 {latency['p99']:>7.2f} ms",
                          flush=True)  # fmt: skip
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    med = {v: statistics.median(x["requests_per_s"] for x in runs[v]) for v in runs}
    cost = (med["without"] - med["with"]) / med["without"] * 100
    print(f"\nmedian req/s with metrics {med['with']:.0f}, without {med['without']:.0f}: "
          f"metrics cost {cost:+.1f} % of throughput")  # fmt: skip
    per_request_us = 1e6 / med["with"]
    for mode, multiprocess in (("one process", False), ("--workers N (multiprocess mode)", True)):
        micro = _micro(multiprocess)
        us = micro["metrics_per_request_us"]
        print(f"in process, {mode}: metrics add {us:.2f} µs per single-lead request, "
              f"{us / per_request_us * 100:.1f} % of the {per_request_us:.0f} µs a request "
              f"takes at the measured throughput; a scrape {micro['scrape_ms']:.1f} ms "
              f"({micro['scrape_lines']:.0f} lines)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
