"""``python -m bench``: single-lead and batch throughput beside a bare aiohttp hello-world.

A first measurement, not yet the full harness (scenario files, open loop, plots: see the
README). Servers run pinned to CPU 0, wrk and Redis to CPU 1 where ``taskset`` exists, and
every figure is reported as a ratio to the hello-world measured in the same run.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pin(cpu: int) -> list[str]:
    return ["taskset", "-c", str(cpu)] if shutil.which("taskset") and os.cpu_count() else []


def _wait_http(url: str, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:  # noqa: S310 (loopback only)
                if resp.status < 500:
                    return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout_s}s")


@contextmanager
def _process(
    argv: list[str], env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def _wrk(url: str, seconds: int, connections: int, batch: int) -> dict[str, float]:
    env = {**os.environ, "BATCH": str(batch)}
    argv = [*_pin(1), "wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency",
            "-s", str(HERE / "leads.lua"), url]  # fmt: skip
    out = subprocess.run(argv, env=env, capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    pct = dict(re.findall(r"^\s+(50|99)%\s+([\d.]+\w+)", out, re.M))
    return {
        "requests_per_s": rps,
        "items_per_s": rps * batch,
        "non_2xx": float(bad.group(1)) if bad else 0.0,
        "socket_errors": float(sum(int(g) for g in errors.groups())) if errors else 0.0,
        "p50": pct.get("50", "?"),  # type: ignore[dict-item]
        "p99": pct.get("99", "?"),  # type: ignore[dict-item]
    }


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--batch", type=int, default=100, help="leads per batch request")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        print("wrk is missing: apt-get install -y wrk", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="leadgate-bench-"))
    key_hash = hashlib.sha256(b"bench-key").hexdigest()
    config = tmp / "bench.yaml"
    config.write_text((HERE / "config.yaml").read_text().replace("HASH", key_hash))
    sock = tmp / "redis.sock"
    results: dict[str, dict[str, float]] = {}
    redis_argv = [
        *_pin(1), "redis-server", "--port", "0", "--unixsocket", str(sock),
        "--save", "", "--appendonly", "no", "--maxmemory-policy", "noeviction",
    ]  # fmt: skip
    with _process(redis_argv):
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        with _process([*_pin(0), sys.executable, "-m", "bench.hello", str(port)]):
            _wait_http(url + "/")
            results["hello-world"] = _wrk(url + "/", args.seconds, args.connections, 1)
        for store in ("redis", "embedded"):
            port = _free_port()
            url = f"http://127.0.0.1:{port}"
            env = {**os.environ, "LEADGATE_LOG_LEVEL": "warning",
                   "LEADGATE_FINGERPRINT_KEY": "bench:" + "s" * 40}  # fmt: skip
            if store == "redis":
                env["LEADGATE_REDIS_URL"] = f"unix://{sock}"
            argv = [*_pin(0), sys.executable, "-m", "gateway.cli", "serve",
                    "--config", str(config), "--port", str(port)]  # fmt: skip
            with _process(argv, env):
                _wait_http(url + "/healthz")
                results[f"{store} single"] = _wrk(url, args.seconds, args.connections, 1)
                results[f"{store} batch"] = _wrk(url, args.seconds, 8, args.batch)
    base = results["hello-world"]["requests_per_s"]
    print(f"{'run':<18} {'req/s':>9} {'leads/s':>9} {'x hello':>8} {'p50':>8} {'p99':>8} errors")
    for name, r in results.items():
        ratio = r["items_per_s"] / base
        errs = int(r["non_2xx"] + r["socket_errors"])
        print(f"{name:<18} {r['requests_per_s']:>9.0f} {r['items_per_s']:>9.0f} {ratio:>8.2f} "
              f"{r['p50']:>8} {r['p99']:>8} {errs}")  # fmt: skip
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    doc = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "git_sha": sha.stdout.strip(),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "seconds": args.seconds,
        "connections": args.connections,
        "batch": args.batch,
        "results": results,
    }
    path = out / f"bench-{int(time.time())}.json"
    path.write_text(json.dumps(doc, indent=2))
    print(f"\n{path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
