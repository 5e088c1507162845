"""Real ``leadgate`` processes for the tests of signals, crashes, outages, workers and metrics.

``GatewayLauncher.start()`` runs ``python -m gateway.cli serve`` (with ``workers``: the
supervisor and its workers) on a free loopback port, ``start_worker()`` the delivery worker
with its ``/metrics`` on one; both wait until the process is healthy and return a
``GatewayProcess``, whose stderr (the JSON log) is a file the test reads. ``astart()`` and
``astart_worker()`` are the same for async tests: the waits run in a thread, the loop stays
free for the requests the test keeps in flight. ``run_leadgate()`` runs a one-shot command.

Every child sees the same environment (``child_env``), runs in a session of its own and is
SIGKILLed as a whole process group at teardown, whatever the test did. Every wait has a
deadline: a broken gateway fails a test, it never hangs the run.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Required, TypedDict, Unpack

import pytest
from http_support import request
from support import free_port

REPO_ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_CONFIG = REPO_ROOT / "examples" / "leadgate.yaml"
#: A fingerprint key for the tests only (``<id>:<secret of at least 32 characters>``).
FINGERPRINT_KEY = "t1:sha256:process-tests-secret-0123456789abcdef"
#: Import, config load and bind of a fresh interpreter; generous for a loaded CI machine.
START_TIMEOUT_S = 20.0
KILL_TIMEOUT_S = 10.0


def child_env(
    *,
    redis_url: str | None = None,
    env: Mapping[str, str] | None = None,
    pythonpath: Path = REPO_ROOT,
) -> dict[str, str]:
    """The environment of a ``leadgate`` process under test: the runner's without any
    ``LEADGATE_*`` variable (a developer's own settings must not leak in) nor
    ``PROMETHEUS_MULTIPROC_DIR`` (``serve --workers`` makes its own), the checkout on
    ``PYTHONPATH`` whatever the venv has installed; with ``redis_url``, that Redis and the
    test fingerprint key; then ``env``."""
    made = {k: v for k, v in os.environ.items() if not k.startswith("LEADGATE_")}
    made.pop("PROMETHEUS_MULTIPROC_DIR", None)
    made["PYTHONPATH"] = str(pythonpath)
    if redis_url is not None:
        made["LEADGATE_REDIS_URL"] = redis_url
        made["LEADGATE_FINGERPRINT_KEY"] = FINGERPRINT_KEY
    made.update(env or {})
    return made


def run_leadgate(
    *args: str,
    redis_url: str | None = None,
    env: Mapping[str, str] | None = None,
    timeout_s: float = 60.0,
) -> subprocess.CompletedProcess[str]:
    """``python -m gateway.cli ARGS`` run to its end, as ops run a command: its exit code,
    stdout and stderr as text."""
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args],
        cwd=REPO_ROOT,
        env=child_env(redis_url=redis_url, env=env),
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


def poll(check: Callable[[], bool], timeout_s: float, interval_s: float = 0.05) -> bool:
    """Call ``check`` until it is true (``True``) or ``timeout_s`` has passed (``False``)."""
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(interval_s)
    return True


def wait_for(check: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Poll ``check`` until it is true; fails the test with ``what`` after ``timeout_s``."""
    if not poll(check, timeout_s):
        pytest.fail(f"{what}: not within {timeout_s}s")


async def wait_until(
    check: Callable[[], Awaitable[bool]], timeout_s: float, interval_s: float = 0.1
) -> None:
    """``wait_for`` with an async ``check``, the loop free between polls."""
    deadline = time.monotonic() + timeout_s
    while not await check():
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout_s}s")
        await asyncio.sleep(interval_s)


