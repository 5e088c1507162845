"""``python -m bench [SCENARIO ...]``: realistic lead traffic against a real gateway process,
beside the stack's own limits measured in the same run.

One run: a private redis-server (unix socket), the baselines (a bare aiohttp+uvloop
hello-world posted the same bodies with the same client; ``redis-benchmark`` of the decision
script; the ``peer``, ``bench/peer.py``: the same work written the obvious way, posted new
single leads with the first single-lead scenario's client and connections), then each
scenario (``bench/scenarios/<name>.yaml``) against a fresh ``leadgate serve``. Servers are
pinned to CPU 0, the client and Redis to the last CPU, where ``sched_setaffinity`` exists.
Every figure is reported as a ratio to the baselines because absolute numbers on shared
machines drift.

Output: ``bench/results/bench-<time>.json`` (schema: ``bench.report.SCHEMA``), a text table on
stdout, and ``bench/results/bench-<time>.png``. ``--smoke``: a ~15-second run for CI that
checks the harness and that the gateway answers without errors (exit 1 otherwise); it never
judges speed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import redis

import gateway
from bench import client as http_client
from bench import profile as pyspy
from bench.ceiling import MODES as CEILING_MODES
from bench.generate import LeadGenerator, Request, expected_mix, write_bodies
from bench.probe import (
    MetricsSnapshot,
    cpu_seconds,
    fetch_metrics,
    git_sha,
    machine,
    metrics_text,
    parse_metrics,
    pinning_available,
    process_tree,
)
from bench.report import (
    SCHEMA_ID,
    latency_ms,
    rounds_summary,
    table,
    timeline_from_metrics,
    timeline_from_samples,
)
from bench.scenario import (
    DEDUP_SCOPES,
    Client,
    Scenario,
    Store,
    load_scenario,
    write_gateway_config,
)
from gateway.config.model import DedupScope
from gateway.storage import keys
from gateway.types import AdvertiserId, CampaignId, ChannelId, Fingerprint

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results"
DECIDE_LUA = REPO / "gateway" / "storage" / "lua" / "decide.lua"
DEFAULT_SCENARIOS = ("single", "batch")
SERVER_CPU = 0
ADVERTISER = AdvertiserId("bench-adv")


# --- processes ---------------------------------------------------------------------------


def _client_cpu() -> int:
    return (os.cpu_count() or 1) - 1


def _pin(cpus: str) -> list[str]:
    return ["taskset", "-c", cpus] if pinning_available() and shutil.which("taskset") else []


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_http(url: str, proc: subprocess.Popen[bytes], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:  # noqa: S310 (loopback only)
                if resp.status < 500:
                    return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout_s}s")


def _wait_children(proc: subprocess.Popen[bytes], workers: int, timeout_s: float = 20.0) -> None:
    """``serve --workers N``: until the supervisor's N workers exist (their CPU is counted)."""
    deadline = time.monotonic() + timeout_s
    while len(process_tree(proc.pid)) <= workers and time.monotonic() < deadline:
        time.sleep(0.1)


@contextlib.contextmanager
def _process(
    argv: list[str], env: dict[str, str] | None = None, log: Path | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    with contextlib.ExitStack() as stack:
        err = stack.enter_context(log.open("wb")) if log else subprocess.DEVNULL
        proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=err)
        try:
            yield proc
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)


def _ensure_wrk() -> str | None:
    """wrk's path; installs Debian's package when running as root with apt, else explains."""
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print("wrk is missing: installing Debian's package (apt-get install -y wrk)")
        install = ["apt-get", "install", "-y", "-q", "wrk"]
        if subprocess.run(install, check=False).returncode != 0:  # a stale package list
            subprocess.run(["apt-get", "update", "-q"], check=False)
            subprocess.run(install, check=False)
        return shutil.which("wrk")
    print(
        "wrk is missing and this is not root with apt: install it (Debian/Ubuntu: "
        "`sudo apt-get install wrk`; other systems: https://github.com/wg/wrk), or run "
        "scenarios with `client: aiohttp`.",
        file=sys.stderr,
    )
    return None


# --- clients -----------------------------------------------------------------------------


async def _sample_metrics(
    base_url: str, stop: asyncio.Event, out: list[tuple[float, MetricsSnapshot]]
) -> None:
    """Scrape /metrics once a second until ``stop`` (the wrk runs' timeline).

    The texts are parsed once the run is over: parsing one takes ~9 ms of CPU on the CPU that
    wrk and Redis share, and doing it during the run raised the one-connection p99 from
    1.2 to 2.3-2.9 ms (BENCHMARKS.md, "Ceilings")."""
    texts: list[tuple[float, str]] = []
    while not stop.is_set():
        with contextlib.suppress(OSError):
            texts.append((time.perf_counter(), await asyncio.to_thread(metrics_text, base_url)))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=1.0)
    out.extend((at, parse_metrics(text)) for at, text in texts)


