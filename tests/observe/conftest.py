"""Real processes for the observability tests: ``leadgate serve`` (one process or a supervisor
with workers), a real Prometheus, and ``promtool``.

Everything here is synchronous (``subprocess`` and ``urllib`` on loopback): the tests are about
processes talking over sockets, not about an event loop. Every wait has a deadline; every
process a test starts is killed at teardown (a server with workers is killed as a whole
process group: it was started in a session of its own).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.server
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from support import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
DEPLOY = REPO_ROOT / "deploy"
PROMETHEUS_HINT = (
    "prometheus/promtool not on PATH: run ./.ci/install-prometheus "
    "(Debian's `apt-get install -y prometheus`; .ci/run does it)"
)
FINGERPRINT_KEY = "t1:observability-tests-secret-0123456789"
START_TIMEOUT_S = 20.0
REQUEST_TIMEOUT_S = 10.0

#: API keys of the test network's partners.
KEYS = {"p-alpha": "obs-alpha-key", "p-beta": "obs-beta-key"}


def key_hash(api_key: str) -> str:
    return "sha256:" + hashlib.sha256(api_key.encode()).hexdigest()


def network(crm_url: str | None = None) -> dict[str, Any]:
    """A small network with something for every metric.

    - ``acme-main`` (acme): advertiser-wide dedup, a day cap of 1000 and 3 per partner per hour.
    - ``nova-main`` (nova): campaign dedup, a per-channel day cap of 2.
    - ``nova-summer`` (nova): a peak campaign that ended (leads rejected ``campaign.inactive``).
    ``p-alpha`` (email) posts everywhere; ``p-beta`` (coreg) to acme-main and nova-main.
    With ``crm_url`` (a ``CrmReceiver``), leads are delivered as signed webhooks to
    ``<crm_url>/acme`` (answered 200) and ``<crm_url>/nova`` (answered 422: dead letters).
    """
    data: dict[str, Any] = {
        "channels": [{"id": "email"}, {"id": "coreg"}],
        "advertisers": [{"id": "acme"}, {"id": "nova"}],
        "campaigns": [
            {
                "id": "acme-main",
                "advertiser": "acme",
                "kind": "always_on",
                "timezone": "Europe/Paris",
                "required": ["email"],
                "dedup": [{"scope": "advertiser", "window": "30d"}],
                "caps": [
                    {"subject": "campaign", "window": "day", "limit": 1000},
                    {"subject": "partner", "window": "1h", "limit": 30},
                ],
            },
            {
                "id": "nova-main",
                "advertiser": "nova",
                "kind": "always_on",
                "timezone": "Europe/Paris",
                "required": ["email"],
                "dedup": [{"scope": "campaign", "window": "30d"}],
                "caps": [{"subject": "channel", "window": "day", "limit": 2}],
            },
            {
                "id": "nova-summer",
                "advertiser": "nova",
                "kind": "peak",
                "timezone": "Europe/Paris",
                "start": "2020-06-01",
                "end": "2020-08-31",
                "required": ["email"],
            },
        ],
        "partners": [
            {
                "id": "p-alpha",
                "api_keys": [key_hash(KEYS["p-alpha"])],
                "channels": ["email"],
                "campaigns": ["acme-main", "nova-main", "nova-summer"],
            },
            {
                "id": "p-beta",
                "api_keys": [key_hash(KEYS["p-beta"])],
                "channels": ["coreg"],
                "campaigns": ["acme-main", "nova-main"],
            },
        ],
    }
    if crm_url is not None:
        data["delivery"] = {
            "retry_schedule": ["0s", 0.2],
            "request_timeout": 2,
            "allow_networks": ["127.0.0.0/8"],
        }
        for advertiser in data["advertisers"]:
            advertiser["delivery"] = {
                "adapter": "webhook",
                "url": f"{crm_url}/{advertiser['id']}",
                "secret_env": "OBS_CRM_SECRET",
            }
    return data


#: The webhook signing secret the test CRMs' endpoints are configured with.
CRM_SECRET = "whsec_" + base64.b64encode(b"observability-crm-secret-0123456").decode()


class CrmReceiver:
    """A real HTTP server on loopback standing in for the advertisers' CRMs: ``/acme`` takes
    every lead (200), ``/nova`` refuses every lead (422). It keeps the bodies it received."""

    def __init__(self) -> None:
        received: list[tuple[str, bytes]] = []
        self.received = received

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                received.append((self.path, body))
                status = 422 if self.path.startswith("/nova") else 200
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def paths(self) -> list[str]:
        return [path for path, _ in list(self.received)]

    def __enter__(self) -> CrmReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def write_config(path: Path, data: Mapping[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(dict(data), sort_keys=False), encoding="utf-8")
    return path


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    body: Any


def request(
    method: str,
    url: str,
    *,
    body: object = None,
    raw: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    timeout_s: float = REQUEST_TIMEOUT_S,
) -> Reply:
    """One HTTP exchange on loopback: ``body`` sent as JSON, or ``raw`` bytes as they are;
    the answer decoded as JSON when it is JSON."""
    data = json.dumps(body).encode() if body is not None else raw
    json_type = {"Content-Type": "application/json"} if body is not None else {}
    sent = {**json_type, **(headers or {})}
    req = urllib.request.Request(url, data=data, method=method, headers=sent)  # noqa: S310
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as response:  # noqa: S310
            raw, status, kind = (
                response.read(),
                response.status,
                response.headers.get_content_type(),
            )
    except urllib.error.HTTPError as error:
        raw, status, kind = error.read(), error.code, error.headers.get_content_type()
    decoded: Any = json.loads(raw) if raw and "json" in kind else raw.decode("utf-8", "replace")
    return Reply(status, decoded)


@dataclass
class Server:
    """One ``leadgate serve`` (with ``--workers N``: the supervisor) on ``127.0.0.1:port``."""

    process: subprocess.Popen[bytes]
    port: int
    stderr_path: Path
    config_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_text(self) -> str:
        return self.stderr_path.read_text(encoding="utf-8", errors="replace")

    def log_records(self) -> list[dict[str, Any]]:
        records = []
        for number, line in enumerate(self.log_text().splitlines(), 1):
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                pytest.fail(f"stderr line {number} is not JSON: {line!r}")
        return records

    def messages(self) -> list[str]:
        return [str(r.get("msg")) for r in self.log_records()]

    def post(self, partner: str, lead: Mapping[str, object]) -> Reply:
        headers = {"Authorization": f"Bearer {KEYS[partner]}"}
        return request("POST", f"{self.url}/v1/leads", body=dict(lead), headers=headers)

    def batch(self, partner: str, leads: Sequence[object]) -> Reply:
        headers = {"Authorization": f"Bearer {KEYS[partner]}"}
        return request(
            "POST", f"{self.url}/v1/leads/batch", body={"leads": list(leads)}, headers=headers
        )

    def metrics(self) -> str:
        reply = request("GET", f"{self.url}/metrics")
        assert reply.status == 200, reply
        assert isinstance(reply.body, str)
        return reply.body

    def signal(self, sig: signal.Signals) -> None:
        self.process.send_signal(sig)

    def wait_exit(self, timeout_s: float) -> int:
        try:
            return self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            pytest.fail(f"server did not exit within {timeout_s}s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:]) or "(empty stderr)"

    def kill_group(self) -> None:
        """SIGKILL the server and every worker it started (its own process group)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)


