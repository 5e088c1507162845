"""Test helpers: our own redis-server processes, hand-built decision requests, store read-back.

``RedisServer`` owns one process: on a unix socket (the session server) or on a TCP port
(outage tests, which kill it and start it again on the same port). Tests never touch a Redis
they did not start.
"""

from __future__ import annotations

import dataclasses
import gc
import itertools
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

import orjson
import pytest
import redis
import redis.asyncio
from redis.asyncio.cluster import RedisCluster

from gateway.config.model import CalendarPeriod, CapRule, CapSubject, CapWindow, DedupScope
from gateway.decision.engine import DecisionEngine
from gateway.decision.model import (
    CapCheck,
    DecisionOutcome,
    DecisionRequest,
    DedupCheck,
    IdempotencyRef,
    PersonReservation,
)
from gateway.decision.plan import dedup_check
from gateway.storage import keys
from gateway.storage.base import Store
from gateway.storage.cluster import is_cluster_url
from gateway.storage.memory import MemoryStore
from gateway.types import AdvertiserId, CampaignId, ChannelId, Fingerprint, LeadId, PartnerId

#: Keeps Redis busy for ARGV[1] milliseconds (it answers nothing else meanwhile), then answers
#: how it kept time. Redis 8 freezes TIME for a script's whole run and gives scripts
#: ``os.clock`` (CPU seconds: a busy loop spends them as they pass); Redis 7 has no ``os``
#: (``rawget`` looks without tripping the guard on globals) and lets TIME move. On Redis 8 the
#: milliseconds are CPU time: on a loaded machine the script lasts longer than asked (``make
#: test-redis8`` leaves out the tests that need the wall clock).
BUSY_SCRIPT = """
local limit_ms = tonumber(ARGV[1])
local os_lib = rawget(_G, "os")
if os_lib and os_lib.clock then
  local start = os_lib.clock()
  while (os_lib.clock() - start) * 1000 < limit_ms do end
  return "clock"
end
local t = redis.call("TIME")
local start = t[1] * 1000 + t[2] / 1000
local now = start
while now - start < limit_ms do
  t = redis.call("TIME")
  now = t[1] * 1000 + t[2] / 1000
end
return "time"
"""
INSTALL_HINT = "redis-server is not on PATH: run ./.ci/install-redis (tests start their own)"
#: How long a fresh redis-server may take to answer PING.
START_TIMEOUT_S = 10.0


def installed(name: str, hint: str) -> str:
    """The binary ``name`` on PATH; fails the test (never skips) with ``hint`` when missing."""
    binary = shutil.which(name)
    if binary is None:
        pytest.fail(hint, pytrace=False)
    return binary


def redis_server_binary() -> str:
    """The Debian ``redis-server`` binary; fails the test run (never skips) when missing."""
    return installed("redis-server", INSTALL_HINT)


def free_port() -> int:
    """A TCP port on 127.0.0.1 nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


#: ``spare_port``'s ports: a block per pytest-xdist worker, below the ephemeral range.
SPARE_PORTS_PER_WORKER = 200
_spare_ports: Iterator[int] | None = None


def _ephemeral_low() -> int:
    """The first port of the kernel's ephemeral range (32768 when it cannot be read)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def spare_port() -> int:
    """A TCP port on 127.0.0.1 for a server that is down for part of a test, to be started
    again on it (``spare_redis``), that nothing else the tests start can take meanwhile.

    ``free_port`` (every other test server's) and the local end of every outgoing connection
    take their ports from the kernel's ephemeral range: a port they handed out and left
    unbound while its server was down could be taken by another test's server, whose answers
    the test then read as its own. These are below that range, in a block of
    ``SPARE_PORTS_PER_WORKER`` for each pytest-xdist worker (``PYTEST_XDIST_WORKER`` ``gwN``),
    used in turn and each checked free when handed out."""
    global _spare_ports
    if _spare_ports is None:
        worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
        first = 20_000 + (int(worker) if worker.isdigit() else 0) * SPARE_PORTS_PER_WORKER
        if first + SPARE_PORTS_PER_WORKER > _ephemeral_low():
            raise RuntimeError(f"no spare ports below the ephemeral range for worker {worker}")
        _spare_ports = itertools.cycle(range(first, first + SPARE_PORTS_PER_WORKER))
    for port in itertools.islice(_spare_ports, SPARE_PORTS_PER_WORKER):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:  # taken by something outside the tests, or not yet released
                continue
        return port
    raise RuntimeError("every spare port of this worker is taken")


def answers_ping(url: str) -> bool:
    client = redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
    try:
        return bool(client.ping())
    except (redis.ConnectionError, redis.TimeoutError, OSError):
        return False
    finally:
        client.close()


