"""``python -m bench.delivery_bench``: deliveries per second of one ``leadgate worker`` process
to a fast local receiver, beside a bare aiohttp client posting to the same receiver in the
same run (the goal: at least 0.5x of the bare client).

Both post the same signed JSON webhook body with the same concurrency. The receiver runs in
its own process (pinned to CPU 1 with Redis, where ``taskset`` exists); the bare client and
the worker are pinned to CPU 0. The receiver is a minimal HTTP/1.1 responder (a protocol on
uvloop answering 200 to every request), so that neither it nor Redis beside it limits a round:
the bench prints how much of CPU 1 they used, bare rounds and worker rounds apart.

The worker's figure counts everything a delivery costs: the stream read, the adapter, the
signature, the request, the response classification and the atomic ack + delete in Redis; it
is measured from the moment the leads are in the stream to the moment the stream is empty.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import cast

from bench.probe import cpu_seconds

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SECRET = "whsec_YmVuY2gtd2ViaG9vay1zZWNyZXQtMzItYnl0ZXMh"  # noqa: S105 - a bench-only key

CONFIG = """
channels: [{{id: email, name: Emailing}}]
delivery:
  allow_networks: [127.0.0.0/8]
  worker_concurrency: {concurrency}
  read_count: 200
advertisers:
  - id: acme
    delivery:
      adapter: webhook
      url: http://127.0.0.1:{port}/hook
      secret_env: BENCH_WEBHOOK_SECRET
      concurrency: {concurrency}
campaigns:
  - {{id: acme-always-on, advertiser: acme, kind: always_on}}
partners:
  - id: p-bench
    api_keys: ["sha256:{zeros}"]
    channels: [email]
    campaigns: [acme-always-on]
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pin(cpu: int) -> list[str]:
    return (
        ["taskset", "-c", str(cpu)] if shutil.which("taskset") and (os.cpu_count() or 1) > 1 else []
    )


