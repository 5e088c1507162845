"""The bench's own HTTP client (aiohttp): closed loop (fixed concurrency) and open loop.

Open loop sends request ``i`` at ``start + i / rate`` whatever the answers do (wrk2 is not
packaged, and wrk itself is closed loop); a request's latency runs from its *scheduled* time,
so a server that falls behind shows it in the latency instead of slowing the client down
(no coordinated omission). At most ``max_in_flight`` requests are outstanding: one due while
the bound is reached is not sent and is counted as ``missed``.

Every answer is read: a single lead's ``decision``, a batch's ``counts``, 422 as ``invalid``;
any other status or a transport error is an error.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import aiohttp
import orjson

from bench.generate import Request

#: Give up on one request after this long (wrk is run with the same ``--timeout``).
REQUEST_TIMEOUT_S = 10.0


@dataclass
class ClientRun:
    """What one run of the client saw. ``samples``: (start offset s, latency s), answered ones."""

    samples: list[tuple[float, float]] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    decisions: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    requests: int = 0
    leads: int = 0
    #: accepted, duplicate, invalid the generator expects for the requests answered
    expected: list[int] = field(default_factory=lambda: [0, 0, 0])
    elapsed_s: float = 0.0


class _Sender:
    def __init__(self, session: aiohttp.ClientSession, base_url: str, run: ClientRun) -> None:
        self.session = session
        self.base_url = base_url
        self.run = run
        self.t0 = 0.0

    async def send(self, request: Request, scheduled: float) -> None:
        run = self.run
        path = "/v1/leads" if request.batch == 1 else "/v1/leads/batch"
        headers = {"Authorization": f"Bearer {request.api_key}", "Content-Type": "application/json"}
        try:
            async with self.session.post(
                self.base_url + path, data=request.body, headers=headers
            ) as resp:
                body = await resp.read()
                status = resp.status
        except TimeoutError:
            run.errors["timeout"] += 1
            return
        except aiohttp.ClientError as exc:
            run.errors[type(exc).__name__] += 1
            return
        done = time.perf_counter()
        run.samples.append((scheduled - self.t0, done - scheduled))
        run.statuses[status] += 1
        run.requests += 1
        run.leads += request.batch
        for i, n in enumerate(request.expected):
            run.expected[i] += n
        if status == 422 and request.batch == 1:
            run.decisions["invalid"] += 1
        elif status != 200:
            run.errors[f"http {status}"] += 1
        elif request.batch == 1:
            run.decisions[str(orjson.loads(body).get("decision", "answered"))] += 1
        else:
            for decision, n in orjson.loads(body)["counts"].items():
                run.decisions[str(decision)] += int(n)


def _session(connections: int) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(limit=connections, limit_per_host=connections)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    return aiohttp.ClientSession(connector=connector, timeout=timeout)


async def closed_loop(
    base_url: str,
    requests: Sequence[Request],
    *,
    concurrency: int,
    duration_s: float,
    once: bool = False,
) -> ClientRun:
    """``concurrency`` requests always in flight for ``duration_s`` (cycling the bodies), or,
    with ``once``, until every body was sent once (the memory scenario)."""
    run = ClientRun()
    next_index = 0
    async with _session(concurrency) as session:
        sender = _Sender(session, base_url, run)
        sender.t0 = time.perf_counter()
        deadline = sender.t0 + duration_s

        async def worker() -> None:
            nonlocal next_index
            while once or time.perf_counter() < deadline:
                if once and next_index >= len(requests):
                    return
                request = requests[next_index % len(requests)]
                next_index += 1
                await sender.send(request, time.perf_counter())

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        run.elapsed_s = time.perf_counter() - sender.t0
    return run


async def open_loop(
    base_url: str,
    requests: Sequence[Request],
    *,
    rate: float,
    duration_s: float,
    max_in_flight: int,
) -> ClientRun:
    """``rate`` requests per second on a fixed schedule for ``duration_s``."""
    run = ClientRun()
    total = int(rate * duration_s)
    in_flight: set[asyncio.Task[None]] = set()
    async with _session(max_in_flight) as session:
        sender = _Sender(session, base_url, run)
        t0 = sender.t0 = time.perf_counter()
        for i in range(total):
            due = t0 + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            if len(in_flight) >= max_in_flight:
                run.errors["missed"] += 1
                continue
            task = asyncio.create_task(sender.send(requests[i % len(requests)], due))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
        if in_flight:  # every request has its own timeout: this wait is bounded
            await asyncio.wait(in_flight, timeout=REQUEST_TIMEOUT_S + 5)
        run.elapsed_s = time.perf_counter() - t0
    return run
