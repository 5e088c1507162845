"""``leadgate serve --workers N``: N serving processes on one port, and the parent that keeps
them running.

Each child is a plain ``leadgate serve --reuse-port`` (SO_REUSEPORT: the kernel spreads new
connections over the processes). The parent owns nothing a request touches; it

- checks the config once before starting anyone (a broken file fails fast with exit 2);
- gives every child the same prometheus-client multiprocess directory (a temporary directory
  it creates and removes, unless ``PROMETHEUS_MULTIPROC_DIR`` is set), so whichever process
  answers ``/metrics`` reports the totals of all of them;
- forwards SIGTERM/SIGINT (drain) and SIGHUP (reload) to every child;
- restarts a child that dies on its own, unless children die too often (then stops all and
  exits 1) or a child reports a configuration error (exit 2);
- exits 0 once every child has drained and exited 0.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping

from prometheus_client.multiprocess import mark_process_dead

from gateway.app.server import ServeOptions
from gateway.app.settings import load_settings, start_logging

LOG = logging.getLogger("leadgate.supervisor")
#: More unexpected exits than this within RESTART_WINDOW_S and the parent gives up.
MAX_RESTARTS = 5
RESTART_WINDOW_S = 60.0
#: After the children's own drain grace, how long the parent still waits before SIGKILL.
EXIT_MARGIN_S = 5.0
_POLL_S = 0.05


def _child_argv(config: str | None, options: ServeOptions, host: str, port: int) -> list[str]:
    argv = [
        sys.executable, "-m", "gateway.cli", "serve",
        "--host", host, "--port", str(port),
        "--drain-s", str(options.drain_s),
        "--reload-poll-s", str(options.reload_poll_s),
        "--reuse-port",
    ]  # fmt: skip
    if config:
        argv += ["--config", config]
    if options.with_worker:
        argv.append("--with-worker")
    return argv


class _Children:
    def __init__(self, argv: list[str], env: Mapping[str, str], metrics_dir: str) -> None:
        self.argv = argv
        self.env = dict(env)
        self.metrics_dir = metrics_dir
        self.running: dict[int, subprocess.Popen[bytes]] = {}
        self.exits: list[float] = []

    def start(self) -> None:
        # stdout/stderr are inherited: the children's JSON log lines go where ours go.
        child = subprocess.Popen(self.argv, env=self.env)  # noqa: S603 (our own interpreter)
        self.running[child.pid] = child
        LOG.info("worker started", extra={"fields": {"worker_pid": child.pid}})

    def signal_all(self, sig: signal.Signals) -> None:
        for child in self.running.values():
            with contextlib.suppress(ProcessLookupError):
                child.send_signal(sig)

    def reap(self) -> list[tuple[int, int]]:
        """Children that exited since the last call, as (pid, exit code)."""
        done = [(pid, code) for pid, c in self.running.items() if (code := c.poll()) is not None]
        for pid, _ in done:
            del self.running[pid]
            # Gauges of a dead process must not linger in the merged view.
            mark_process_dead(pid, self.metrics_dir)  # type: ignore[no-untyped-call]
        return done


def supervise(
    config: str | None, options: ServeOptions, workers: int, environ: Mapping[str, str]
) -> int:
    """Run ``workers`` serving processes until SIGTERM/SIGINT; the exit code."""
    if workers < 1:
        print("leadgate: --workers must be at least 1", file=sys.stderr)
        return 2
    settings = load_settings(environ, config)  # a broken config fails here, once
    env = settings.environment
    start_logging(settings, environ)
    host = options.host or env.host
    port = options.port if options.port is not None else env.port
    if port == 0:
        print(
            "leadgate: --workers needs a fixed --port (0 would give each its own)", file=sys.stderr
        )
        return 2
    own_dir = settings.metrics_dir is None
    metrics_dir = settings.metrics_dir or tempfile.mkdtemp(prefix="leadgate-metrics-")
    child_env = {**environ, "PROMETHEUS_MULTIPROC_DIR": metrics_dir}
    children = _Children(_child_argv(config, options, host, port), child_env, metrics_dir)
    received: list[signal.Signals] = []

    def remember(signum: int, _frame: object) -> None:
        received.append(signal.Signals(signum))

    previous = {
        sig: signal.signal(sig, remember) for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
    }
    try:
        return _run(children, workers, options.drain_s, received)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if own_dir:
            shutil.rmtree(metrics_dir, ignore_errors=True)


def _run(children: _Children, workers: int, drain_s: float, received: list[signal.Signals]) -> int:
    for _ in range(workers):
        children.start()
    LOG.info("supervising", extra={"fields": {"workers": workers}})
    stopping_since: float | None = None
    failed = 0
    while children.running:
        while received:
            sig = received.pop(0)
            if sig is signal.SIGHUP:
                LOG.info("reload requested: forwarding SIGHUP to workers")
                children.signal_all(signal.SIGHUP)
            elif stopping_since is None:
                stopping_since = time.monotonic()
                LOG.info("stopping: forwarding SIGTERM to workers")
                children.signal_all(signal.SIGTERM)
        for pid, code in children.reap():
            if stopping_since is not None:
                failed += code != 0
                continue
            LOG.error(
                "worker exited unexpectedly", extra={"fields": {"worker_pid": pid, "code": code}}
            )
            if code == 2:  # a configuration error: restarting cannot help
                failed = 2
                stopping_since = time.monotonic()
                children.signal_all(signal.SIGTERM)
                continue
            now = time.monotonic()
            children.exits = [t for t in children.exits if now - t < RESTART_WINDOW_S] + [now]
            if len(children.exits) > MAX_RESTARTS:
                LOG.error("workers keep dying: stopping", extra={"fields": {"exits": MAX_RESTARTS}})
                failed = 1
                stopping_since = now
                children.signal_all(signal.SIGTERM)
                continue
            children.start()
        if (
            stopping_since is not None
            and time.monotonic() - stopping_since > drain_s + EXIT_MARGIN_S
        ):
            LOG.error("workers did not exit after the drain: killing them")
            children.signal_all(signal.SIGKILL)
            failed = failed or 1
            stopping_since = time.monotonic()
        time.sleep(_POLL_S)
    LOG.info("stopped", extra={"fields": {"failed": failed}})
    if failed == 2:
        return 2
    return 1 if failed else 0
