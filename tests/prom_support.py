"""Prometheus for the tests: a real server scraping real processes, ``promtool``, and reading
a ``/metrics`` exposition (``sample``, ``samples``).

The binaries come from Debian's ``prometheus`` package; a missing one fails the test (never
skips it) with the command that installs it.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from http_support import request
from processes import poll
from prometheus_client.parser import text_string_to_metric_families
from support import free_port, installed

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
PROMETHEUS_HINT = (
    "prometheus/promtool not on PATH: run ./.ci/install-prometheus "
    "(Debian's `apt-get install -y prometheus`; .ci/run does it)"
)
#: Until Prometheus answers ``/-/ready``.
START_TIMEOUT_S = 20.0


def promtool() -> str:
    return installed("promtool", PROMETHEUS_HINT)


def prometheus_binary() -> str:
    return installed("prometheus", PROMETHEUS_HINT)


@dataclass
class Prometheus:
    """A real Prometheus on loopback scraping ``targets`` every second."""

    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's result vector (fails the test on a query error)."""
        url = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        reply = request("GET", url)
        assert reply.status == 200, (expr, reply.body)
        assert reply.body["status"] == "success", (expr, reply.body)
        result: list[dict[str, Any]] = reply.body["data"]["result"]
        return result

    def get(self, path: str, **params: str) -> Any:
        reply = request("GET", f"{self.url}{path}?" + urllib.parse.urlencode(params))
        assert reply.status == 200, (path, reply.body)
        return reply.body["data"]

    def wait_for(
        self, expr: str, ok: Callable[[list[dict[str, Any]]], bool], timeout_s: float = 20.0
    ) -> list[dict[str, Any]]:
        """Query ``expr`` until ``ok(result)``; the result. Fails after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        result: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            result = self.query(expr)
            if ok(result):
                return result
            time.sleep(0.2)
        pytest.fail(f"{expr!r} never satisfied within {timeout_s}s; last result: {result}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start_prometheus(
    workdir: Path,
    targets: Sequence[str],
    rule_files: Sequence[Path] = (),
    *,
    bearer_token: str | None = None,
) -> Prometheus:
    """Prometheus with only our scrape job (no self-scrape, no other listener than its API on
    127.0.0.1), TSDB in ``workdir``; waits until it is ready. ``bearer_token``: sent with
    every scrape (``LEADGATE_METRICS_TOKEN``), from a file as a deployment would."""
    binary = prometheus_binary()
    workdir.mkdir(parents=True, exist_ok=True)
    job: dict[str, Any] = {"job_name": "leadgate", "static_configs": [{"targets": list(targets)}]}
    if bearer_token is not None:
        token_file = workdir / "metrics-token"
        token_file.write_text(bearer_token, encoding="utf-8")
        job["authorization"] = {"type": "Bearer", "credentials_file": str(token_file)}
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(p) for p in rule_files],
        "scrape_configs": [job],
    }
    config_path = workdir / "prometheus.yml"
    config_path.write_text(yaml.safe_dump(config), encoding="utf-8")
    port = free_port()
    log_path = workdir / "prometheus.log"
    argv = [
        binary,
        f"--config.file={config_path}",
        f"--storage.tsdb.path={workdir / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--storage.tsdb.retention.time=1h",
        "--log.level=warn",
    ]
    with log_path.open("wb") as log:
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    prometheus = Prometheus(process, port, log_path)

    def ready() -> bool:
        if process.poll() is not None:
            pytest.fail(f"prometheus exited: {log_path.read_text(errors='replace')}")
        with contextlib.suppress(OSError):
            return request("GET", f"{prometheus.url}/-/ready", timeout_s=1).status == 200
        return False

    if not poll(ready, START_TIMEOUT_S, interval_s=0.1):
        prometheus.stop()
        pytest.fail(f"prometheus not ready within {START_TIMEOUT_S}s")
    return prometheus


def sample(text: str, name: str, **labels: str) -> float:
    """The value of the one sample ``name{labels}`` in an exposition; fails if absent."""
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and s.labels == labels:
                return float(s.value)
    pytest.fail(f"no sample {name}{labels} in the exposition")


def samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    return [
        (dict(s.labels), float(s.value))
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name
    ]