def _wait_http(url: str, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:  # noqa: S310 (loopback only)
                if resp.status < 500:
                    return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not answer within {timeout_s}s")


def _profile(pid: int, out: Path) -> subprocess.Popen[bytes]:
    """py-spy sampling process ``pid`` (the worker) until it gets SIGINT; on CPU 1, so the
    sampling does not take the worker's CPU (idle samples, as between rounds, are left out)."""
    spy = ROOT / ".venv" / "bin" / "py-spy"
    return subprocess.Popen(
        [*_pin(1), str(spy if spy.exists() else "py-spy"), "record", "--pid", str(pid),
         "--rate", "200", "--nonblocking", "--format", "raw", "--output", str(out)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


# --- the receiver (its own process) -------------------------------------------------------


#: The receiver's one answer, to every request (the hook and the health check alike).
ANSWER = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 15\r\n\r\n"
    b'{"status":"ok"}'
)
_LENGTH = re.compile(rb"\r\ncontent-length:[ \t]*(\d+)", re.IGNORECASE)
#: A request head longer than this is not one this receiver expects: the connection closes.
_MAX_HEAD = 65_536


class _Receiver(asyncio.Protocol):
    """A CRM that answers 200 at once, as cheaply as HTTP/1.1 allows: keep-alive, requests
    with a ``Content-Length`` body, read whole and dropped. An aiohttp server would cost the
    receiver's CPU (shared with Redis) about three times as much per request, enough on a
    fast machine to make the receiver, not the client, the bottleneck of a round."""

    def __init__(self) -> None:
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._body_left = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's does not subclass it

    def data_received(self, data: bytes) -> None:
        assert self._transport is not None
        buffer = self._buffer
        buffer += data
        answers = 0
        while True:
            if self._body_left:
                taken = min(self._body_left, len(buffer))
                del buffer[:taken]
                self._body_left -= taken
                if self._body_left:
                    break
                answers += 1
                continue
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(buffer) > _MAX_HEAD:
                    self._transport.close()
                    return
                break
            length = _LENGTH.search(buffer, 0, end + 2)
            # Read before the head is dropped: a match's groups are slices of the buffer.
            self._body_left = int(length.group(1)) if length else 0
            del buffer[: end + 4]
            if not self._body_left:
                answers += 1
        if answers:
            self._transport.write(ANSWER * answers)


def receive(port: int) -> None:
    async def serve() -> None:
        server = await asyncio.get_running_loop().create_server(_Receiver, "127.0.0.1", port)
        async with server:
            await server.serve_forever()

    try:
        import uvloop

        uvloop.run(serve())
    except ImportError:
        asyncio.run(serve())


# --- the two clients ----------------------------------------------------------------------


def _record(n: int) -> tuple[str, bytes]:
    import orjson

    lead_id = f"01930000-0000-7000-8000-{n:012d}"
    return lead_id, orjson.dumps(
        {
            "lead_id": lead_id, "campaign": "acme-always-on", "advertiser": "acme",
            "partner": "p-bench", "channel": "email", "ref": f"ref-{n}",
            "accepted_at_ms": int(time.time() * 1000),
            "lead": {"email": f"client{n}@example.fr", "first_name": "Jeanne",
                     "last_name": "Martin", "phone": "+33612345678", "postal_code": "75011",
                     "city": "Paris", "country": "FR", "consent": {"given": True}},
        }
    )  # fmt: skip


async def bare_client(url: str, total: int, concurrency: int) -> tuple[float, float]:
    """Requests per second of a plain aiohttp client posting a signed webhook body, and the
    CPU seconds it used per request."""
    import aiohttp

    from gateway.delivery.signing import webhook_headers

    key = __import__("base64").b64decode(SECRET.removeprefix("whsec_"))
    bodies = [_record(n) for n in range(total)]
    queue: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()
    for item in bodies:
        queue.put_nowait(item)

    async def run(session: aiohttp.ClientSession) -> None:
        while not queue.empty():
            lead_id, body = queue.get_nowait()
            headers = {"Content-Type": "application/json", "Idempotency-Key": lead_id}
            headers.update(webhook_headers([key], lead_id, int(time.time()), body))
            async with session.post(url, data=body, headers=headers) as response:
                await response.read()
                assert response.status == 200

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        started, cpu_s = time.perf_counter(), time.process_time()
        await asyncio.gather(*(run(session) for _ in range(concurrency)))
        return total / (time.perf_counter() - started), (time.process_time() - cpu_s) / total


async def worker_rate(redis_url: str, total: int) -> float:
    import redis.asyncio

    client = redis.asyncio.Redis.from_url(redis_url)
    stream = "lg:{a:acme}:deliveries"
    try:
        started = time.perf_counter()
        for start in range(0, total, 1000):
            async with client.pipeline(transaction=False) as pipe:
                for n in range(start, min(total, start + 1000)):
                    lead_id, record = _record(n)
                    pipe.xadd(
                        stream,
                        {"lead_id": lead_id, "accepted_at_ms": int(time.time() * 1000),
                         "record": record},
                    )  # fmt: skip
                await pipe.execute()
        while True:  # polled: the stream's emptiness is the only signal Redis gives
            if await client.xlen(stream) == 0:
                break
            await asyncio.sleep(0.005)
        return total / (time.perf_counter() - started)
    finally:
        await client.aclose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--leads", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--log-level", default="warning",
        help="the worker's LEADGATE_LOG_LEVEL (info: one JSON line per delivery, to /dev/null)",
    )  # fmt: skip
    parser.add_argument(
        "--profile", type=Path, metavar="FILE",
        help="record the worker with py-spy (pinned beside the receiver) into FILE, as "
             "collapsed stacks (the --format raw of py-spy, for flamegraph.pl or speedscope)",
    )  # fmt: skip
    parser.add_argument("--receive", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.receive:
        receive(args.receive)
        return 0
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass
    port = _free_port()
    tmp = Path(tempfile.mkdtemp(prefix="lg-dbench-"))
    sock = tmp / "redis.sock"
    procs: list[subprocess.Popen[bytes]] = []
    bares: list[float] = []
    workers: list[float] = []
    #: CPU seconds per lead of the bare client (this process) and of the worker process: less
    #: moved by the other work of a shared machine than the rates.
    bare_cpus: list[float] = []
    worker_cpus: list[float] = []
    #: How busy the receiver and Redis kept CPU 1 in each round (bare rounds, worker rounds):
    #: near 1.0 the measure is of CPU 1, not of the client on CPU 0.
    other_busy: tuple[list[float], list[float]] = ([], [])
    try:
        procs.append(subprocess.Popen(
            [*_pin(1), sys.executable, "-m", "bench.delivery_bench", "--receive", str(port)],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        ))  # fmt: skip
        procs.append(subprocess.Popen(
            [*_pin(1), "redis-server", "--port", "0", "--unixsocket", str(sock), "--save", "",
             "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        ))  # fmt: skip
        _wait_http(f"http://127.0.0.1:{port}/health")
        url = f"http://127.0.0.1:{port}/hook"
        config = tmp / "leadgate.yaml"
        config.write_text(CONFIG.format(port=port, concurrency=args.concurrency, zeros="0" * 64))
        metrics_port = _free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("LEADGATE_")}
        env.update(
            LEADGATE_REDIS_URL=f"unix://{sock}", LEADGATE_LOG_LEVEL=args.log_level,
            BENCH_WEBHOOK_SECRET=SECRET, PYTHONPATH=str(ROOT),
        )  # fmt: skip
        procs.append(subprocess.Popen(
            [*_pin(0), sys.executable, "-m", "gateway.cli", "worker", "--config", str(config),
             "--metrics-port", str(metrics_port)],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        ))  # fmt: skip
        _wait_http(f"http://127.0.0.1:{metrics_port}/healthz")
        spy = None if args.profile is None else _profile(procs[-1].pid, args.profile)
        everywhere = os.sched_getaffinity(0)
        # Rounds alternate the two on the same receiver (the machine's noise hits both);
        # the best of each is reported. The bare client is pinned where the worker runs.
        for _ in range(args.rounds):
            if _pin(0):
                os.sched_setaffinity(0, {0})
            other = _busy(procs[:2])
            rate, cpu_per_lead_s = asyncio.run(bare_client(url, args.leads, args.concurrency))
            bares.append(rate)
            bare_cpus.append(cpu_per_lead_s)
            other_busy[0].append(other())
            os.sched_setaffinity(0, everywhere)
            cpu_s = cpu_seconds([procs[-1].pid])
            other = _busy(procs[:2])
            workers.append(asyncio.run(worker_rate(f"unix://{sock}", args.leads)))
            worker_cpus.append((cpu_seconds([procs[-1].pid]) - cpu_s) / args.leads)
            other_busy[1].append(other())
        if spy is not None:
            spy.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
            spy.wait(timeout=60)
    finally:
        for proc in reversed(procs):
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(tmp, ignore_errors=True)
    cpu = platform.processor() or platform.machine()
    print(f"machine: {os.cpu_count()} CPUs, {cpu}, Python {platform.python_version()}, "
          f"{platform.system()} {platform.release()}")  # fmt: skip
    print(f"leads: {args.leads}, concurrency: {args.concurrency}, log level: {args.log_level}")
    bare, worker = max(bares), max(workers)
    print(f"rounds: {args.rounds}, best of each (all: bare {[round(b) for b in bares]}, "
          f"worker {[round(w) for w in workers]})")  # fmt: skip
    print(f"bare aiohttp client:     {bare:8.0f} requests/s")
    print(f"leadgate worker process: {worker:8.0f} deliveries/s  ({worker / bare:.2f}x)")
    # Medians, and the ratio of each round to the bare round just before it: on a shared
    # machine the noise moves both, and these say more than the two best figures.
    pairs = [w / b for b, w in zip(bares, workers, strict=True)]
    print(f"medians: bare {statistics.median(bares):.0f}, worker {statistics.median(workers):.0f} "
          f"({statistics.median(workers) / statistics.median(bares):.2f}x); "
          f"per-round ratio median {statistics.median(pairs):.2f}x")  # fmt: skip
    if worker_cpus and min(worker_cpus) > 0:
        bare_us, worker_us = statistics.median(bare_cpus), statistics.median(worker_cpus)
        print(
            f"CPU per lead (medians): bare {bare_us * 1e6:.0f} us, worker {worker_us * 1e6:.0f} us"
            f" (bare / worker {bare_us / worker_us:.2f}x)"
        )
    if other_busy[0]:
        print(
            f"receiver + Redis, share of a CPU (medians): bare rounds "
            f"{statistics.median(other_busy[0]):.2f}, worker rounds "
            f"{statistics.median(other_busy[1]):.2f}"
        )
    return 0


def _busy(procs: list[subprocess.Popen[bytes]]) -> Callable[[], float]:
    """Starts a measure of the CPU the ``procs`` use together; the function returned gives
    it as a share of one CPU since the start (1.0: one CPU busy all the time)."""
    pids = [p.pid for p in procs]
    started, used = time.perf_counter(), cpu_seconds(pids)
    return lambda: (cpu_seconds(pids) - used) / (time.perf_counter() - started)


if __name__ == "__main__":
    sys.exit(main())