@dataclass
class Launcher:
    workdir: Path
    started: list[Server] = field(default_factory=list)

    def start(
        self,
        config_path: Path,
        *,
        redis_url: str | None,
        workers: int = 1,
        args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        port: int | None = None,
    ) -> Server:
        """Start ``leadgate serve`` and wait until ``/healthz`` answers (and, with workers,
        until every worker logged ``serving``)."""
        port = free_port() if port is None else port
        child_env = {k: v for k, v in os.environ.items() if not k.startswith("LEADGATE_")}
        child_env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        child_env["PYTHONPATH"] = str(REPO_ROOT)
        child_env["LEADGATE_LOG_LEVEL"] = "info"
        if redis_url is not None:
            child_env["LEADGATE_REDIS_URL"] = redis_url
            child_env["LEADGATE_FINGERPRINT_KEY"] = FINGERPRINT_KEY
        child_env.update(env or {})
        argv = [
            sys.executable, "-m", "gateway.cli", "serve",
            "--config", str(config_path),
            "--host", "127.0.0.1", "--port", str(port),
            "--drain-s", "5",
            "--workers", str(workers),
            *args,
        ]  # fmt: skip
        number = len(self.started)
        stderr_path = self.workdir / f"server-{number}.stderr.log"
        with stderr_path.open("wb") as stderr:
            process = subprocess.Popen(
                argv,
                cwd=REPO_ROOT,
                env=child_env,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                start_new_session=True,
            )
        server = Server(process, port, stderr_path, config_path)
        self.started.append(server)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if process.poll() is not None:
                pytest.fail(f"server exited with {process.returncode}:\n{server.log_tail()}")
            serving = server.log_text().count('"msg":"serving"')
            if serving >= workers:
                with contextlib.suppress(OSError):
                    if request("GET", f"{server.url}/healthz", timeout_s=1).status == 200:
                        return server
            time.sleep(0.05)
        pytest.fail(f"server not healthy within {START_TIMEOUT_S}s:\n{server.log_tail()}")

    def start_worker(self, config_path: Path, *, redis_url: str, port: int | None = None) -> Server:
        """Start ``leadgate worker`` (its ``/metrics`` on ``port``, default a free one) and
        wait for ``/healthz``; the returned ``Server``'s port is the metrics port."""
        port = free_port() if port is None else port
        env = {k: v for k, v in os.environ.items() if not k.startswith("LEADGATE_")}
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        env.update(
            PYTHONPATH=str(REPO_ROOT),
            LEADGATE_LOG_LEVEL="info",
            LEADGATE_REDIS_URL=redis_url,
            LEADGATE_FINGERPRINT_KEY=FINGERPRINT_KEY,
            OBS_CRM_SECRET=CRM_SECRET,
        )
        argv = [
            sys.executable, "-m", "gateway.cli", "worker",
            "--config", str(config_path),
            "--metrics-host", "127.0.0.1", "--metrics-port", str(port),
        ]  # fmt: skip
        stderr_path = self.workdir / f"worker-{len(self.started)}.stderr.log"
        with stderr_path.open("wb") as stderr:
            process = subprocess.Popen(
                argv,
                cwd=REPO_ROOT,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                start_new_session=True,
            )
        worker = Server(process, port, stderr_path, config_path)
        self.started.append(worker)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if process.poll() is not None:
                pytest.fail(f"worker exited with {process.returncode}:\n{worker.log_tail()}")
            with contextlib.suppress(OSError):
                if request("GET", f"{worker.url}/healthz", timeout_s=1).status == 200:
                    return worker
            time.sleep(0.05)
        pytest.fail(f"worker not healthy within {START_TIMEOUT_S}s:\n{worker.log_tail()}")

    def close(self) -> None:
        for server in self.started:
            server.kill_group()


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[Launcher]:
    launcher = Launcher(tmp_path)
    try:
        yield launcher
    finally:
        launcher.close()


def promtool() -> str:
    binary = shutil.which("promtool")
    if binary is None:
        pytest.fail(PROMETHEUS_HINT, pytrace=False)
    return binary


def prometheus_binary() -> str:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail(PROMETHEUS_HINT, pytrace=False)
    return binary


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
    workdir: Path, targets: Sequence[str], rule_files: Sequence[Path] = ()
) -> Prometheus:
    """Prometheus with only our scrape job (no self-scrape, no other listener than its API on
    127.0.0.1), TSDB in ``workdir``; waits until it is ready."""
    binary = prometheus_binary()
    workdir.mkdir(parents=True, exist_ok=True)
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(p) for p in rule_files],
        "scrape_configs": [
            {"job_name": "leadgate", "static_configs": [{"targets": list(targets)}]}
        ],
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
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"prometheus exited: {log_path.read_text(errors='replace')}")
        with contextlib.suppress(OSError):
            if request("GET", f"{prometheus.url}/-/ready", timeout_s=1).status == 200:
                return prometheus
        time.sleep(0.1)
    prometheus.stop()
    pytest.fail(f"prometheus not ready within {START_TIMEOUT_S}s")


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