async def _run_wrk(
    base_url: str, scenario: Scenario, bodies: Path, *, sample: bool, metrics_url: str = ""
) -> tuple[dict[str, Any], list[tuple[float, MetricsSnapshot]]]:
    connections = scenario.concurrency or 1
    threads = 2 if connections >= 500 and (os.cpu_count() or 1) > 1 else 1
    path = "/v1/leads" if scenario.batch == 1 else "/v1/leads/batch"
    env = {
        **os.environ,
        "BENCH_BODIES": str(bodies),
        "BENCH_PATH": path,
        "BENCH_THREADS": str(threads),
    }
    argv = [
        *_pin(str(_client_cpu())),
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{scenario.duration_s:g}s",
        "--timeout",
        f"{http_client.REQUEST_TIMEOUT_S:g}s",
        "-s",
        str(HERE / "bodies.lua"),
        base_url,
    ]
    samples: list[tuple[float, MetricsSnapshot]] = []
    stop = asyncio.Event()
    sampler = (
        asyncio.create_task(_sample_metrics(metrics_url or base_url, stop, samples))
        if sample
        else None
    )
    proc = await asyncio.create_subprocess_exec(
        *argv, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=scenario.duration_s + 120)
    stop.set()
    if sampler:
        await sampler
    match = re.search(rb"^BENCH-JSON (.*)$", out, re.M)
    if proc.returncode != 0 or not match:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {err.decode()[-2000:]}")
    result: dict[str, Any] = orjson.loads(match.group(1))
    return result, samples


def _wrk_record(result: dict[str, Any], scenario: Scenario) -> dict[str, Any]:
    seconds = result["duration_us"] / 1e6
    statuses = {int(k): int(v) for k, v in result["statuses"].items()}
    errors: Counter[str] = Counter()
    for kind in ("connect", "read", "write", "timeout"):
        if result["errors"][kind]:
            errors[f"socket {kind}"] += int(result["errors"][kind])
    answers: Counter[str] = Counter()
    for status, n in statuses.items():
        if status == 422 and scenario.batch == 1:
            answers["invalid"] += n
        elif status != 200:
            errors[f"http {status}"] += n
    requests = sum(statuses.values())
    return {
        "client": "wrk",
        "duration_s": round(seconds, 3),
        "requests": requests,
        "leads": requests * scenario.batch,
        "latency_ms": {
            "p50": result["p50_us"] / 1000,
            "p95": result["p95_us"] / 1000,
            "p99": result["p99_us"] / 1000,
            "max": result["max_us"] / 1000,
        },
        "latency_source": "wrk",
        "errors": dict(errors),
        "bodies_cycled": result["requests"] > result["bodies"],
    }


async def _run_aiohttp(
    base_url: str, scenario: Scenario, requests: Sequence[Request]
) -> dict[str, Any]:
    if scenario.rate is not None:
        run = await http_client.open_loop(
            base_url,
            requests,
            rate=scenario.rate,
            duration_s=scenario.duration_s,
            max_in_flight=scenario.max_in_flight,
        )
    else:
        run = await http_client.closed_loop(
            base_url,
            requests,
            concurrency=scenario.concurrency or 1,
            duration_s=scenario.duration_s,
            once=scenario.identities is not None,
        )
    duration = max(run.elapsed_s, 1e-9)
    return {
        "client": "aiohttp",
        "duration_s": round(run.elapsed_s, 3),
        "requests": run.requests,
        "leads": run.leads,
        "latency_ms": latency_ms([latency for _, latency in run.samples]),
        "latency_source": "client",
        "errors": dict(run.errors),
        "answers": dict(run.decisions),
        "expected": dict(zip(("accepted", "duplicate", "invalid"), run.expected, strict=True)),
        "timeline": timeline_from_samples(run.samples, duration),
        "bodies_cycled": run.requests + sum(run.errors.values()) > len(requests),
    }


# --- baselines ---------------------------------------------------------------------------


#: Put before decide.lua for the redis-benchmark baseline: redis-benchmark sends its arguments
#: as C strings, which cannot hold the packed numbers (their bytes include zeros), so they go
#: as text (one lead a call: its ARGV[9] is ARGV[12] of the call) and are packed here first.
#: It costs the call a dozen tonumber() and one struct.pack, a few % of it.
_DECIDE_PRELUDE = """
local baseline_numbers = {}
for text in string.gmatch(ARGV[12], "[^,]+") do
  baseline_numbers[#baseline_numbers + 1] = tonumber(text)
end
ARGV[12] = struct.pack("<" .. string.rep("d", #baseline_numbers), unpack(baseline_numbers))
"""


