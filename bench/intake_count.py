"""``python -m bench.intake_count``: what a lead costs the intake, counted instead of timed.

``bench.intake_cost`` times the intake (the gateway's own ``Intake`` and Redis store, no HTTP);
on this project's shared 2-vCPU VM its rounds agree within about 3 % in a quiet hour and
within 10 % in a busy one, so a change worth 2 % cannot be seen in it. Counts do not move
with the machine:

- Opcodes (the default): the Python bytecode instructions the process runs per lead during
  a round (``sys.settrace`` with ``f_trace_opcodes``), and the frames it enters (Python
  calls, a coroutine's resumptions included), in total and by function, largest first.
  Exact and repeatable for the same leads; blind to the work done in C (orjson, hiredis,
  emval, the event loop, and the modules compiled by mypyc: ``LEADGATE_COMPILED=0`` counts
  their sources), which ``--instructions`` sees.
- ``--instructions``: the machine instructions per lead, all of them, C included: the
  intake's whole process run twice under valgrind's callgrind (``--leads`` and three times
  as many), the difference divided by the difference in leads, so start-up and warm-up
  cancel out. Repeatable within about 0.1 % (two runs of the same tree: 6,904.8M and 6,901.6M
  instructions for 2,000 leads); takes a few minutes. Under valgrind the process runs ~50
  times slower while its Redis does not, so round trips carry fewer leads than at full speed:
  a figure to compare trees with, not a CPU time.
- ``--http``: the same counts for whole requests, the HTTP shell included: the gateway's
  lead app (``gateway.web.app.create_app``, its middleware and handlers, aiohttp) served in
  this process on loopback, posted ``--leads`` single leads over 8 keep-alive connections by
  a client in another process (whose work is not counted), by group of modules. With
  ``--peer``, the peer's app (``bench/peer.py``, what the gateway must beat) served the same
  way, against the same kind of Redis: the two counts compare the work each does a request.
  ``--http`` counts vary by about 2 % between runs: a round trip to Redis carries as many
  requests as were waiting, which the timing decides.
- ``--batch N``: the batch endpoint's path, one caller at a time by default (counting slows
  the process ten to fifty times: several large batches at once then outlast the store's 2 s
  deadline).

Compare two trees by running this from each (``PYTHONPATH=<tree> python -m
bench.intake_count``); confirm end to end with ``python -m bench``. Opcode counting makes the
process ~10 times slower: ``--leads`` is 2,000 by default.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any, NamedTuple

import orjson
import uvloop
from aiohttp import web

import gateway
from bench.generate import LeadGenerator
from bench.intake_cost import PARTNER, WARM_UP, bench_gateway, measure
from bench.peer import make_app as peer_app
from bench.scenario import PARTNERS, load_scenario, write_gateway_config
from bench.scratch_redis import scratch_redis
from gateway.web.app import create_app

#: The two runs of ``--instructions`` decide this many leads and three times as many.
SLOPE_FACTOR = 3


def _where(frame: FrameType) -> str:
    code = frame.f_code
    path = code.co_filename
    for marker in ("/site-packages/", "/gateway/", "/bench/"):
        at = path.rfind(marker)
        if at >= 0:
            path = path[at + 1 :] if marker != "/site-packages/" else path[at + len(marker) :]
            break
    return f"{code.co_name} ({path}:{code.co_firstlineno})"


class OpcodeCounter:
    """Counts the opcodes each function runs while it is entered (``counting``)."""

    def __init__(self) -> None:
        self.by_function: collections.Counter[str] = collections.Counter()
        #: Frames entered, by function (a coroutine's resumptions count too): a call costs
        #: the interpreter ~25-30 opcodes' worth of work (a frame made, filled and freed).
        self.calls: collections.Counter[str] = collections.Counter()

    def _trace(self, frame: FrameType, event: str, arg: Any) -> Any:
        frame.f_trace_opcodes = True
        name = _where(frame)
        self.calls[name] += 1
        by_function = self.by_function

        def local(frame: FrameType, event: str, arg: Any) -> Any:
            if event == "opcode":
                by_function[name] += 1
            return local

        return local

    @contextlib.contextmanager
    def counting(self) -> Iterator[None]:
        sys.settrace(self._trace)
        try:
            yield
        finally:
            sys.settrace(None)


class Counts(NamedTuple):
    """Per lead: opcodes, and frames entered; each by function, largest first."""

    opcodes: float
    calls: float
    by_function: list[tuple[str, float]]
    calls_by_function: list[tuple[str, float]]


def opcodes(leads: int, concurrency: int = 64, batch: int = 1) -> Counts:
    """What one round of ``leads`` new leads runs, per lead."""
    counter = OpcodeCounter()
    measure(leads, concurrency, rounds=1, batch=batch, around=counter.counting)
    return _counts(counter, leads)


#: A client in its own process: ``--leads`` posts over 8 keep-alive connections, each
#: waiting for its answer before the next (its work is not counted).
_CLIENT = r"""
import socket, sys, threading
port, key = int(sys.argv[1]), sys.argv[2].encode()
bodies = sys.stdin.buffer.read().splitlines()
def run(first):
    conn = socket.create_connection(("127.0.0.1", port))
    replies = conn.makefile("rb")
    for body in bodies[first::8]:
        conn.sendall(b"POST /v1/leads HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json"
                     b"\r\nAuthorization: Bearer " + key + b"\r\nContent-Length: "
                     + str(len(body)).encode() + b"\r\n\r\n" + body)
        length = 0
        while (line := replies.readline()) != b"\r\n":
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        replies.read(length)
threads = [threading.Thread(target=run, args=(i,)) for i in range(8)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
"""
#: Module groups of ``--http``'s summary, first match wins.
GROUPS = (
    "aiohttp/", "multidict/", "yarl/", "bench/peer", "gateway/web/", "gateway/decision/",
    "gateway/storage/", "gateway/leads/", "gateway/rules/", "gateway/observe/",
    "gateway/quality/", "prometheus_client/", "phonenumbers/", "redis/", "asyncio/",
)  # fmt: skip


def group_of(where: str) -> str:
    return next(
        (group for group in GROUPS if f"({group}" in where or f"/{group}" in where), "other"
    )


async def _http_counts(
    sock: Path, config: Path, leads: int, warm_up: int, count: bool = True, peer: bool = False
) -> OpcodeCounter:
    gateway = None if peer else bench_gateway(sock, config)
    try:
        if gateway is not None:
            await gateway.open_store()
        app = create_app(gateway) if gateway is not None else peer_app(f"unix://{sock}")
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        generator = LeadGenerator(load_scenario("single"))
        key = PARTNERS[PARTNER][0]

        async def post(count: int, counter: OpcodeCounter | None) -> None:
            bodies = b"\n".join(orjson.dumps(generator.lead(PARTNER).lead) for _ in range(count))
            client = await asyncio.create_subprocess_exec(
                sys.executable, "-c", _CLIENT, str(port), key, stdin=subprocess.PIPE
            )
            with counter.counting() if counter is not None else contextlib.nullcontext():
                await client.communicate(bodies)
            if client.returncode != 0:
                raise RuntimeError(f"the client failed ({client.returncode})")

        await post(warm_up, None)
        counter = OpcodeCounter()
        await post(leads, counter if count else None)
        await runner.cleanup()
        return counter
    finally:
        if gateway is not None:
            await gateway.aclose()


def http_opcodes(
    leads: int, warm_up: int = WARM_UP, *, count: bool = True, peer: bool = False
) -> Counts:
    """What ``leads`` single-lead requests run in the gateway's process, per request
    (``count=False``: the requests only, for ``--instructions``; ``peer``: the peer's app,
    ``bench/peer.py``, served the same way instead of the gateway's)."""
    with tempfile.TemporaryDirectory(prefix="leadgate-intake-count-") as tmp:
        config = write_gateway_config(Path(tmp) / "gateway.yaml")
        with scratch_redis("leadgate-intake-count-") as (sock, _):
            counter = uvloop.run(_http_counts(sock, config, leads, warm_up, count, peer))
    return _counts(counter, leads)


def _counts(counter: OpcodeCounter, leads: int) -> Counts:
    def ranked(counts: collections.Counter[str]) -> list[tuple[str, float]]:
        return [(name, n / leads) for name, n in counts.most_common()]

    return Counts(
        sum(counter.by_function.values()) / leads,
        sum(counter.calls.values()) / leads,
        ranked(counter.by_function),
        ranked(counter.calls),
    )


def _callgrind_total(
    leads: int,
    concurrency: int,
    batch: int,
    out: Path,
    warm_up: int = WARM_UP,
    http: bool = False,
    peer: bool = False,
) -> int:
    """Instructions of one whole ``bench.intake_cost`` process deciding ``leads`` leads
    (``http``: of this module's ``--http`` run, its client's process not counted; ``peer``:
    of the peer's)."""
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        raise RuntimeError("valgrind is not installed (apt-get install -y valgrind)")
    run = (
        ["bench.intake_count", "--http", "--requests-only", *(["--peer"] if peer else [])]
        if http
        else ["bench.intake_cost", "--rounds", "1", "--concurrency", str(concurrency),
              "--batch", str(batch)]
    )  # fmt: skip
    command = [
        valgrind, "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable, "-m",
        *run, "--leads", str(leads), "--warm-up", str(warm_up),
    ]  # fmt: skip
    ran = subprocess.run(command, capture_output=True, text=True, env=os.environ.copy())
    if ran.returncode != 0:
        # Under valgrind the process is ~50 times slower: many large batches at once can
        # outlast the store's 2 s deadline (a lower --concurrency does not).
        raise RuntimeError(f"intake_cost under callgrind failed: {ran.stderr[-2000:]}")
    for line in out.read_text().splitlines():
        if line.startswith(("totals:", "summary:")):
            return int(line.split()[1])
    raise RuntimeError(f"no instruction total in {out}")


def instructions(
    leads: int, concurrency: int = 64, batch: int = 1, http: bool = False, peer: bool = False
) -> float:
    """Machine instructions per lead (``http``: per request, ``peer``: the peer's): the slope
    between two callgrind runs."""
    with tempfile.TemporaryDirectory(prefix="leadgate-intake-count-") as tmp:
        low = _callgrind_total(leads, concurrency, batch, Path(tmp) / "low", http=http, peer=peer)
        more = leads * SLOPE_FACTOR
        high = _callgrind_total(more, concurrency, batch, Path(tmp) / "high", http=http, peer=peer)
    return (high - low) / (more - leads)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leads", type=int, default=2000, help="leads a round (2000)")
    parser.add_argument(
        "--concurrency",
        type=int,
        help="callers at once (64; 1 with --batch: counting slows the process ten to fifty "
        "times, and several large batches at once then outlast the store's 2 s deadline)",
    )
    parser.add_argument(
        "--batch", type=int, default=1, help="leads per submit_batch (1: submit, the default)"
    )
    parser.add_argument("--top", type=int, default=40, help="functions listed (40)")
    parser.add_argument(
        "--instructions", action="store_true", help="machine instructions (valgrind), not opcodes"
    )
    parser.add_argument(
        "--http", action="store_true", help="whole requests through the lead app (one by one)"
    )
    parser.add_argument(
        "--warm-up",
        type=int,
        default=WARM_UP,
        help=f"--http: requests before the count ({WARM_UP})",
    )
    parser.add_argument(
        "--peer",
        action="store_true",
        help="with --http: the peer's app (bench/peer.py) instead of the gateway's",
    )
    # What --instructions --http runs under callgrind: the requests, nothing counted.
    parser.add_argument("--requests-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.concurrency is None:
        args.concurrency = 64 if args.batch == 1 else 1
    if args.peer and not args.http:
        parser.error("--peer counts whole requests: add --http")
    if args.requests_only:
        http_opcodes(args.leads, args.warm_up, count=False, peer=args.peer)
        return 0
    if args.instructions:
        per_lead = instructions(args.leads, args.concurrency, args.batch, args.http, args.peer)
        print(f"{per_lead:,.0f} instructions a {'request' if args.http else 'lead'} (callgrind, "
              f"{args.leads:,} and {args.leads * SLOPE_FACTOR:,})")  # fmt: skip
        return 0
    counts = (
        http_opcodes(args.leads, args.warm_up, peer=args.peer)
        if args.http
        else opcodes(args.leads, args.concurrency, args.batch)
    )
    if gateway.COMPILED_MODULES and not args.peer:
        print(
            f"{gateway.COMPILED_MODULES} modules run compiled (mypyc, setup.py): they run no "
            "opcodes, so they are not below; LEADGATE_COMPILED=0 counts their sources"
        )
    print(
        f"{counts.opcodes:,.1f} Python opcodes and {counts.calls:,.1f} frames entered a "
        f"{'request' if args.http else 'lead'} ({args.leads:,}); by function, opcodes | frames:"
    )
    if args.http:
        frames: dict[str, float] = collections.defaultdict(float)
        ops: dict[str, float] = collections.defaultdict(float)
        for name, n in counts.calls_by_function:
            frames[group_of(name)] += n
        for name, n in counts.by_function:
            ops[group_of(name)] += n
        for group, n in sorted(frames.items(), key=lambda item: -item[1]):
            print(f"  {group:20} {ops[group]:9.1f} | {n:5.1f}")
    calls = dict(counts.calls_by_function)
    for name, per_lead in counts.by_function[: args.top]:
        print(f"{per_lead:9.1f} | {calls.get(name, 0.0):5.1f}  {name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
