"""``python -m bench.metrics_cost``: what the Prometheus metrics cost on the hot path.

Two measurements:

1. End to end: the gateway on Redis (``bench.serve_variant``) with its metrics and with every
   metric recording removed, single-lead posts by wrk, in alternating rounds (with, without,
   without, with, …) so machine drift hits both alike; Redis is emptied before each run so
   every lead does the full work. The median of each variant is compared.
2. In process: the microseconds the metrics add to one single-lead request (the decision's
   counters and histogram, and the request middleware's), timed over many calls.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import timeit
from pathlib import Path

from bench.__main__ import HERE, _free_port, _pin, _process, _wait_http, _wrk


def _in_process_us(calls: int) -> dict[str, float]:
    from gateway.config.load import load_config
    from gateway.decision.model import Decision
    from gateway.intake import Answer
    from gateway.observe import Observer
    from gateway.types import CampaignId, ChannelId, LeadId, PartnerId

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.yaml"
        path.write_text((HERE / "config.yaml").read_text().replace("HASH", "0" * 64))
        config = load_config(path)
    observer = Observer(config)
    partner = config.partners[PartnerId("p-bench")]
    answer = Answer(
        LeadId("01a2"), Decision.ACCEPTED, (), None, CampaignId("bench"), ChannelId("email"), False
    )

    def one_request() -> None:
        started = time.perf_counter()
        observer.decisions(partner, [answer], 0.0012)
        observer.request("/v1/leads", "POST", 200, time.perf_counter() - started)
        observer.redis_round_trip(0.0004, None)

    best = min(timeit.repeat(one_request, number=calls, repeat=5)) / calls
    return {"metrics_per_request_us": best * 1e6}


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.metrics_cost")
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3, help="runs of each variant")
    parser.add_argument("--micro", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.micro:  # the in-process part, in a process of its own (multiprocess mode or not)
        print(json.dumps(_in_process_us(20_000)))
        return 0
    tmp = Path(tempfile.mkdtemp(prefix="leadgate-bench-metrics-"))
    config = tmp / "bench.yaml"
    key_hash = hashlib.sha256(b"bench-key").hexdigest()
    config.write_text((HERE / "config.yaml").read_text().replace("HASH", key_hash))
    sock = tmp / "redis.sock"
    redis_argv = [
        *_pin(1), "redis-server", "--port", "0", "--unixsocket", str(sock),
        "--save", "", "--appendonly", "no", "--maxmemory-policy", "noeviction",
    ]  # fmt: skip
    env = {
        "PATH": "/usr/bin:/bin",
        "LEADGATE_CONFIG": str(config),
        "LEADGATE_LOG_LEVEL": "warning",
        "LEADGATE_FINGERPRINT_KEY": "bench:" + "s" * 40,
        "LEADGATE_REDIS_URL": f"unix://{sock}",
    }
    runs: dict[str, list[dict[str, float]]] = {"with": [], "without": []}
    with _process(redis_argv):
        time.sleep(0.3)
        for r in range(args.rounds):
            order = ("with", "without") if r % 2 == 0 else ("without", "with")
            for variant in order:
                subprocess.run(
                    ["redis-cli", "-s", str(sock), "FLUSHALL"], check=True, capture_output=True
                )
                port = _free_port()
                url = f"http://127.0.0.1:{port}"
                argv = [*_pin(0), sys.executable, "-m", "bench.serve_variant", str(port), variant]
                with _process(argv, env):
                    _wait_http(url + "/healthz")
                    result = _wrk(url, args.seconds, args.connections, 1)
                runs[variant].append(result)
                print(f"round {r + 1} {variant:<8} {result['requests_per_s']:>8.0f} req/s "
                      f"p50 {result['p50']:>8} p99 {result['p99']:>8}")  # fmt: skip
    med = {v: statistics.median(x["requests_per_s"] for x in runs[v]) for v in runs}
    cost = (med["without"] - med["with"]) / med["without"] * 100
    print(f"\nmedian req/s with metrics {med['with']:.0f}, without {med['without']:.0f}: "
          f"metrics cost {cost:+.1f} % of throughput")  # fmt: skip
    per_request_us = 1e6 / med["with"]
    for mode in ("one process", "--workers N (multiprocess mode)"):
        micro_env = {**os.environ}
        micro_env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        with tempfile.TemporaryDirectory() as metrics_dir:
            if mode.startswith("--workers"):
                micro_env["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
            out = subprocess.run(
                [sys.executable, "-m", "bench.metrics_cost", "--micro"],
                env=micro_env, capture_output=True, text=True, check=True,
            ).stdout  # fmt: skip
        us = json.loads(out)["metrics_per_request_us"]
        print(f"in process, {mode}: metrics add {us:.2f} µs per single-lead request, "
              f"{us / per_request_us * 100:.1f} % of the {per_request_us:.0f} µs a request "
              "takes at the measured throughput")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