def _redis_decide(sock: Path, calls: int) -> dict[str, Any] | None:
    """``redis-benchmark`` of decide.lua: one dedup check (a 30-day window: the hashes of
    five or six generations) and one cap per call, random marks; everything passes and
    commits, as for a new person."""
    if not shutil.which("redis-benchmark"):
        print(
            "redis-benchmark is missing (Debian: redis-tools): no Redis baseline", file=sys.stderr
        )
        return None
    r = redis.Redis(unix_socket_path=str(sock))
    sha = str(r.script_load(_DECIDE_PRELUDE + DECIDE_LUA.read_text()))
    now_ms = int(time.time() * 1000)
    window_ms = 30 * 86_400_000
    space = keys.SeenSpace(
        ADVERTISER, DedupScope.ADVERTISER, CampaignId("bench"), ChannelId("email")
    )
    generations = keys.seen_generations(now_ms, window_ms)
    # A random bucket and field each (redis-benchmark draws every __rand_int__ on its own).
    mark = keys.seen_mark(Fingerprint("b1.bench"))
    seen = [keys.seen(space, mark, g).rsplit(":", 1)[0] + ":__rand_int__" for g in generations]
    cap = keys.advertiser_tag(ADVERTISER) + ":cap:c:bench:day:2026-11-22"
    n_keys = str(3 + len(seen))
    generation = generations[0]
    # decide.lua's NUM (n_dedup, n_caps, the generations, n_strings; the check's window, TTL,
    # key counts, remember flag and its two strings' numbers; the cap's limit, span and
    # rolling flag) as text: the prelude packs it (see _DECIDE_PRELUDE).
    numbers = [
        1, 1, keys.SEEN_GENERATION_MS, generation, keys.LEGACY_SEEN_GENERATION_MS, 0, 2,
        window_ms, (generation + 1) * keys.SEEN_GENERATION_MS + window_ms - now_ms, len(seen), 0,
        1, 1, 2,
        1_000_000_000, 86_400_000, 0,
    ]  # fmt: skip
    lead = [
        str(now_ms),
        "0192f0c4-7b1e-7cc0-8c3a-bench000lead",
        "0",
        "0",
        "",
        "",
        '{"lead_id":"0192f0c4","campaign":"bench","partner":"p-alpha"}',
        str(now_ms - generation * keys.SEEN_GENERATION_MS),
        ",".join(str(n) for n in numbers),
        "duplicate_advertiser",  # the check's reason and mark: strings 1 and 2
        "__rand_int__",
        "cap_campaign_day",
    ]
    # One lead per call (decide.lua's header: the number of leads, then each lead's counts).
    call = [
        "EVALSHA",
        sha,
        n_keys,
        keys.advertiser_tag(ADVERTISER) + ":idem:-",
        keys.deliveries(ADVERTISER),
        *seen,
        cap,
        "1",
        n_keys,
        str(len(lead)),
        *lead,
    ]
    check: Any = r.evalsha(
        sha, int(n_keys), *[c.replace("__rand_int__", "000000000000") for c in call[3:]]
    )
    if not check or check[0][0] != b"ok":
        raise RuntimeError(f"decide.lua answered {check!r}: the baseline's arguments are stale")
    argv = [
        *_pin(str(SERVER_CPU)),
        "redis-benchmark",
        "-s",
        str(sock),
        "-n",
        str(calls),
        "-c",
        "50",
        "-r",
        "65536",
        "--csv",
        *call,
    ]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)
    rows = [line for line in out.stdout.splitlines() if line.startswith('"EVALSHA')]
    errors = len(re.findall(r"ERR|Error", out.stderr + out.stdout))
    r.flushall()
    if out.returncode != 0 or not rows:
        print(f"redis-benchmark failed: {out.stderr[-500:]}", file=sys.stderr)
        return None
    head = [c.strip('"') for c in out.stdout.splitlines()[0].split(",")]
    # The test name (the command, a JSON record in it) may hold commas: split from the right.
    cols = [c.strip('"') for c in rows[0].rsplit(",", len(head) - 1)]
    values = dict(zip(head, cols, strict=False))
    return {
        "command": "redis-benchmark -c 50 -r 1e9 EVALSHA decide.lua (1 dedup key, 1 cap key; "
        "its numbers sent as text and packed by a prelude)",
        "calls_per_s": float(values["rps"]),
        "requests": calls,
        "latency_ms": {
            "p50": float(values["p50_latency_ms"]),
            "p95": float(values["p95_latency_ms"]),
            "p99": float(values["p99_latency_ms"]),
            "max": float(values["max_latency_ms"]),
        },
        "errors": errors,
    }


# --- one gateway run ---------------------------------------------------------------------


