"""The real gateway process, for the tests about processes: signals, crashes, Redis outages.

``gateways.start(...)`` runs ``python -m gateway.cli serve`` on a free loopback port with the
environment and config a test gives, waits for ``/healthz`` and returns a ``GatewayProcess``;
its stderr (the JSON log) goes to a file the test can read. Every process is SIGKILLed at
teardown, whatever the test did. Every wait here has a deadline: a broken gateway fails a test,
it never hangs the run.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from multidict import CIMultiDictProxy
from support import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_CONFIG = REPO_ROOT / "examples" / "leadgate.yaml"
#: Demo API keys published at the top of ``examples/leadgate.yaml``.
MAILFOX_KEY = "demo-mailfox-key"
#: A fingerprint key for the tests only (``<id>:<secret of at least 32 characters>``).
FINGERPRINT_KEY = "t1:process-tests-secret-0123456789abcdef"

#: Import, config load and bind of a fresh interpreter; generous for a loaded CI machine.
START_TIMEOUT_S = 20.0
#: Any single HTTP exchange with the gateway (the tests post one small lead at a time).
REQUEST_TIMEOUT_S = 10.0
KILL_TIMEOUT_S = 10.0


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    body: dict[str, Any]
    headers: CIMultiDictProxy[str]


@dataclass
class GatewayProcess:
    """One ``leadgate serve`` process on ``127.0.0.1:port``."""

    process: subprocess.Popen[bytes]
    port: int
    stderr_path: Path
    argv: list[str] = field(repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def returncode(self) -> int | None:
        return self.process.poll()

    def send_signal(self, sig: signal.Signals) -> None:
        self.process.send_signal(sig)

    def log_text(self) -> str:
        return self.stderr_path.read_text(encoding="utf-8", errors="replace")

    def log_records(self) -> list[dict[str, Any]]:
        """Every stderr line as a JSON object; fails the test on a line that is not one."""
        records: list[dict[str, Any]] = []
        for number, line in enumerate(self.log_text().splitlines(), 1):
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                pytest.fail(f"stderr line {number} is not JSON: {line!r}")
            if not isinstance(record, dict):
                pytest.fail(f"stderr line {number} is not a JSON object: {line!r}")
            records.append(record)
        return records

    def messages(self) -> list[str]:
        return [str(record.get("msg")) for record in self.log_records()]

    async def wait_exit(self, timeout_s: float) -> int:
        """The exit code, once the process has exited; fails after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            code = self.process.poll()
            if code is not None:
                return code
            await asyncio.sleep(0.02)
        pytest.fail(f"gateway did not exit within {timeout_s}s; log:\n{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:]) or "(empty stderr)"

    def kill(self) -> None:
        """SIGKILL (if still running) and reap, so no process outlives its test."""
        if self.process.poll() is None:
            self.process.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):  # a zombie the kernel keeps
            self.process.wait(timeout=KILL_TIMEOUT_S)