def wait_for_ping(url: str, process: subprocess.Popen[bytes], timeout_s: float) -> None:
    """Block until the server at ``url`` answers PING; fail if ``process`` dies or time runs out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"redis-server for {url} exited with {process.returncode}", pytrace=False)
        if answers_ping(url):
            return
        time.sleep(0.01)
    pytest.fail(f"redis-server at {url} did not answer PING within {timeout_s}s", pytrace=False)


class RedisServer:
    """One redis-server process started by the tests: in-memory only, ``noeviction``.

    Give ``unix_socket`` for a unix-socket server (TCP disabled with ``--port 0``), or
    ``port`` for a TCP server on 127.0.0.1 that outage tests can ``kill`` and ``start`` again
    on the same port.
    """

    def __init__(
        self, workdir: Path, *, unix_socket: Path | None = None, port: int | None = None
    ) -> None:
        if (unix_socket is None) == (port is None):
            raise ValueError("give exactly one of unix_socket and port")
        self.workdir = workdir
        self.unix_socket = unix_socket
        self.port = port
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        if self.unix_socket is not None:
            return f"unix://{self.unix_socket}"
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def _argv(self) -> list[str]:
        argv = [
            redis_server_binary(),
            "--save", "",
            "--appendonly", "no",
            "--maxmemory-policy", "noeviction",
            "--dir", str(self.workdir),
            "--daemonize", "no",
            "--loglevel", "warning",
            "--logfile", str(self.workdir / "redis.log"),
        ]  # fmt: skip
        if self.unix_socket is not None:
            argv += [
                "--port",
                "0",
                "--unixsocket",
                str(self.unix_socket),
                "--unixsocketperm",
                "700",
            ]
        else:
            argv += ["--port", str(self.port), "--bind", "127.0.0.1"]
        return argv

    def start(self) -> None:
        """Start the server (again, after ``kill``, on the same socket or port) and wait for it."""
        if self.running:
            raise RuntimeError(f"redis-server at {self.url} already runs")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._process = subprocess.Popen(
            self._argv(), stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
        )
        try:
            wait_for_ping(self.url, self._process, START_TIMEOUT_S)
        except BaseException:
            log = self.workdir / "redis.log"
            print(log.read_text(errors="replace") if log.exists() else "(no redis.log)")
            self.kill()
            raise

    def kill(self) -> None:
        """SIGKILL: the server vanishes as in a crash, with everything it held in memory."""
        self._stop(signal.SIGKILL)

    def stop(self) -> None:
        self._stop(signal.SIGTERM)

    def freeze(self) -> None:
        """SIGSTOP: the server keeps its sockets (connections are accepted by the kernel) and
        answers nothing, as a Redis hung on a slow disk or a paused VM."""
        if self._process is not None:
            self._process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        """SIGCONT after ``freeze``: the server answers again."""
        if self._process is not None:
            self._process.send_signal(signal.SIGCONT)

    def _stop(self, sig: signal.Signals) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(sig)
            process.send_signal(signal.SIGCONT)  # a frozen server must run to die of SIGTERM
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def restart(self) -> None:
        """Kill the server and start a fresh one on the same port (or socket)."""
        self.kill()
        self.start()

    def client(self) -> redis.Redis:
        """A plain synchronous client to this server (the caller closes it)."""
        return redis.Redis.from_url(self.url, decode_responses=True)


# -- hand-built decision requests ---------------------------------------------------------------
#
# The contract tests build ``DecisionRequest``s directly (not through ``decision.plan``) so each
# test controls every window, limit and ``now_ms``; keys still come from ``storage.keys``.

ADVERTISER = AdvertiserId("acme")
CAMPAIGN = CampaignId("acme-always-on")
PARTNER = PartnerId("p-coreg")
CHANNEL = ChannelId("coreg")
#: An arbitrary instant (2026-09-22T10:13:20Z), epoch ms.
T0 = 1_790_072_000_000
MINUTE_MS = 60_000
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS

_lead_numbers = itertools.count(1)


def new_lead_id() -> LeadId:
    return LeadId(f"lead-{next(_lead_numbers):08d}")


def fingerprint(person: str, key_id: str = "k1") -> Fingerprint:
    """A stand-in for a keyed fingerprint of ``person`` (never a raw identity)."""
    return Fingerprint(f"{key_id}.{person}")


@dataclasses.dataclass(frozen=True)
class DedupSpec:
    """A dedup check before its instant is known: ``request`` makes the ``DedupCheck``
    (the generations a window reaches depend on ``now_ms``)."""

    reason: str
    space: keys.SeenSpace
    fingerprint: Fingerprint
    window_ms: int
    retention_ms: int
    remember: bool

    def at(self, now_ms: int) -> DedupCheck:
        return dedup_check(
            self.reason,
            self.space,
            keys.seen_mark(self.fingerprint),
            now_ms=now_ms,
            window_ms=self.window_ms,
            retention_ms=self.retention_ms,
            remember=self.remember,
        )


def dedup(
    person: str,
    scope: DedupScope = DedupScope.CAMPAIGN,
    *,
    window_ms: int = 30 * DAY_MS,
    retention_ms: int | None = None,
    remember: bool = True,
    key_id: str = "k1",
    advertiser: AdvertiserId = ADVERTISER,
    campaign: CampaignId = CAMPAIGN,
    channel: ChannelId = CHANNEL,
) -> DedupSpec:
    return DedupSpec(
        f"duplicate.{scope.value}",
        keys.SeenSpace(advertiser, scope, campaign, channel),
        fingerprint(person, key_id),
        window_ms,
        window_ms if retention_ms is None else retention_ms,
        remember,
    )


def bucket_mates() -> tuple[str, str]:
    """Two people whose marks land in the same hash (the same bucket of a scope)."""
    first_in: dict[int, str] = {}
    for n in range(100_000):
        name = f"mate-{n}"
        bucket = keys.seen_mark(fingerprint(name)).bucket
        if bucket in first_in:
            return first_in[bucket], name
        first_in[bucket] = name
    raise AssertionError("no two people share a bucket")


def calendar_cap(
    limit: int,
    *,
    bucket: str = "2026-09-22",
    span_ms: int = 14 * HOUR_MS,
    subject: CapSubject = CapSubject.CAMPAIGN,
    period: CalendarPeriod = CalendarPeriod.DAY,
    advertiser: AdvertiserId = ADVERTISER,
    campaign: CampaignId = CAMPAIGN,
    partner: PartnerId = PARTNER,
) -> CapCheck:
    rule = CapRule(subject, CapWindow(period=period), limit)
    key = keys.cap(advertiser, rule, campaign, partner, CHANNEL, bucket)
    return CapCheck(rule.reason, key, limit, rolling=False, span_ms=span_ms)


def rolling_cap(
    limit: int,
    window_ms: int,
    *,
    subject: CapSubject = CapSubject.PARTNER,
    advertiser: AdvertiserId = ADVERTISER,
    campaign: CampaignId = CAMPAIGN,
    partner: PartnerId = PARTNER,
) -> CapCheck:
    rule = CapRule(subject, CapWindow(rolling_s=window_ms // 1000), limit)
    key = keys.cap(advertiser, rule, campaign, partner, CHANNEL, str(window_ms // 1000))
    return CapCheck(rule.reason, key, limit, rolling=True, span_ms=window_ms)


def reservation(
    person: str,
    unit: str,
    *,
    network_window_ms: int = 0,
    network_retention_ms: int | None = None,
    pressure_limit: int = 0,
    pressure_window_ms: int = 0,
) -> PersonReservation:
    """One identity's reservation; ``request`` fills in its lead id, instant and test mode."""
    fp = fingerprint(person)
    return PersonReservation(
        seen_key=keys.person_network_seen(fp),
        pressure_key=keys.person_pressure(fp),
        lead_id=LeadId(""),
        unit=unit,
        now_ms=0,
        dry_run=False,
        network_window_ms=network_window_ms,
        network_retention_ms=(
            network_window_ms if network_retention_ms is None else network_retention_ms
        ),
        pressure_limit=pressure_limit,
        pressure_window_ms=pressure_window_ms,
    )