def _used_memory(r: redis.Redis) -> int:
    info: dict[str, Any] = r.info("memory")
    return int(info["used_memory"])


def _memory_figures(r: redis.Redis, before: int, after: int, accepted: int) -> dict[str, Any]:
    """What the accepted leads cost Redis: the growth of ``used_memory`` less the delivery
    stream (exact, ``MEMORY USAGE ... SAMPLES 0``; the worker empties it), per accepted lead
    with everything else included (dedup marks, the lead index, caps, the ledger), and per
    remembered identity per dedup scope (less the lead index and the other keys, each read
    with ``MEMORY USAGE``, which leaves out a key's entry in Redis' tables: that figure errs
    slightly high)."""
    stream_key = keys.deliveries(ADVERTISER)
    stream = int(r.memory_usage(stream_key, samples=0) or 0)
    seen = 0
    marks = 0
    index_hashes = 0
    index_entries = 0
    index_bytes = 0
    other_count = 0
    other_bytes = 0
    for key in r.scan_iter(count=10_000):
        if b":seen:" in key and key != keys.SEEN_LAYOUT_SINCE.encode():
            seen += 1
            marks += int(r.hlen(key))
        elif b":leads:" in key:
            index_hashes += 1
            index_bytes += int(r.memory_usage(key, samples=0) or 0)
            if not key.endswith(b":routes"):
                index_entries += int(r.hlen(key))
        elif key != stream_key.encode():
            other_count += 1
            other_bytes += int(r.memory_usage(key, samples=0) or 0)
    identities = accepted * 2  # every lead of the memory scenario has an email and a phone
    everything = after - before - stream
    remembered = everything - index_bytes - other_bytes
    return {
        "identities": identities,
        "accepted": accepted,
        "scopes": DEDUP_SCOPES,
        "dedup_hashes": seen,
        "dedup_marks": marks,
        "lead_index_hashes": index_hashes,
        "lead_index_entries": index_entries,
        "lead_index_bytes": index_bytes,
        "other_keys": other_count,
        "used_memory_delta_bytes": after - before,
        "stream_bytes": stream,
        "other_keys_bytes": other_bytes,
        "bytes_per_accepted_lead": round(everything / max(1, accepted), 1),
        "lead_index_bytes_per_lead": round(index_bytes / max(1, accepted), 1),
        "bytes_per_identity_per_scope": round(remembered / max(1, identities * DEDUP_SCOPES), 1),
        "marks_per_dedup_hash": round(marks / max(1, seen), 1),
    }


async def _start_profile(
    scenario: Scenario, pid: int, out: Path
) -> asyncio.subprocess.Process | None:
    """py-spy on the gateway (and its workers) for the scenario's duration, or None (said
    why) when py-spy is missing."""
    exe = pyspy.py_spy()
    if exe is None:
        print("py-spy is missing (pip install py-spy): no profile", file=sys.stderr)
        return None
    argv = pyspy.record_argv(exe, pid, scenario.duration_s, out, subprocesses=scenario.workers > 1)
    return await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )


async def _finish_profile(
    spy: asyncio.subprocess.Process | None, out: Path
) -> dict[str, Any] | None:
    if spy is None:
        return None
    try:
        _, err = await asyncio.wait_for(spy.communicate(), timeout=60)
    except TimeoutError:
        spy.kill()
        await spy.wait()
        err = b"timed out"
    return await asyncio.to_thread(_read_profile, spy.returncode, err, out)


def _read_profile(returncode: int | None, err: bytes, out: Path) -> dict[str, Any] | None:
    if returncode != 0 or not out.exists():
        # Typically ptrace refused: py-spy needs root or CAP_SYS_PTRACE on Linux.
        print(f"py-spy failed ({returncode}): {err.decode()[-500:]}", file=sys.stderr)
        return None
    return {"file": out.name, "rate_hz": pyspy.RATE_HZ, **pyspy.summarize(out.read_text())}


