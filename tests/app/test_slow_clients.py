"""Slow and idle clients cannot deny service, on the real process.

A client may take as long as it likes neither to send a request's head (a slow-loris trickles
a header a byte at a time, on a new connection or the next request of a kept-alive one), nor
its body, nor to send anything at all on a kept-alive connection; and a flood of such clients
must neither exhaust the process's file descriptors (new clients reset, a reload failing with
"Too many open files") nor lock ops out. Every wait below is bounded; raw sockets, loopback
only.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import signal
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import aiohttp
import pytest
import yaml
from http_support import post_lead
from processes import EXAMPLE_CONFIG, GatewayLauncher, GatewayProcess, wait_until
from prom_support import sample
from support import RedisServer, free_port

ADMIN_TOKEN = "admin-" + "s" * 40
HEAD_TIMEOUT_S = 2
BODY_TIMEOUT_S = 2
KEEPALIVE_TIMEOUT_S = 2
#: The gateway's open-file limit in the flood test: its derived connection bound is then
#: small enough to reach with a few dozen sockets.
OPEN_FILES = 256
#: Longest a test waits for the gateway to act on a deadline it set (never an upper bound
#: on how fast it acts: a loaded CI machine is slow; a hang fails instead of stalling).
WAIT_S = 30.0


def write_config(path: Path, **server: object) -> Path:
    """The example config with ``server`` settings, its rule packs found from anywhere."""
    config = yaml.safe_load(EXAMPLE_CONFIG.read_text(encoding="utf-8"))
    config["rules_dir"] = str((EXAMPLE_CONFIG.parent / config.get("rules_dir", "rules")).resolve())
    config["server"] = {**config.get("server", {}), **server}
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


class Raw:
    """One TCP connection to the gateway, spoken to byte by byte."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, port: int) -> Raw:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def send(self, data: bytes) -> bool:
        """Write ``data``; False once the gateway has closed the connection."""
        try:
            self.writer.write(data)
            await self.writer.drain()
        except (ConnectionError, OSError):
            return False
        return True

    async def read_all(self, timeout_s: float = WAIT_S) -> bytes:
        """Everything until the gateway closes (a reset ends it too)."""
        chunks: list[bytes] = []
        with contextlib.suppress(ConnectionError, OSError):
            async with asyncio.timeout(timeout_s):
                while chunk := await self.reader.read(65536):
                    chunks.append(chunk)
        return b"".join(chunks)

    async def read_response(self) -> bytes:
        """One response with a Content-Length body (the connection stays open)."""
        async with asyncio.timeout(WAIT_S):
            head = await self.reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            return head + await self.reader.readexactly(length)

    async def trickle_until_closed(self, prefix: bytes, byte: bytes = b"x") -> bytes:
        """Send ``prefix``, then one byte every 0.2 s until the gateway closes (at most
        ``WAIT_S``); what it answered."""
        await self.send(prefix)
        answered = b""

        async def drip() -> None:
            for _ in range(int(WAIT_S / 0.2)):
                if not await self.send(byte):
                    return
                await asyncio.sleep(0.2)

        dripping = asyncio.ensure_future(drip())
        try:
            answered = await self.read_all()
        finally:
            dripping.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await dripping
        return answered

    def close(self) -> None:
        self.writer.close()


def status_of(answer: bytes) -> int | None:
    if not answer.startswith(b"HTTP/1.1 "):
        return None
    return int(answer[9:12])


def problem_of(answer: bytes) -> dict[str, object]:
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b"application/problem+json" in head, head
    parsed = json.loads(body)
    assert isinstance(parsed, dict)
    return parsed


LEAD_HEAD = (
    b"POST /v1/leads HTTP/1.1\r\nHost: gateway\r\nAuthorization: Bearer demo-mailfox-key\r\n"
    b"Content-Type: application/json\r\n"
)


# --- the deadlines, one by one -----------------------------------------------------------


#: The admin port of the ``deadlines`` gateway.
ADMIN_PORT = free_port()