@dataclass
class GatewayProcess:
    """One ``leadgate serve`` (with workers: the supervisor) or ``leadgate worker`` process on
    ``127.0.0.1:port`` (a worker's port is its ``/metrics`` and ``/healthz``)."""

    process: subprocess.Popen[bytes]
    port: int
    stderr_path: Path
    argv: list[str] = field(repr=False)
    #: ``serving`` log lines that say every serving process is up (0: none is logged).
    serving_lines: int = 0
    #: A serving process's ``/metrics`` port (``LEADGATE_METRICS_PORT``); a worker's is
    #: ``port``.
    metrics_port: int | None = None
    #: What its ``/metrics`` requires (``LEADGATE_METRICS_TOKEN``), if anything.
    metrics_token: str | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def metrics_url(self) -> str:
        """Where ``/metrics`` is: the metrics listener of ``serve``, a worker's own port."""
        return f"http://127.0.0.1:{self.metrics_port or self.port}/metrics"

    @property
    def returncode(self) -> int | None:
        return self.process.poll()

    def send_signal(self, sig: signal.Signals) -> None:
        """``sig`` to this process only (with workers: the supervisor)."""
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

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:]) or "(empty stderr)"

    def metrics(self) -> str:
        """The ``/metrics`` page (on the metrics listener, never the public port)."""
        token = {"Authorization": f"Bearer {self.metrics_token}"} if self.metrics_token else {}
        reply = request("GET", self.metrics_url, headers=token)
        assert reply.status == 200, reply
        assert isinstance(reply.body, str)
        return reply.body

    @property
    def command(self) -> str:
        """``serve`` or ``worker``."""
        return self.argv[3]

    def healthy(self) -> bool:
        """``/healthz`` answers 200 and every serving process logged ``serving``; fails the
        test if the process has exited."""
        code = self.process.poll()
        if code is not None:
            if "address already in use" in self.log_text():
                raise PortTaken(f"{self.command} exited with {code}:\n{self.log_tail()}")
            pytest.fail(f"{self.command} exited with {code}:\n{self.log_tail()}")
        if self.log_text().count('"msg":"serving"') < self.serving_lines:
            return False
        with contextlib.suppress(OSError):
            return request("GET", f"{self.url}/healthz", timeout_s=1.0).status == 200
        return False

    def wait_healthy(self, timeout_s: float = START_TIMEOUT_S) -> None:
        if not poll(self.healthy, timeout_s):
            pytest.fail(f"{self.command} not healthy within {timeout_s}s:\n{self.log_tail()}")

    async def await_healthy(self, timeout_s: float = START_TIMEOUT_S) -> None:
        await asyncio.to_thread(self.wait_healthy, timeout_s)

    def wait_exit(self, timeout_s: float) -> int:
        """The exit code, once the process has exited; fails after ``timeout_s``."""
        try:
            return self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{self.command} did not exit within {timeout_s}s:\n{self.log_tail()}")

    async def await_exit(self, timeout_s: float) -> int:
        return await asyncio.to_thread(self.wait_exit, timeout_s)

    def kill(self) -> None:
        """SIGKILL the process and every process it started (its process group), then reap
        it, so none outlives its test."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):  # a zombie the kernel keeps
            self.process.wait(timeout=KILL_TIMEOUT_S)


class ServeOptions(TypedDict, total=False):
    """``GatewayLauncher.spawn``'s keyword arguments, for the methods that pass them on."""

    redis_url: str | None
    env: Mapping[str, str] | None
    workers: int
    drain_s: float
    args: Sequence[str]
    port: int | None
    open_files: int | None


class WorkerOptions(TypedDict, total=False):
    """``GatewayLauncher.spawn_worker``'s keyword arguments (``redis_url`` is required)."""

    redis_url: Required[str]
    env: Mapping[str, str] | None
    port: int | None


#: Starts of one process before a port taken meanwhile fails the test.
PORT_ATTEMPTS = 3


class PortTaken(Exception):
    """The process could not bind a port ``free_port`` had found free: another took it."""


def _healthy(spawn: Callable[[], GatewayProcess], *, chosen: bool) -> GatewayProcess:
    """A process ``spawn`` started, once healthy; started again (``PORT_ATTEMPTS`` in all)
    when a port was taken before it bound it, unless the test chose its ports (``chosen``)."""
    for attempt in range(PORT_ATTEMPTS):
        process = spawn()
        try:
            process.wait_healthy()
            return process
        except PortTaken as taken:
            if attempt + 1 == PORT_ATTEMPTS or chosen:
                pytest.fail(str(taken))
    raise AssertionError("unreachable")


def _ports_given(options: ServeOptions) -> bool:
    """Whether the test chose the gateway's ports itself (then a taken one is its failure)."""
    env = options.get("env") or {}
    return options.get("port") is not None or "LEADGATE_METRICS_PORT" in env