async def _gateway_run(
    scenario: Scenario,
    tmp: Path,
    sock: Path,
    r: redis.Redis,
    config: Path,
    profile_out: Path | None = None,
) -> dict[str, Any]:
    generator = LeadGenerator(scenario)
    count = scenario.body_count()
    started = time.perf_counter()
    requests = generator.requests(count)
    print(
        f"[{scenario.name}] {count:,} requests generated in {time.perf_counter() - started:.1f}s",
        flush=True,
    )
    bodies = tmp / f"{scenario.name}.bodies"
    if scenario.client is Client.WRK:
        write_bodies(requests, bodies)
    port, metrics_port = _free_port(), _free_port()
    base_url = f"http://127.0.0.1:{port}"
    # /metrics is served on its own listener, never on the API's port.
    metrics_url = f"http://127.0.0.1:{metrics_port}"
    env = {
        **os.environ,
        "LEADGATE_LOG_LEVEL": "warning",
        "LEADGATE_FINGERPRINT_KEY": "bench:" + "s" * 40,
        "LEADGATE_METRICS_PORT": str(metrics_port),
    }
    env.pop("LEADGATE_REDIS_URL", None)
    if scenario.store is Store.REDIS:
        env["LEADGATE_REDIS_URL"] = f"unix://{sock}"
    cpus = f"{SERVER_CPU}-{SERVER_CPU + scenario.workers - 1}"
    if scenario.workers > 1:
        cpus = f"0-{min(scenario.workers, os.cpu_count() or 1) - 1}"
    argv = [
        *_pin(cpus),
        sys.executable,
        "-m",
        "gateway.cli",
        "serve",
        "--config",
        str(config),
        "--port",
        str(port),
        "--workers",
        str(scenario.workers),
    ]
    r.flushall()
    memory_before = _used_memory(r)
    log = tmp / f"{scenario.name}.log"
    with _process(argv, env, log) as proc:
        try:
            _wait_http(base_url + "/healthz", proc)
            if scenario.workers > 1:
                _wait_children(proc, scenario.workers)
            pids = process_tree(proc.pid)
            metrics_before = await asyncio.to_thread(fetch_metrics, metrics_url)
            cpu_before = cpu_seconds(pids)
            print(
                f"[{scenario.name}] {scenario.client.value} against {scenario.workers} "
                f"process(es), "
                + ("every body once" if scenario.identities else f"{scenario.duration_s:g}s")
                + " ...",
                flush=True,
            )
            samples: list[tuple[float, MetricsSnapshot]] = []
            spy = await _start_profile(scenario, proc.pid, profile_out) if profile_out else None
            if scenario.client is Client.WRK:
                result, samples = await _run_wrk(
                    base_url, scenario, bodies, sample=scenario.timeline, metrics_url=metrics_url
                )
                record = _wrk_record(result, scenario)
                record["timeline"] = timeline_from_metrics(samples)
                record["timeline_source"] = "server /metrics" if scenario.timeline else "none"
            else:
                record = await _run_aiohttp(base_url, scenario, requests)
                record["timeline_source"] = "client"
            cpu_after = cpu_seconds(pids)
            metrics_after = await asyncio.to_thread(fetch_metrics, metrics_url)
            profiled = await _finish_profile(spy, profile_out) if profile_out else None
        except BaseException:
            tail = log.read_text(errors="replace").splitlines()[-20:]
            print("gateway log tail:\n" + "\n".join(tail), file=sys.stderr)
            raise
    memory_after = _used_memory(r)
    delta = metrics_after.minus(metrics_before)
    metric_mix = {k: v for k, v in delta.decisions.items()}
    # Invalid leads: refused inside a batch or as a single post, both counted per partner
    # (``leadgate_requests_refused_total``; adding a single post's HTTP 422 counted it twice).
    invalid = delta.refused.get("422", 0.0)
    if invalid:
        metric_mix["invalid"] = invalid
    for status, n in delta.refused.items():
        if status != "422" and scenario.client is Client.WRK:
            record["errors"][f"refused {status}"] = int(n)
    answers = record.pop("answers", None)
    if answers is not None and scenario.batch == 1:
        answers = {k: v for k, v in answers.items()}
    leads = record["leads"]
    cpu = cpu_after - cpu_before
    record.update(
        name=scenario.name,
        kind="memory" if scenario.identities is not None else "gateway",
        batch=scenario.batch,
        workers=scenario.workers,
        store=scenario.store.value,
        concurrency=scenario.concurrency,
        rate=scenario.rate,
        requests_per_s=round(record["requests"] / max(record["duration_s"], 1e-9), 1),
        leads_per_s=round(leads / max(record["duration_s"], 1e-9), 1),
        error_count=int(sum(record["errors"].values())),
        decisions={
            "answers": answers,
            "metrics": metric_mix or None,
            "expected": record.pop("expected", None)
            or expected_mix(requests[: record["requests"]]),
        },
        server_cpu_s=round(cpu, 3),
        cpu_us_per_lead=round(cpu / leads * 1e6, 2) if leads else None,
        redis_memory=None
        if scenario.store is not Store.REDIS
        else {
            "before_bytes": memory_before,
            "after_bytes": memory_after,
            "delta_bytes": memory_after - memory_before,
        },
    )
    if profiled is not None:
        record["profile"] = profiled
    if scenario.identities is not None:
        accepted = int((answers or {}).get("accepted", 0))
        record["memory"] = _memory_figures(r, memory_before, memory_after, accepted)
    return record