def idempotency(
    key: str,
    body: str,
    *,
    ttl_ms: int = DAY_MS,
    advertiser: AdvertiserId = ADVERTISER,
    partner: PartnerId = PARTNER,
) -> IdempotencyRef:
    return IdempotencyRef(
        claim_key=keys.idempotency_claim(partner, key),
        answer_key=keys.idempotency_answer(advertiser, partner, key),
        body_digest=body,
        ttl_ms=ttl_ms,
    )


def request(
    now_ms: int,
    *,
    dedup: Sequence[DedupSpec] = (),
    caps: Sequence[CapCheck] = (),
    person: Sequence[PersonReservation] = (),
    dry_run: bool = False,
    advertiser: AdvertiserId = ADVERTISER,
    idempotency: IdempotencyRef | None = None,
    lead_id: LeadId | None = None,
) -> DecisionRequest:
    lead = new_lead_id() if lead_id is None else lead_id
    return DecisionRequest(
        lead_id=lead,
        now_ms=now_ms,
        dry_run=dry_run,
        dedup=tuple(spec.at(now_ms) for spec in dedup),
        caps=tuple(caps),
        person=tuple(
            dataclasses.replace(r, lead_id=lead, now_ms=now_ms, dry_run=dry_run) for r in person
        ),
        stream_key=keys.deliveries(advertiser),
        payload=orjson.dumps({"lead_id": lead, "advertiser": advertiser}),
        idempotency=idempotency,
        slot_anchor=keys.advertiser_tag(advertiser) + ":anchor",
    )


