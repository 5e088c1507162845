"""Erasing one person from a large delivery queue: seconds per ``RedisQueue.erase``.

    .venv/bin/python -m bench.erase_bench [--new 100000] [--dead 1000] [--runs 3]

Starts its own redis-server on a free 127.0.0.1 port (never the machine's Redis), fills one
advertiser's queue with ``--new`` accepted leads (100 of them in flight with a worker) and
``--dead`` dead letters, each a realistic record of a different person, plus, per run, one
person with three queued leads (one in flight) and one dead letter. Each run erases one such
person and checks that exactly those four leads went. Two ``matches`` are timed:

* ``parse``: every record is parsed (orjson) and its email and phone compared;
* ``prefilter``: a bytes search for the email or phone first, parsing only on a hit.

Goal (issue 8): under 1 s for 100,000 queued leads.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import redis

from gateway.delivery.queue import RedisQueue
from gateway.delivery.queue_base import Erased
from gateway.storage import keys
from gateway.types import AdvertiserId

ADVERTISER = AdvertiserId("acme")
START_TIMEOUT_S = 10.0
FILL_BATCH = 5000
IN_FLIGHT = 100


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def person(n: int) -> tuple[str, str]:
    return f"person.{n}@example{n % 97}.org", f"+336{n % 100_000_000:08d}"


def record(lead_id: str, n: int, accepted_at_ms: int) -> bytes:
    """An accepted-lead record as ``decision.plan`` builds it (about 550 bytes)."""
    email, phone = person(n)
    lead = {
        "campaign": "acme-always-on",
        "channel": "email",
        "ref": f"sub-{n}",
        "email": email,
        "phone": phone,
        "first_name": "Jeanne",
        "last_name": "Martin",
        "postal_code": "75011",
        "city": "Paris",
        "country": "FR",
        "ip": "203.0.113.9",
        "consent": {"given": True, "text": "J'accepte", "at": "2026-11-22T10:00:00Z"},
        "extra": {"gclid": "abc123", "sub_id": "7"},
    }
    return orjson.dumps(
        {
            "lead_id": lead_id,
            "campaign": "acme-always-on",
            "advertiser": ADVERTISER,
            "partner": "p-mailfox",
            "channel": "email",
            "ref": lead["ref"],
            "accepted_at_ms": accepted_at_ms,
            "lead": lead,
        }
    )


def people(new: int, targets: int) -> Iterator[int]:
    """Who each new lead belongs to: everyone different, but each target (numbered from
    ``new``) appears three times, spread over the stream (first, middle, last third)."""
    spots = {}
    for t in range(targets):
        for third in range(3):
            spots[third * new // 3 + 1 + t] = new + t
    for i in range(new):
        yield spots.get(i, i)


def fill(url: str, new: int, dead: int, targets: int) -> None:
    client = redis.Redis.from_url(url)
    try:
        now = int(time.time() * 1000)
        stream = keys.deliveries(ADVERTISER)
        pipe = client.pipeline(transaction=False)
        for i, n in enumerate(people(new, targets)):
            lead_id = f"lead-{i:09d}"
            pipe.xadd(stream, {"lead_id": lead_id, "accepted_at_ms": now, "record": record(
                lead_id, n, now)})  # fmt: skip
            if len(pipe) >= FILL_BATCH:
                pipe.execute()
        dead_stream = keys.delivery_dead(ADVERTISER)
        for i in range(dead):
            n = new + i if i < targets else new + targets + i
            lead_id = f"dead-{i:09d}"
            pipe.xadd(dead_stream, {
                "lead_id": lead_id, "accepted_at_ms": now, "dead_at_ms": now, "attempts": 3,
                "reason": "attempts_exhausted", "status": 503, "detail": "HTTP 503",
                "excerpt": "", "record": record(lead_id, n, now),
            })  # fmt: skip
            if len(pipe) >= FILL_BATCH:
                pipe.execute()
        pipe.execute()
    finally:
        client.close()


def parse_matcher(email: str, phone: str) -> Callable[[bytes], bool]:
    def matches(rec: bytes) -> bool:
        try:
            lead: Any = orjson.loads(rec)["lead"]
        except (ValueError, KeyError, TypeError):
            return False
        return bool(lead.get("email") == email or lead.get("phone") == phone)

    return matches


def prefilter_matcher(email: str, phone: str) -> Callable[[bytes], bool]:
    parse = parse_matcher(email, phone)
    needles = (email.encode(), phone.encode())

    def matches(rec: bytes) -> bool:
        return any(n in rec for n in needles) and parse(rec)

    return matches


async def measure(url: str, new: int, runs: int) -> dict[str, list[float]]:
    queue = RedisQueue(url)
    timings: dict[str, list[float]] = {"parse": [], "prefilter": []}
    try:
        await queue.prepare([ADVERTISER])
        # A worker holds the first leads (one of each target's among them).
        assert len(await queue.read(ADVERTISER, "worker-a", IN_FLIGHT, 0)) == IN_FLIGHT
        target = new
        for _ in range(runs):
            for name, make in (("parse", parse_matcher), ("prefilter", prefilter_matcher)):
                started = time.perf_counter()
                erased = await queue.erase(ADVERTISER, make(*person(target)))
                timings[name].append(time.perf_counter() - started)
                assert erased == Erased(undelivered=3, dead_letters=1), erased
                target += 1
    finally:
        await queue.close()
    return timings


def start_redis(port: int, workdir: str) -> subprocess.Popen[bytes]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not on PATH: run ./.ci/install-redis")
    server = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
         "no", "--dir", workdir],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + START_TIMEOUT_S
    client = redis.Redis(port=port, socket_connect_timeout=1)
    try:
        while True:
            try:
                client.ping()
                return server
            except redis.ConnectionError:
                if time.monotonic() > deadline or server.poll() is not None:
                    server.terminate()
                    raise SystemExit("redis-server did not start") from None
                time.sleep(0.05)
    finally:
        client.close()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--new", type=int, default=100_000)
    parser.add_argument("--dead", type=int, default=1_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    targets = 2 * args.runs
    with tempfile.TemporaryDirectory(prefix="lg-erase-") as workdir:
        port = free_port()
        server = start_redis(port, workdir)
        try:
            url = f"redis://127.0.0.1:{port}/0"
            started = time.perf_counter()
            fill(url, args.new, max(args.dead, targets), targets)
            filled_s = time.perf_counter() - started
            print(
                f"queue of {args.new:,} new leads ({IN_FLIGHT} in flight) + "
                f"{args.dead:,} dead letters filled in {filled_s:.1f} s"
            )
            timings = asyncio.run(measure(url, args.new, args.runs))
        finally:
            server.terminate()
            server.wait(timeout=10)
    for name, seconds in timings.items():
        median = statistics.median(seconds)
        print(
            f"erase one person ({name} matcher): median {median:.3f} s, "
            f"min {min(seconds):.3f} s, max {max(seconds):.3f} s over {len(seconds)} runs"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