class GatewayLauncher:
    """Starts ``leadgate`` processes for one test (or module) and kills them all at ``close``."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.started: list[GatewayProcess] = []

    def spawn(
        self,
        config: Path = EXAMPLE_CONFIG,
        *,
        redis_url: str | None = None,
        env: Mapping[str, str] | None = None,
        workers: int = 1,
        drain_s: float = 5.0,
        args: Sequence[str] = (),
        port: int | None = None,
        open_files: int | None = None,
    ) -> GatewayProcess:
        """Start ``leadgate serve`` without waiting for it (for tests of refusals to start).
        Its ``/metrics`` listens on a free port (``LEADGATE_METRICS_PORT``) unless ``env``
        names one; ``open_files``: the process's ``RLIMIT_NOFILE`` (soft and hard)."""
        port = free_port() if port is None else port
        flags = ["--host", "127.0.0.1", "--port", str(port), "--drain-s", str(drain_s)]
        flags += ["--workers", str(workers), *args]
        env = {"LEADGATE_METRICS_PORT": str(free_port()), **(env or {})}
        given = env["LEADGATE_METRICS_PORT"]
        gateway = self._popen(
            "serve", config, flags, port, redis_url, env, serving_lines=workers,
            open_files=open_files,
        )  # fmt: skip
        gateway.metrics_port = int(given) if given.isdigit() and given != "0" else None
        return gateway

    def start(
        self, config: Path = EXAMPLE_CONFIG, **options: Unpack[ServeOptions]
    ) -> GatewayProcess:
        """``spawn``, then wait until ``/healthz`` answers 200 and every worker is serving.
        A port ``free_port`` chose may be taken by another process before the gateway binds
        it (tests run in parallel): then it is started again on other ports, unless the test
        chose them."""
        return _healthy(lambda: self.spawn(config, **options), chosen=_ports_given(options))

    async def astart(
        self, config: Path = EXAMPLE_CONFIG, **options: Unpack[ServeOptions]
    ) -> GatewayProcess:
        return await asyncio.to_thread(self.start, config, **options)

    def spawn_worker(
        self,
        config: Path,
        *,
        redis_url: str,
        env: Mapping[str, str] | None = None,
        port: int | None = None,
    ) -> GatewayProcess:
        """Start ``leadgate worker``, its ``/metrics`` and ``/healthz`` on ``port``."""
        port = free_port() if port is None else port
        flags = ["--metrics-host", "127.0.0.1", "--metrics-port", str(port)]
        return self._popen("worker", config, flags, port, redis_url, env, serving_lines=0)

    def start_worker(self, config: Path, **options: Unpack[WorkerOptions]) -> GatewayProcess:
        """``spawn_worker``, then wait until its ``/healthz`` answers 200 (started again on
        another port when the one chosen was taken meanwhile, as ``start``)."""
        chosen = options.get("port") is not None
        return _healthy(lambda: self.spawn_worker(config, **options), chosen=chosen)

    async def astart_worker(self, config: Path, **options: Unpack[WorkerOptions]) -> GatewayProcess:
        return await asyncio.to_thread(self.start_worker, config, **options)

    def _popen(
        self,
        command: str,
        config: Path,
        flags: list[str],
        port: int,
        redis_url: str | None,
        env: Mapping[str, str] | None,
        *,
        serving_lines: int,
        open_files: int | None = None,
    ) -> GatewayProcess:
        argv = [sys.executable, "-m", "gateway.cli", command, "--config", str(config), *flags]
        name = f"{command}-{len(self.started)}"
        stderr_path = self.workdir / f"{name}.stderr.log"
        env = child_env(redis_url=redis_url, env={"LEADGATE_LOG_LEVEL": "info", **(env or {})})
        with (
            stderr_path.open("wb") as stderr,
            (self.workdir / f"{name}.stdout.log").open("wb") as stdout,
        ):
            process = subprocess.Popen(
                argv,
                cwd=REPO_ROOT,
                env=env,
                stdout=stdout,
                stderr=stderr,
                # Its own process group: teardown kills a supervisor's workers with it.
                start_new_session=True,
                preexec_fn=None if open_files is None else _open_file_limit(open_files),
            )
        gateway = GatewayProcess(process, port, stderr_path, argv, serving_lines)
        gateway.metrics_token = env.get("LEADGATE_METRICS_TOKEN")
        self.started.append(gateway)
        return gateway

    def close(self) -> None:
        for gateway in self.started:
            gateway.kill()


def _open_file_limit(limit: int) -> Callable[[], None]:
    """Set in the child before it runs: ``RLIMIT_NOFILE`` soft and hard at ``limit`` (a
    gateway with few file descriptors, without touching the test runner's)."""

    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

    return apply