def _hello_run(scenario: Scenario, tmp: Path, requests: list[Request]) -> dict[str, Any]:
    bodies = tmp / "hello.bodies"
    if scenario.client is Client.WRK:
        write_bodies(requests, bodies)
    record = _reference_run(["bench.hello"], scenario, bodies, requests, "/")
    record.update(name="hello-world", kind="baseline")
    return record


def _peer_scenario(scenarios: Sequence[Scenario], seconds: float) -> Scenario:
    """The peer's load: the first single-lead, one-process scenario of the run (its client,
    connections and bodies), else ``single``; its single-lead rate is the reference of every
    gateway run, batches included."""
    single = next(
        (
            s
            for s in scenarios
            if s.batch == 1 and s.workers == 1 and s.identities is None and s.rate is None
        ),
        None,
    )
    return replace(single or load_scenario("single"), name="peer", duration_s=seconds)


def _peer_run(scenario: Scenario, tmp: Path, sock: Path, r: redis.Redis) -> dict[str, Any]:
    """``bench.peer`` (the same work written the obvious way) on the run's Redis, emptied
    before and after, posted new bodies of ``scenario`` by its client."""
    requests = LeadGenerator(scenario).requests(scenario.body_count())
    bodies = tmp / "peer.bodies"
    if scenario.client is Client.WRK:
        write_bodies(requests, bodies)
    r.flushall()
    module = ["bench.peer", f"unix://{sock}"]
    record = _reference_run(module, scenario, bodies, requests, "/healthz")
    r.flushall()
    record.update(name="peer", kind="baseline")
    record["decisions"]["expected"] = expected_mix(requests[: record["requests"]])
    return record


def _ceiling_run(
    mode: str, scenario: Scenario, tmp: Path, requests: list[Request]
) -> dict[str, Any]:
    """``bench.ceiling`` in ``mode``, posted the scenario's own bodies by its own client."""
    record = _reference_run(
        ["bench.ceiling", mode], scenario, tmp / f"{scenario.name}.bodies", requests, "/healthz"
    )
    record.update(name=f"{scenario.name}/{mode}-only", kind="ceiling", ceiling=mode)
    return record


def _reference_run(
    module: list[str], scenario: Scenario, bodies: Path, requests: list[Request], ready: str
) -> dict[str, Any]:
    """A reference server (``python -m <module...> PORT``, pinned where the gateway runs)
    under the scenario's client: its throughput, latency and CPU per lead (a latency curve
    only from the aiohttp client: wrk's runs of it are not scraped)."""
    port = _free_port()
    base_url = f"http://127.0.0.1:{port}"
    argv = [*_pin(str(SERVER_CPU)), sys.executable, "-m", module[0], str(port), *module[1:]]
    with _process(argv) as proc:
        _wait_http(base_url + ready, proc)
        pids = process_tree(proc.pid)
        cpu_before = cpu_seconds(pids)
        if scenario.client is Client.WRK:
            result, _ = asyncio.run(_run_wrk(base_url, scenario, bodies, sample=False))
            record = _wrk_record(result, scenario)
            record.update(timeline=[], timeline_source="none")
            answers = None
        else:
            record = asyncio.run(_run_aiohttp(base_url, scenario, requests))
            record["timeline_source"] = "client"
            answers = record.pop("answers", None)
            record.pop("expected", None)
        cpu = cpu_seconds(pids) - cpu_before
    duration = max(record["duration_s"], 1e-9)
    leads = record["leads"]
    record.update(
        batch=scenario.batch,
        workers=1,
        store=None,
        concurrency=scenario.concurrency,
        rate=scenario.rate,
        requests_per_s=round(record["requests"] / duration, 1),
        leads_per_s=round(leads / duration, 1),
        error_count=int(sum(record["errors"].values())),
        decisions={"answers": answers, "metrics": None, "expected": None},
        server_cpu_s=round(cpu, 3),
        cpu_us_per_lead=round(cpu / leads * 1e6, 2) if leads else None,
        redis_memory=None,
        ratios={},
    )
    record["bodies_cycled"] = False
    return record