class GatewayLauncher:
    """Starts gateway processes for one test and kills every one of them at teardown."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.started: list[GatewayProcess] = []

    def spawn(
        self,
        *,
        config: Path = EXAMPLE_CONFIG,
        env: Mapping[str, str] | None = None,
        redis_url: str | None = None,
        drain_s: float = 5.0,
        port: int | None = None,
    ) -> GatewayProcess:
        """Start the process without waiting for it (for tests of refusals to start).

        The child sees the test runner's environment minus every ``LEADGATE_*`` variable, plus
        ``env``; with ``redis_url`` it gets the Redis URL and the test fingerprint key.
        """
        port = free_port() if port is None else port
        child_env = {k: v for k, v in os.environ.items() if not k.startswith("LEADGATE_")}
        # The checkout under test, whatever is installed in the venv.
        child_env["PYTHONPATH"] = str(REPO_ROOT)
        child_env["LEADGATE_LOG_LEVEL"] = "info"
        if redis_url is not None:
            child_env["LEADGATE_REDIS_URL"] = redis_url
            child_env["LEADGATE_FINGERPRINT_KEY"] = FINGERPRINT_KEY
        child_env.update(env or {})
        argv = [
            sys.executable, "-m", "gateway.cli", "serve",
            "--config", str(config),
            "--host", "127.0.0.1",
            "--port", str(port),
            "--drain-s", str(drain_s),
        ]  # fmt: skip
        number = len(self.started)
        stderr_path = self.workdir / f"gateway-{number}.stderr.log"
        stdout_path = self.workdir / f"gateway-{number}.stdout.log"
        with stderr_path.open("wb") as stderr, stdout_path.open("wb") as stdout:
            process = subprocess.Popen(
                argv, cwd=REPO_ROOT, env=child_env, stdout=stdout, stderr=stderr
            )
        gateway = GatewayProcess(process, port, stderr_path, argv)
        self.started.append(gateway)
        return gateway

    async def start(
        self,
        *,
        config: Path = EXAMPLE_CONFIG,
        env: Mapping[str, str] | None = None,
        redis_url: str | None = None,
        drain_s: float = 5.0,
    ) -> GatewayProcess:
        """Start a gateway and wait until ``/healthz`` answers 200."""
        gateway = self.spawn(config=config, env=env, redis_url=redis_url, drain_s=drain_s)
        await wait_healthy(gateway)
        return gateway

    def close(self) -> None:
        for gateway in self.started:
            gateway.kill()


async def wait_healthy(gateway: GatewayProcess, timeout_s: float = START_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    timeout = aiohttp.ClientTimeout(total=1.0)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        while time.monotonic() < deadline:
            code = gateway.returncode
            if code is not None:
                pytest.fail(
                    f"gateway exited with {code} before answering /healthz; stderr:\n"
                    f"{gateway.log_tail()}"
                )
            try:
                async with session.get(f"{gateway.url}/healthz") as response:
                    if response.status == 200:
                        return
            except (aiohttp.ClientError, TimeoutError):
                pass
            await asyncio.sleep(0.05)
    pytest.fail(f"gateway did not answer /healthz within {timeout_s}s:\n{gateway.log_tail()}")


@pytest.fixture
def gateways(tmp_path: Path) -> Iterator[GatewayLauncher]:
    launcher = GatewayLauncher(tmp_path)
    try:
        yield launcher
    finally:
        launcher.close()


@pytest_asyncio.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """A client for 127.0.0.1 only; every exchange is bounded by ``REQUEST_TIMEOUT_S``."""
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        yield session


async def post_lead(
    http: aiohttp.ClientSession,
    gateway: GatewayProcess,
    lead: Mapping[str, object],
    *,
    api_key: str = MAILFOX_KEY,
    idempotency_key: str | None = None,
) -> Reply:
    """POST one lead as JSON; the reply with its body decoded (``{}`` for an empty body)."""
    headers = {"Authorization": f"Bearer {api_key}"}
    if idempotency_key is not None:
        headers["Idempotency-Key"] = idempotency_key
    async with http.post(f"{gateway.url}/v1/leads", json=lead, headers=headers) as response:
        raw = await response.read()
        return Reply(response.status, json.loads(raw) if raw else {}, response.headers)


def decided(reply: Reply, decision: str, reasons: list[str] | None = None) -> str:
    """Assert a 200 answer with ``decision`` (and exactly ``reasons``); its lead id."""
    assert reply.status == 200, (reply.status, reply.body)
    assert reply.body["decision"] == decision, reply.body
    if reasons is not None:
        assert reply.body["reasons"] == reasons, reply.body
    lead_id: str = reply.body["lead_id"]
    assert lead_id
    return lead_id


async def get_status(http: aiohttp.ClientSession, url: str) -> int:
    async with http.get(url) as response:
        await response.read()
        return response.status


async def wait_until(
    check: Callable[[], Awaitable[bool]], timeout_s: float, interval_s: float = 0.1
) -> float:
    """Poll ``check`` until it is true; the seconds it took. Fails after ``timeout_s``."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if await check():
            return time.monotonic() - started
        await asyncio.sleep(interval_s)
    pytest.fail(f"condition not met within {timeout_s}s")