def decision_keys(rq: DecisionRequest) -> list[str]:
    """Every key the advertiser-slot decision of ``rq`` may touch."""
    dedup = [key for check in rq.dedup for key in check.keys]
    found = [rq.stream_key, rq.slot_anchor, *dedup, *(c.key for c in rq.caps)]
    found += [c.holds for c in rq.caps if c.holds]
    if rq.idempotency is not None:
        found.append(rq.idempotency.answer_key)
    if rq.hold is not None:
        found.append(rq.hold.record_key)
    return found


async def decide_one(engine: DecisionEngine, rq: DecisionRequest) -> DecisionOutcome:
    """Run one request that carries no conflicting Idempotency-Key: its outcome."""
    (outcome,) = await engine.run([rq])
    assert outcome is not None, "an Idempotency-Key conflict where none was expected"
    return outcome


# -- reading a store back -----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Delivery:
    lead_id: str
    accepted_at_ms: int
    record: bytes


def plain_client(url: str, *, decode_responses: bool = False) -> Any:
    """A redis-py client for reading what a test's store wrote: over one Redis, or over every
    node of the cluster a ``redis+cluster://`` URL names (its ``scan_iter`` reads them all)."""
    if is_cluster_url(url):
        parts = urlsplit(url)
        return RedisCluster(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or 6379,
            decode_responses=decode_responses,
        )
    return redis.asyncio.Redis.from_url(url, decode_responses=decode_responses)


class StoreView:
    """What a test reads back from either store without going through the decision contract:
    the delivery streams (embedded: ``store.streams``; Redis: XRANGE with a plain client)."""

    def __init__(self, store: Store, redis_url: str | None) -> None:
        self.store = store
        self.redis_url = redis_url

    async def deliveries(self, advertiser: AdvertiserId = ADVERTISER) -> list[Delivery]:
        stream = keys.deliveries(advertiser)
        if isinstance(self.store, MemoryStore):
            return [
                Delivery(e.lead_id, e.accepted_at_ms, e.record)
                for e in self.store.streams.get(stream, [])
            ]
        assert self.redis_url is not None
        client = plain_client(self.redis_url)
        try:
            entries = cast("list[tuple[bytes, dict[bytes, bytes]]]", await client.xrange(stream))
        finally:
            await client.aclose()
        return [
            Delivery(fields[b"lead_id"].decode(), int(fields[b"accepted_at_ms"]), fields[b"record"])
            for _, fields in entries
        ]

    async def key_names(self) -> list[str]:
        """Every key the store holds (embedded: including expired ones not yet swept)."""
        if isinstance(self.store, MemoryStore):
            return self.store.keys()
        assert self.redis_url is not None
        client = plain_client(self.redis_url, decode_responses=True)
        try:
            # The store's own note of when this Redis first served the dedup layout (set at
            # first contact, not by any lead).
            return [
                key async for key in client.scan_iter(count=1000) if key != keys.SEEN_LAYOUT_SINCE
            ]
        finally:
            await client.aclose()


@contextmanager
def cyclic_garbage() -> Iterator[list[object]]:
    """The objects of leadgate's own modules that what runs inside the block left in
    reference cycles (freed only by the garbage collector, not when their last reference
    goes): the list is filled when the block ends. The collector is off meanwhile, so nothing
    is freed before it is counted; the cycles are freed after."""
    gc.collect()
    found: list[object] = []
    gc.disable()
    try:
        yield found
    finally:
        gc.set_debug(gc.DEBUG_SAVEALL)
        try:
            gc.collect()
            found += [o for o in gc.garbage if type(o).__module__.startswith("gateway.")]
        finally:
            gc.set_debug(0)
            gc.garbage.clear()
            gc.enable()
            gc.collect()


def run_sources(code: str, args: Sequence[str] = (), timeout_s: float = 120) -> Any:
    """Runs ``code`` in a fresh interpreter on the gateway's sources (``LEADGATE_COMPILED=0``:
    the modules compiled by mypyc imported from their ``.py``, so profilers and opcode
    counts see them function by function) with ``args``, and returns what it printed as
    JSON."""
    done = subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=Path(__file__).resolve().parents[1],
        env={**os.environ, "LEADGATE_COMPILED": "0"},
        capture_output=True,
        timeout=timeout_s,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()
    return orjson.loads(done.stdout)