# --- main --------------------------------------------------------------------------------


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument(
        "scenarios",
        nargs="*",
        help=f"names in bench/scenarios/ or paths (default: {' '.join(DEFAULT_SCENARIOS)})",
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="the CI check: scenario 'smoke', short baselines; exit 1 on errors",
    )
    parser.add_argument("--seconds", type=float, help="override every scenario's duration_s")
    parser.add_argument(
        "--baseline-seconds",
        type=float,
        default=10.0,
        help="how long the hello-world runs (default 10)",
    )
    parser.add_argument(
        "--redis-calls",
        type=int,
        default=200_000,
        help="redis-benchmark calls of decide.lua (default 200000)",
    )
    parser.add_argument("--no-baselines", action="store_true", help="gateway runs only")
    parser.add_argument(
        "--redis-server",
        default="redis-server",
        metavar="PATH",
        help="the redis-server binary the run starts (default: redis-server on PATH): another "
        "version's, to measure the gateway and the peer on it (the JSON's machine.redis says "
        "which)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="run the peer and the scenarios this many times in turn, each gateway run over "
        "the peer of its own round, and print each scenario's median ratio: on a shared "
        "machine one pair of runs is not enough (ceilings and profiles in round 1 only)",
    )
    parser.add_argument(
        "--ceilings",
        action="store_true",
        help="after each scenario, the same bodies against servers that do only part of a "
        "lead's work (bench/ceiling.py: parse only; parse + email and phone validation): "
        "what no full pipeline on this stack can exceed (one-process scenarios only)",
    )
    parser.add_argument("--no-plot", action="store_true", help="no PNG")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results directory")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="run py-spy on the gateway during each scenario: the stacks go next to the "
        "results (bench-<time>-<scenario>.pyspy.txt, for speedscope.app or flamegraph.pl), "
        "CPU by stage into the JSON and the table; sampling slows the gateway a little",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    if args.rounds < 1:
        print("--rounds must be 1 or more", file=sys.stderr)
        return 2
    names = list(args.scenarios) or (["smoke"] if args.smoke else list(DEFAULT_SCENARIOS))
    scenarios = [load_scenario(name) for name in names]
    if args.seconds:
        scenarios = [replace(s, duration_s=args.seconds) for s in scenarios]
    if args.smoke:
        args.baseline_seconds, args.redis_calls = 2.0, 5_000
    if any(s.client is Client.WRK for s in scenarios) and not _ensure_wrk():
        return 2
    if args.profile and pyspy.py_spy() is None:
        print("--profile needs py-spy (pip install py-spy)", file=sys.stderr)
        return 2
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    args.out.mkdir(parents=True, exist_ok=True)
    if not shutil.which(args.redis_server):
        print(
            f"{args.redis_server} is missing (Debian: redis-server; ./.ci/install-redis)",
            file=sys.stderr,
        )
        return 2
    if pinning_available():
        os.sched_setaffinity(0, {_client_cpu()})  # this process is the aiohttp client
    tmp = Path(tempfile.mkdtemp(prefix="leadgate-bench-"))
    sock = tmp / "redis.sock"
    config = write_gateway_config(tmp / "gateway.yaml")
    redis_argv = [
        *_pin(str(_client_cpu())),
        args.redis_server,
        "--port",
        "0",
        "--unixsocket",
        str(sock),
        "--save",
        "",
        "--appendonly",
        "no",
        "--maxmemory-policy",
        "noeviction",
    ]
    runs: list[dict[str, Any]] = []
    hello: dict[str, Any] | None = None
    redis_decide: dict[str, Any] | None = None
    peer: dict[str, Any] | None = None
    #: Each round's peer run (the first is ``peer``); a run's round is ``run["round"]``.
    peers: list[dict[str, Any]] = []
    try:
        with _process(redis_argv):
            r = redis.Redis(unix_socket_path=str(sock))
            deadline = time.monotonic() + 10
            while not sock.exists() and time.monotonic() < deadline:
                time.sleep(0.05)
            redis_version = str(r.info("server")["redis_version"])
            if not args.no_baselines:
                first = scenarios[0]
                base = replace(
                    first,
                    name="hello",
                    batch=1,
                    rate=None,
                    concurrency=first.concurrency or 64,
                    duration_s=args.baseline_seconds,
                    identities=None,
                    bodies=5000,  # the hello-world does not dedup: cycling costs nothing
                )
                print(
                    f"[hello-world] {base.client.value}, {base.concurrency} connections, "
                    f"{base.duration_s:g}s ...",
                    flush=True,
                )
                hello = _hello_run(base, tmp, LeadGenerator(base).requests(base.body_count()))
                print(f"[redis-benchmark] {args.redis_calls:,} EVALSHA decide.lua ...", flush=True)
                redis_decide = _redis_decide(sock, args.redis_calls)
            for round_no in range(1, args.rounds + 1):
                if not args.no_baselines:
                    peer_scenario = _peer_scenario(scenarios, args.baseline_seconds)
                    print(
                        f"[peer{_round_tag(round_no, args.rounds)}] "
                        f"{peer_scenario.client.value}, {peer_scenario.concurrency} "
                        f"connections, {peer_scenario.duration_s:g}s ...",
                        flush=True,
                    )
                    peers.append(_peer_run(peer_scenario, tmp, sock, r) | {"round": round_no})
                runs += _scenario_round(args, round_no, scenarios, stamp, tmp, sock, r, config)
            peer = peers[0] if peers else None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for run in [*runs, *peers]:
        own = peers[run["round"] - 1] if peers else None
        run["ratios"] = _ratios(run, hello, redis_decide, own)
    if hello is not None:
        hello["ratios"] = {"hello_world": 1.0, "redis_decide": None, "peer": None}
    doc: dict[str, Any] = {
        "schema": SCHEMA_ID,
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "git_sha": git_sha(REPO),
        "command": "python -m bench " + " ".join(sys.argv[1:] if argv is None else argv),
        "scenarios": [s.to_json() for s in scenarios],
        # The gateway's build: how many modules ran compiled by mypyc (setup.py; 0 with
        # LEADGATE_COMPILED=0, which the gateway inherits, or a plain Python build).
        "machine": {**machine(redis_version), "compiled_modules": gateway.COMPILED_MODULES},
        "baselines": {"hello_world": hello, "redis_decide": redis_decide, "peer": peer},
        "runs": runs,
    }
    if args.rounds > 1:
        doc["baselines"]["peer_rounds"] = peers
        doc["rounds"] = rounds_summary(runs)
    path = args.out / f"bench-{stamp}.json"
    path.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2))
    print()
    print(table(doc))
    print(f"\n{path}")
    if not args.no_plot:
        from bench.plot import draw  # matplotlib: a dev dependency, imported only when drawing

        png = path.with_suffix(".png")
        draw(doc, png)
        print(png)
    if args.smoke:
        return _smoke_verdict(runs, peer)
    return 0