@pytest.fixture(scope="module")
def deadlines(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    workdir = tmp_path_factory.mktemp("slow-clients")
    launcher = GatewayLauncher(workdir)
    config = write_config(
        workdir / "leadgate.yaml",
        head_timeout_s=HEAD_TIMEOUT_S,
        body_timeout_s=BODY_TIMEOUT_S,
        keepalive_timeout_s=KEEPALIVE_TIMEOUT_S,
    )
    env = {"LEADGATE_ADMIN_TOKEN": ADMIN_TOKEN, "LEADGATE_ADMIN_PORT": str(ADMIN_PORT)}
    try:
        yield launcher.start(config, env=env)
    finally:
        launcher.close()


def timed_out(gateway: GatewayProcess, listener: str, phase: str) -> float:
    return sample(
        gateway.metrics(), "leadgate_connections_timed_out_total", listener=listener, phase=phase
    )


async def test_a_slow_head_is_answered_408_and_closed(deadlines: GatewayProcess) -> None:
    before = timed_out(deadlines, "public", "head")
    raw = await Raw.open(deadlines.port)
    try:
        answer = await raw.trickle_until_closed(LEAD_HEAD + b"X-Slow: ")
    finally:
        raw.close()
    assert status_of(answer) == 408, answer
    assert problem_of(answer)["type"] == "urn:leadgate:problem:request-timeout"
    assert b"Connection: close" in answer
    assert timed_out(deadlines, "public", "head") == before + 1


async def test_a_slow_head_on_a_kept_alive_connection_is_cut_too(
    deadlines: GatewayProcess,
) -> None:
    """The second request of a connection gets the same head deadline as the first; the
    connection is closed without a 408 (a client could take it for the answer to a request
    it pipelined)."""
    raw = await Raw.open(deadlines.port)
    try:
        await raw.send(b"GET /healthz HTTP/1.1\r\nHost: gateway\r\n\r\n")
        first = await raw.read_response()
        assert status_of(first) == 200, first
        before = timed_out(deadlines, "public", "head")
        answer = await raw.trickle_until_closed(b"GET /healthz HTTP/1.1\r\nX-Slow: ")
    finally:
        raw.close()
    assert answer == b""
    assert timed_out(deadlines, "public", "head") == before + 1


async def test_a_connection_that_sends_nothing_is_closed(deadlines: GatewayProcess) -> None:
    raw = await Raw.open(deadlines.port)
    try:
        answer = await raw.read_all()
    finally:
        raw.close()
    assert answer == b""  # closed without a word: there was no request to answer


async def test_an_idle_kept_alive_connection_is_closed(deadlines: GatewayProcess) -> None:
    before = timed_out(deadlines, "public", "idle")
    raw = await Raw.open(deadlines.port)
    try:
        await raw.send(b"GET /healthz HTTP/1.1\r\nHost: gateway\r\n\r\n")
        assert status_of(await raw.read_response()) == 200
        assert await raw.read_all() == b""  # then nothing, until the gateway closes
    finally:
        raw.close()
    assert timed_out(deadlines, "public", "idle") == before + 1


async def test_a_slow_body_is_answered_408_problem(deadlines: GatewayProcess) -> None:
    before = timed_out(deadlines, "public", "body")
    raw = await Raw.open(deadlines.port)
    try:
        answer = await raw.trickle_until_closed(
            LEAD_HEAD + b"Content-Length: 4000\r\n\r\n{", byte=b" "
        )
    finally:
        raw.close()
    assert status_of(answer) == 408, answer
    problem = problem_of(answer)
    assert problem["type"] == "urn:leadgate:problem:request-timeout"
    assert problem["instance"] == "/v1/leads"
    assert timed_out(deadlines, "public", "body") == before + 1


async def test_the_admin_listener_has_the_same_deadlines(deadlines: GatewayProcess) -> None:
    port = ADMIN_PORT
    raw = await Raw.open(port)
    try:
        answer = await raw.trickle_until_closed(b"POST /v1/admin/config/reload HTTP/1.1\r\nX: ")
    finally:
        raw.close()
    assert status_of(answer) == 408, answer
    body = (
        b"DELETE /v1/admin/identities HTTP/1.1\r\nHost: gateway\r\n"
        + f"Authorization: Bearer {ADMIN_TOKEN}\r\n".encode()
        + b"Content-Type: application/json\r\nContent-Length: 500\r\n\r\n{"
    )
    raw = await Raw.open(port)
    try:
        answer = await raw.trickle_until_closed(body, byte=b" ")
    finally:
        raw.close()
    assert status_of(answer) == 408, answer
    assert timed_out(deadlines, "admin", "body") >= 1


# --- a flood of slow clients ---------------------------------------------------------------


@pytest.fixture
async def launcher(tmp_path: Path) -> AsyncIterator[GatewayLauncher]:
    own = GatewayLauncher(tmp_path)
    try:
        yield own
    finally:
        own.close()


def serving_field(gateway: GatewayProcess, name: str) -> int:
    for record in gateway.log_records():
        if record.get("msg") == "serving":
            value = record[name]
            assert isinstance(value, int)
            return value
    pytest.fail("no serving line")


async def test_a_slow_loris_flood_neither_starves_clients_nor_breaks_reloads(
    launcher: GatewayLauncher, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    """Under a low open-file limit, more slow-loris connections than the derived bound: the
    excess is refused at once with a clear 503 (Retry-After, Connection: close), the process
    keeps the descriptors it needs (a reload by SIGHUP and by the admin API both work
    meanwhile, and the admin listener answers), and once the head deadline has cut the slow
    ones, ordinary posts are answered again."""
    config = write_config(tmp_path / "leadgate.yaml", head_timeout_s=4)
    admin_port = free_port()
    gateway = await launcher.astart(
        config,
        env={"LEADGATE_ADMIN_TOKEN": ADMIN_TOKEN, "LEADGATE_ADMIN_PORT": str(admin_port)},
        open_files=OPEN_FILES,
    )
    bound = serving_field(gateway, "max_connections")
    assert serving_field(gateway, "open_file_limit") == OPEN_FILES
    assert 16 <= bound < OPEN_FILES - 100  # leaves room for Redis, reloads, metrics, ops

    slow = [await Raw.open(gateway.port) for _ in range(bound)]
    excess = [await Raw.open(gateway.port) for _ in range(20)]
    try:
        for raw in slow:
            assert await raw.send(LEAD_HEAD + b"X-Slow: ")
        # The excess is refused at once, clearly, and closed.
        refusals = await asyncio.gather(*(raw.read_all() for raw in excess))
        for refusal in refusals:
            assert status_of(refusal) == 503, refusal
            assert b"Retry-After: 1\r\n" in refusal
            assert b"Connection: close\r\n" in refusal
            problem = problem_of(refusal)
            assert problem["type"] == "urn:leadgate:problem:too-many-connections"
        # An ordinary post meets the same refusal while the bound is reached, not a reset.
        refused = await post_lead(http, gateway, {"campaign": "acme-always-on"})
        assert refused.status == 503
        # Reloads still have descriptors: a changed file by SIGHUP, then by the admin API.
        config.write_text(config.read_text() + "\n# changed once\n")
        gateway.send_signal(signal.SIGHUP)
        await wait_until(lambda: _logged(gateway, "config reloaded", 1), WAIT_S, interval_s=0.1)
        config.write_text(config.read_text() + "# changed twice\n")
        async with http.post(
            f"http://127.0.0.1:{admin_port}/v1/admin/config/reload",
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        ) as response:
            assert response.status == 200, await response.text()
            assert (await response.json())["reloaded"] is True
        assert "Too many open files" not in gateway.log_text()

        # The head deadline cuts the slow ones: posts are answered again.
        async def answered() -> bool:
            reply = await post_lead(
                http, gateway, {"campaign": "acme-always-on", "email": "flood@example.fr",
                                "first_name": "Flo"}
            )  # fmt: skip
            return reply.status == 200

        await wait_until(answered, WAIT_S, interval_s=0.2)
    finally:
        for raw in [*slow, *excess]:
            raw.close()
    text = gateway.metrics()
    assert sample(text, "leadgate_connections_refused_total", listener="public") >= 21
    assert (
        sample(text, "leadgate_connections_timed_out_total", listener="public", phase="head")
        >= bound
    )


async def _logged(gateway: GatewayProcess, message: str, times: int) -> bool:
    return gateway.messages().count(message) >= times


# --- the delivery worker's ops listener ---------------------------------------------------

#: The example config's endpoint secrets, made up: the worker refuses to start without them.
WORKER_SECRETS = {
    "LEADGATE_WEBHOOK_SECRET_ACME": "whsec_" + base64.b64encode(b"a" * 32).decode(),
    "LEADGATE_WEBHOOK_SECRET_HELIO": "whsec_" + base64.b64encode(b"h" * 32).decode(),
    "LEADGATE_NOVABANK_TOKEN": "novabank-" + "t" * 20,
    "LEADGATE_SOLARIS_API_KEY": "solaris-" + "k" * 20,
    "LEADGATE_VOLTAIC_TOKEN": "voltaic-" + "t" * 20,
}


async def test_the_workers_metrics_listener_has_the_same_deadlines(
    launcher: GatewayLauncher, tmp_path: Path, redis_url: str, http: aiohttp.ClientSession
) -> None:
    """A scrape port is an ops port like the serving process's: a slow head is cut (408), an
    idle kept-alive connection closed, and the worker still answers scrapes meanwhile."""
    config = write_config(
        tmp_path / "leadgate.yaml",
        head_timeout_s=HEAD_TIMEOUT_S,
        keepalive_timeout_s=KEEPALIVE_TIMEOUT_S,
    )
    worker = await launcher.astart_worker(config, redis_url=redis_url, env=WORKER_SECRETS)
    metrics_url = f"http://127.0.0.1:{worker.port}/metrics"

    slow = await Raw.open(worker.port)
    idle = await Raw.open(worker.port)
    try:
        await idle.send(b"GET /healthz HTTP/1.1\r\nHost: worker\r\n\r\n")
        assert status_of(await idle.read_response()) == 200
        trickled = asyncio.create_task(slow.trickle_until_closed(b"GET /metrics HTTP/1.1\r\nX: "))
        async with http.get(metrics_url) as scrape:  # answered while the slow one trickles
            assert scrape.status == 200
        answer = await trickled
        assert await idle.read_all() == b""  # closed by the worker, not by the test's timeout
    finally:
        slow.close()
        idle.close()
    assert status_of(answer) == 408, answer
    async with http.get(metrics_url) as scrape:
        page = await scrape.text()
    assert sample(page, "leadgate_connections_timed_out_total", listener="metrics", phase="head")
    assert sample(page, "leadgate_connections_timed_out_total", listener="metrics", phase="idle")
    assert 'listener="public"' not in page  # the worker has no partner-facing listener


async def test_the_workers_readyz_answers_503_when_its_redis_stops_answering(
    launcher: GatewayLauncher,
    tmp_path: Path,
    spare_redis: Callable[[], RedisServer],
    http: aiohttp.ClientSession,
) -> None:
    """``/readyz`` waits for the queue's Redis one second at most, as the gateway's does: a
    frozen Redis is a prompt 503, never a probe held open (which also held a stopping
    worker's listener: aiohttp waits for requests in flight)."""
    server = spare_redis()
    server.start()
    config = write_config(tmp_path / "leadgate.yaml")
    worker = await launcher.astart_worker(config, redis_url=server.url, env=WORKER_SECRETS)
    readyz = f"http://127.0.0.1:{worker.port}/readyz"
    async with http.get(readyz) as ready:
        assert ready.status == 200
    server.freeze()
    try:
        async with http.get(readyz) as frozen:
            status, body = frozen.status, await frozen.json()
    finally:
        server.thaw()
    assert (status, body) == (503, {"status": "unavailable"})