def _round_tag(round_no: int, rounds: int) -> str:
    return f" round {round_no}/{rounds}" if rounds > 1 else ""


def _ratios(
    run: dict[str, Any],
    hello: dict[str, Any] | None,
    redis_decide: dict[str, Any] | None,
    peer: dict[str, Any] | None,
) -> dict[str, float | None]:
    """A run's leads/s over the hello-world's requests/s, the decide script's calls/s and its
    round's peer (every run over the peer's single-lead rate, batches included)."""
    return {
        "hello_world": round(run["leads_per_s"] / hello["requests_per_s"], 3)
        if hello and hello["requests_per_s"]
        else None,
        "redis_decide": round(run["leads_per_s"] / redis_decide["calls_per_s"], 3)
        if redis_decide and redis_decide["calls_per_s"]
        else None,
        "peer": round(run["leads_per_s"] / peer["leads_per_s"], 3)
        if peer and peer["leads_per_s"]
        else None,
    }


def _scenario_round(
    args: argparse.Namespace,
    round_no: int,
    scenarios: Sequence[Scenario],
    stamp: str,
    tmp: Path,
    sock: Path,
    r: redis.Redis,
    config: Path,
) -> list[dict[str, Any]]:
    """One round of the gateway's scenarios (and, in round 1, their ceilings)."""
    runs: list[dict[str, Any]] = []
    first = round_no == 1
    for scenario in scenarios:
        profile_out = (
            args.out / f"bench-{stamp}-{scenario.name}.pyspy.txt"
            if args.profile and first
            else None
        )
        run = asyncio.run(_gateway_run(scenario, tmp, sock, r, config, profile_out))
        runs.append(run | {"round": round_no})
        # A ceiling server is one process: beside one gateway process only.
        if first and args.ceilings and scenario.identities is None and scenario.workers == 1:
            # wrk posts the bodies file the gateway run wrote; the aiohttp client
            # the same requests again (the generator is seeded).
            requests = (
                []
                if scenario.client is Client.WRK
                else LeadGenerator(scenario).requests(scenario.body_count())
            )
            for mode in CEILING_MODES:
                print(f"[{scenario.name}] the same bodies, {mode} only ...", flush=True)
                runs.append(_ceiling_run(mode, scenario, tmp, requests) | {"round": 1})
    return runs


def _smoke_verdict(runs: list[dict[str, Any]], peer: dict[str, Any] | None = None) -> int:
    """The CI check: the gateway (and the peer) answered, with the decisions expected,
    without errors."""
    problems: list[str] = []
    if peer is not None and peer["error_count"]:
        problems.append(f"peer: errors {peer['errors']}")
    peer_answers = peer["decisions"]["answers"] if peer is not None else None
    if peer_answers is not None and not peer_answers.get("accepted"):
        problems.append(f"peer: no accepted answer among {peer_answers}")
    for run in runs:
        if run["error_count"]:
            problems.append(f"{run['name']}: errors {run['errors']}")
        mix = run["decisions"]["answers"] or run["decisions"]["metrics"] or {}
        expected = run["decisions"]["expected"] or {}  # none for a ceiling: it never dedups
        for decision in ("accepted", "duplicate", "invalid"):
            if expected.get(decision) and not mix.get(decision):
                problems.append(f"{run['name']}: no {decision} answer among {mix}")
    for problem in problems:
        print(f"SMOKE FAILED: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
