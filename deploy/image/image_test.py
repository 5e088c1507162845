"""`make image-test`: build the Dockerfile as users build it and run the image for real.

With podman (Debian's; no Docker engine on our CI machines) and local stand-ins for the two
official base images we cannot pull (deploy/image/standin-base.sh):

1. builds the Dockerfile unchanged (`podman build`, the host's CA bundle mounted into the RUN
   steps only, for the TLS-inspecting proxy in front of PyPI), prints the time and the size;
2. inspects the image: user 10001, exec-form entrypoint, version = the Helm chart's
   appVersion, no wheels and no host CA bundle left in it;
3. `check-config` on the image's example config, on the local stack's config, and on a broken
   one (which must fail and name the bad key);
4. runs the services of deploy/compose.yaml that can run here (redis from the stand-in,
   gateway as `serve --workers 2`, worker, crm) with podman-compose, read-only as compose says,
   and checks `/healthz`, `/readyz`, `/metrics`, uid 10001, an accepted lead and its
   duplicate, the lead delivered by the worker to the CRM with a valid signature, Redis's
   persistence settings;
5. kill -9 of Redis mid-load: every lead answered `accepted` is still remembered (posting it
   again is a duplicate) and still reaches the CRM once Redis is back (AOF on its volume);
6. SIGTERM: gateway, worker and crm drain and exit 0 within their grace;
7. nothing written outside /tmp: `podman diff` of every container, and of a run of the
   documented `docker run` command with a WRITABLE root file system.

Every wait is bounded, every request goes to 127.0.0.1 (published ports) or stays between
the test's own containers, and the containers, network and volume are removed at the end.
Prints one PASS or FAIL line per check; exits 1 on the first failure.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
HERE = ROOT / "deploy" / "image"
COMPOSE_FILE = ROOT / "deploy" / "compose.yaml"
IMAGE = "localhost/leadgate:ci"
#: compose.yaml's `image: leadgate:local`: tagged on the image built here, so podman-compose
#: runs it instead of building (its build would not have the CA bundle mounted).
COMPOSE_IMAGE = "localhost/leadgate:local"
BASE_IMAGE = "docker.io/library/python:3.11-slim-bookworm"
PROJECT = "leadgate-imagetest"
#: Services of compose.yaml that run here (prometheus and grafana need images we cannot pull).
RUNNABLE = ("redis", "gateway", "worker", "crm")
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
#: What the Helm chart's probes hit (tests/deploy/test_compose.py checks they are the same):
#: service -> {path that must answer 200: container port}. The gateway's liveness is on its
#: metrics listener, its readiness on the API port.
PROBES = {
    "gateway": {"/healthz": 9101, "/readyz": 8080},
    "worker": {"/healthz": 9102, "/readyz": 9102},
}
#: Where the gateway serves /metrics: its metrics listener (LEADGATE_METRICS_PORT), never the
#: API port (API_PORT answers 404 there: a partner must not read other partners' volumes).
METRICS_PORT, METRICS_PATH, API_PORT = 9101, "/metrics", 8080
#: The published-port variables of compose.yaml; the test gives each a free port.
PORT_VARS = ("LEADGATE_PORT", "LEADGATE_METRICS_PORT", "LEADGATE_WORKER_PORT", "LEADGATE_CRM_PORT")
PARTNER_KEY = "demo-mailfox-key"  # deploy/compose/leadgate.yaml's demo partner
CAMPAIGN = "acme-always-on"
#: Paths podman itself creates in a container (mount points of /etc/hosts and friends).
PODMAN_PATHS = {"/etc", "/etc/hosts", "/etc/hostname", "/etc/resolv.conf", "/run", "/tmp"}
KILL_LOAD_LEADS = 300


class Failure(Exception):
    """A check failed; the message says what was expected and what was seen."""


def say(status: str, what: str, detail: str = "") -> None:
    print(f"{status:4} {what}" + (f": {detail}" if detail else ""), flush=True)


def run(
    *args: str, timeout_s: float = 120, check: bool = True, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    try:
        done = subprocess.run(
            args, capture_output=True, text=True, timeout=timeout_s, check=False, env=env
        )
    except subprocess.TimeoutExpired as exc:
        raise Failure(f"{' '.join(args)}: no answer within {timeout_s:.0f} s") from exc
    if check and done.returncode != 0:
        tail = (done.stdout + done.stderr).strip()[-2000:]
        raise Failure(f"{' '.join(args)}: exit {done.returncode}\n{tail}")
    return done


def podman(*args: str, timeout_s: float = 120, check: bool = True) -> str:
    return run("podman", *args, timeout_s=timeout_s, check=check).stdout.strip()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def http(
    method: str, url: str, body: Any = None, headers: dict[str, str] | None = None
) -> tuple[int, bytes]:
    """One request to 127.0.0.1 (the only host this test talks to), 5 s at most."""
    assert url.startswith("http://127.0.0.1:"), url
    data = json.dumps(body).encode() if body is not None else None
    # S310: the URL is checked above (http to loopback only).
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def wait_for(what: str, probe: Callable[[], bool], timeout_s: float) -> float:
    """Polls ``probe`` until it is true; returns the seconds it took, or fails at timeout_s."""
    started = time.monotonic()
    last = ""
    while time.monotonic() - started < timeout_s:
        try:
            if probe():
                return time.monotonic() - started
        except (OSError, ValueError, Failure) as exc:
            last = f" (last error: {exc})"
        time.sleep(0.2)
    raise Failure(f"{what}: not within {timeout_s:.0f} s{last}")


def post_lead(base: str, email: str, ref: str) -> dict[str, Any]:
    status, body = http(
        "POST",
        f"{base}/v1/leads",
        {"campaign": CAMPAIGN, "email": email, "first_name": "Marie", "ref": ref},
        {"Authorization": f"Bearer {PARTNER_KEY}", "Content-Type": "application/json"},
    )
    if status != 200:
        raise Failure(f"POST /v1/leads: {status} {body[:300]!r}")
    answer: dict[str, Any] = json.loads(body)
    return answer


def post_lead_as_a_publisher_would(
    base: str, email: str, ref: str, timeout_s: float = 30
) -> tuple[dict[str, Any], int]:
    """Posts until a decision, retrying 503 (store unavailable) every 0.5 s for at most
    ``timeout_s``, as publishers are told to; returns the answer and how many 503s came
    first. After a Redis restart one serving process may still be reconnecting while the
    other is ready."""
    started = time.monotonic()
    refused = 0
    while True:
        status, body = http(
            "POST",
            f"{base}/v1/leads",
            {"campaign": CAMPAIGN, "email": email, "first_name": "Marie", "ref": ref},
            {"Authorization": f"Bearer {PARTNER_KEY}", "Content-Type": "application/json"},
        )
        if status == 200:
            answer: dict[str, Any] = json.loads(body)
            return answer, refused
        if status != 503 or time.monotonic() - started > timeout_s:
            raise Failure(f"POST /v1/leads: {status} {body[:300]!r} (after {refused} 503s)")
        refused += 1
        time.sleep(0.5)


class ImageTest:
    def __init__(self) -> None:
        self.ports = {name: free_port() for name in PORT_VARS}
        self.env = {**os.environ, **{k: str(v) for k, v in self.ports.items()}}
        self.compose = [str(Path(sys.executable).parent / "podman-compose")]
        self.compose += ["-f", str(COMPOSE_FILE), "-p", PROJECT]
        self.version = ""
        self.compiled = ""
        self.timings: dict[str, float] = {}

    def url(self, var: str, path: str = "") -> str:
        return f"http://127.0.0.1:{self.ports[var]}{path}"

    def published(self, service: str, container_port: int, path: str) -> str:
        """The URL on 127.0.0.1 that compose published ``container_port`` of ``service`` at."""
        mapped = podman("port", self.container(service), f"{container_port}/tcp")
        host, _, port = mapped.splitlines()[0].rpartition(":")
        if host != "127.0.0.1":
            raise Failure(f"{service}:{container_port} published on {mapped}, not 127.0.0.1")
        return f"http://127.0.0.1:{port}{path}"

    def probes(self, service: str) -> str:
        for path, container_port in PROBES[service].items():
            url = self.published(service, container_port, path)
            status, body = http("GET", url)
            if status != 200:
                raise Failure(f"{service} {path} on {container_port}: {status} {body[:200]!r}")
        return " ".join(f"{path} 200 on :{port}" for path, port in PROBES[service].items())

    def container(self, service: str) -> str:
        names = podman(
            "ps", "-a", "--format", "{{.Names}}",
            "--filter", f"label=io.podman.compose.project={PROJECT}",
            "--filter", f"label=com.docker.compose.service={service}",
        ).split()  # fmt: skip
        if len(names) != 1:
            raise Failure(f"compose service {service}: containers {names}")
        return names[0]

    # -- 1, 2: build and inspect ------------------------------------------------------------

    def build(self) -> None:
        started = time.monotonic()
        run(str(HERE / "standin-base.sh"), timeout_s=900)
        self.timings["stand-ins"] = time.monotonic() - started
        started = time.monotonic()
        # What a user runs (`docker build -t leadgate .`), plus: no pull (the stand-in base),
        # the CA bundle of the host for RUN steps (PyPI behind a TLS-inspecting proxy).
        run(
            "podman", "build", "--pull=never",
            "-v", f"{CA_BUNDLE}:{CA_BUNDLE}:ro",
            "-t", IMAGE, "-t", COMPOSE_IMAGE, str(ROOT),
            timeout_s=900,
        )  # fmt: skip
        self.timings["build"] = time.monotonic() - started
        size = int(podman("image", "inspect", IMAGE, "--format", "{{.Size}}"))
        base = int(podman("image", "inspect", BASE_IMAGE, "--format", "{{.Size}}"))
        say(
            "PASS",
            "podman build (Dockerfile unchanged)",
            f"{self.timings['build']:.0f} s; image {size / 1e6:.0f} MB "
            f"= stand-in base {base / 1e6:.0f} MB + leadgate {(size - base) / 1e6:.0f} MB",
        )

    def inspect(self) -> None:
        config = json.loads(podman("image", "inspect", IMAGE, "--format", "{{json .Config}}"))
        if config.get("User") != "10001:10001":
            raise Failure(f"image user {config.get('User')!r}, expected 10001:10001")
        if config.get("Entrypoint") != ["leadgate"] or config.get("Cmd", [""])[0] != "serve":
            raise Failure(f"entrypoint {config.get('Entrypoint')} cmd {config.get('Cmd')}")
        out = podman("run", "--rm", "--network", "none", "--read-only", IMAGE, "--version")
        self.version = out.removeprefix("leadgate ").strip()
        chart = (ROOT / "helm" / "leadgate" / "Chart.yaml").read_text(encoding="utf-8")
        app_version = re.search(r'^appVersion:\s*"?([^"\s]+)"?', chart, re.M)
        if app_version is None or app_version.group(1) != self.version:
            raise Failure(f"image is leadgate {self.version}; chart appVersion {app_version}")
        # The image holds this tree's code, not a builder's cached install of an older one:
        # the same digest of every gateway/**/*.py, here and in the image's installed package.
        digest = (
            "import gateway, hashlib, pathlib; root = pathlib.Path(gateway.__file__).parent; "
            "files = sorted(p for p in root.rglob('*.py') if '__pycache__' not in p.parts); "
            "print(hashlib.sha256(b''.join(p.relative_to(root).as_posix().encode() + b'\\0' "
            "+ p.read_bytes() for p in files)).hexdigest())"
        )
        local = subprocess.run(
            [sys.executable, "-c", digest],
            capture_output=True, text=True, check=True, timeout=60, cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        ).stdout.strip()  # fmt: skip
        installed = podman(
            "run", "--rm", "--network", "none", "--entrypoint", "python", IMAGE, "-c", digest
        ).strip()  # fmt: skip
        if installed != local:
            raise Failure("the image's gateway/ is not this tree's (a stale build cache?)")
        # The per-lead modules run compiled by mypyc (setup.py), of these very sources
        # (`import gateway` refuses a stale one).
        self.compiled = podman(
            "run", "--rm", "--network", "none", "--entrypoint", "python", IMAGE, "-c",
            "import gateway; print(gateway.COMPILED_MODULES)",
        ).strip()  # fmt: skip
        if self.compiled in ("", "0"):
            raise Failure("the image runs plain Python: no module compiled (setup.py)")
        probe = (
            "import hashlib, os, pathlib; "
            f"print(hashlib.sha256(pathlib.Path('{CA_BUNDLE}').read_bytes()).hexdigest()); "
            "print(os.path.exists('/wheels'), os.path.exists('/root/.cache/pip'))"
        )
        image_ca, leftovers = podman(
            "run", "--rm", "--network", "none", "--entrypoint", "python", IMAGE, "-c", probe
        ).splitlines()
        base_ca = podman(
            "run", "--rm", "--network", "none", BASE_IMAGE, "python", "-c", probe
        ).splitlines()[0]
        if image_ca != base_ca:
            raise Failure("the image's CA bundle differs from its base's: the host's leaked in")
        if leftovers != "False False":
            raise Failure(f"/wheels or a pip cache left in the image: {leftovers}")
        podman("tag", IMAGE, f"localhost/leadgate:{self.version}")
        say(
            "PASS",
            "image metadata",
            f"user 10001:10001, ENTRYPOINT [leadgate], leadgate {self.version} = chart "
            f"appVersion (tagged localhost/leadgate:{self.version}), its gateway/ = this "
            f"tree's ({self.compiled} modules compiled), no wheels, CA bundle = the base's",
        )

    # -- 3: check-config -----------------------------------------------------------------------

    def check_config(self) -> None:
        base = ["run", "--rm", "--network", "none", "--read-only", "--tmpfs", "/tmp"]
        example = podman(*base, IMAGE, "check-config", "/app/examples/leadgate.yaml")
        if not example.startswith("OK:"):
            raise Failure(f"check-config of the example: {example}")
        stack = ROOT / "deploy" / "compose" / "leadgate.yaml"
        mount = f"{stack}:/etc/leadgate/leadgate.yaml:ro"
        mine = podman(*base, "-v", mount, IMAGE, "check-config", "/etc/leadgate/leadgate.yaml")
        if not mine.startswith("OK:"):
            raise Failure(f"check-config of deploy/compose/leadgate.yaml: {mine}")
        with tempfile.TemporaryDirectory() as tmp:
            broken = Path(tmp) / "leadgate.yaml"
            text = stack.read_text(encoding="utf-8")
            broken.write_text(text.replace("window: 30d", "window: 30x"), encoding="utf-8")
            broken.chmod(0o644)
            result = run(
                "podman", *base, "-v", f"{broken}:/etc/leadgate/leadgate.yaml:ro",
                IMAGE, "check-config", "/etc/leadgate/leadgate.yaml",
                check=False,
            )  # fmt: skip
        said = result.stdout + result.stderr
        if result.returncode == 0 or "campaigns[0].dedup[0].window" not in said:
            raise Failure(f"check-config of a broken file: exit {result.returncode}: {said}")
        say(
            "PASS",
            "check-config",
            "the example and the stack's config OK; a bad window "
            "refused naming campaigns[0].dedup[0].window",
        )

    # -- 4: the stack's runnable services ----------------------------------------------------

    def compose_up(self) -> None:
        self.compose_down(quiet=True)  # what a killed earlier run may have left
        run(*self.compose, "up", "-d", *RUNNABLE, env=self.env, timeout_s=180)
        gateway = self.url("LEADGATE_PORT")
        took = wait_for(
            "gateway /readyz 200 on Redis",
            lambda: _ready_redis(http("GET", f"{gateway}/readyz")),
            timeout_s=60,
        )
        wait_for(
            "crm /healthz",
            lambda: http("GET", self.url("LEADGATE_CRM_PORT", "/healthz"))[0] == 200,
            timeout_s=30,
        )
        say(
            "PASS",
            "podman-compose up " + " ".join(RUNNABLE),
            f"gateway ready on Redis in {took:.1f} s",
        )

    def compose_down(self, quiet: bool = False) -> None:
        result = run(
            *self.compose, "down", "-v", "-t", "25", env=self.env, check=False, timeout_s=180
        )
        if not quiet and result.returncode != 0:
            say("WARN", "podman-compose down", (result.stdout + result.stderr)[-500:])

    def serve_checks(self) -> None:
        probes = self.probes("gateway")
        status, body = http("GET", self.published("gateway", METRICS_PORT, METRICS_PATH))
        if status != 200 or b"leadgate_leads_total" not in body:
            raise Failure(f"{METRICS_PATH}: {status} {body[:200]!r}")
        status, body = http("GET", self.published("gateway", API_PORT, METRICS_PATH))
        if status != 404 or b"leadgate_" in body:
            raise Failure(f"{METRICS_PATH} on the API port :{API_PORT}: {status} {body[:200]!r}")
        for service in ("gateway", "worker", "crm"):
            name = self.container(service)
            uid = podman("exec", name, "id", "-u")
            read_only = podman("inspect", name, "--format", "{{.HostConfig.ReadonlyRootfs}}")
            if uid != "10001" or read_only != "true":
                raise Failure(f"{service}: uid {uid}, read-only root {read_only}")
        processes = podman("top", self.container("gateway"), "pid", "args").splitlines()[1:]
        serving = [p for p in processes if "leadgate" in p or "python" in p]
        if len(serving) < 3:  # the supervisor and its 2 serving processes
            raise Failure(f"gateway processes: {processes}")
        say(
            "PASS",
            "serve --workers 2",
            f"{probes} (store redis), {METRICS_PATH} 200 on :{METRICS_PORT} and 404 on "
            f":{API_PORT}, "
            f"{len(serving)} processes; gateway, "
            "worker, crm run as uid 10001 on a read-only root",
        )

    def redis_settings(self) -> None:
        redis = self.container("redis")
        got = {
            key: podman("exec", redis, "redis-cli", "config", "get", key).splitlines()[-1]
            for key in ("appendonly", "appendfsync", "maxmemory-policy", "dir")
        }
        want = {
            "appendonly": "yes",
            "appendfsync": "everysec",
            "maxmemory-policy": "noeviction",
            "dir": "/data",
        }
        if got != want:
            raise Failure(f"redis settings {got}, expected {want}")
        say("PASS", "redis (stand-in) settings", ", ".join(f"{k} {v}" for k, v in got.items()))

    def crm_leads(self) -> dict[str, dict[str, Any]]:
        status, body = http("GET", self.url("LEADGATE_CRM_PORT", "/leads"))
        if status != 200:
            raise Failure(f"crm /leads: {status}")
        return {item["webhook_id"]: item for item in json.loads(body)["received"]}

    def decide_and_deliver(self) -> None:
        gateway = self.url("LEADGATE_PORT")
        email = f"image.test.{uuid.uuid4().hex[:12]}@example.org"
        first = post_lead(gateway, email, "r-1")
        if first.get("decision") != "accepted":
            raise Failure(f"first post: {first}")
        again = post_lead(gateway, email, "r-2")
        if again.get("decision") != "duplicate":
            raise Failure(f"second post of the same person: {again}")
        lead_id = first["lead_id"]
        took = wait_for(
            "the worker delivers the lead to the crm",
            lambda: lead_id in self.crm_leads(),
            timeout_s=30,
        )
        got = self.crm_leads()[lead_id]
        data = got["lead"].get("data", {})
        if (
            data.get("email") != email
            or data.get("lead_id") != lead_id
            or got["path"] != "/acme/leads"
        ):
            raise Failure(f"the crm got {got}")
        probes = self.probes("worker")
        worker_port = PROBES["worker"]["/healthz"]
        status, body = http("GET", self.published("worker", worker_port, METRICS_PATH))
        delivered = re.search(
            rb'leadgate_delivery_attempts_total\{[^}]*outcome="delivered"[^}]*\} (\S+)', body
        )
        if status != 200 or delivered is None or float(delivered.group(1)) < 1:
            raise Failure(f"worker /metrics: {status}, delivered {delivered}")
        say(
            "PASS",
            "decide and deliver",
            f"accepted then duplicate; the worker delivered the "
            f"lead to the crm in {took:.1f} s (signature verified by the crm); worker "
            f"{probes}, /metrics counts it delivered",
        )

    # -- 5: kill -9 of Redis mid-load ----------------------------------------------------------

    def redis_kill_mid_load(self) -> None:
        gateway = self.url("LEADGATE_PORT")
        redis = self.container("redis")
        tag = uuid.uuid4().hex[:8]

        def one(i: int) -> tuple[str, dict[str, Any] | None]:
            email = f"aof.{tag}.{i}@example.org"
            try:
                return email, post_lead(gateway, email, f"k-{i}")
            except (Failure, OSError):
                return email, None  # 503 while Redis is down, or a reset: not accepted

        with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
            futures = [pool.submit(one, i) for i in range(KILL_LOAD_LEADS)]
            # Kill once a third of the leads have been answered: mid-load.
            wait_for(
                "a third of the load answered",
                lambda: sum(f.done() for f in futures) >= KILL_LOAD_LEADS // 3,
                timeout_s=60,
            )
            podman("kill", "--signal", "KILL", redis)
            answers = [f.result(timeout=60) for f in futures]
        accepted = {e: a["lead_id"] for e, a in answers if a and a["decision"] == "accepted"}
        refused = sum(1 for _, a in answers if a is None)
        podman("start", redis)
        wait_for(
            "gateway ready again after Redis restarted",
            lambda: _ready_redis(http("GET", f"{gateway}/readyz")),
            timeout_s=60,
        )
        if not accepted:
            raise Failure("no lead was accepted before the kill")
        forgotten = []
        retried = 0
        for email in accepted:
            answer, unavailable = post_lead_as_a_publisher_would(gateway, email, "again")
            retried += unavailable
            if answer["decision"] != "duplicate":
                forgotten.append(email)
        if forgotten:
            raise Failure(f"{len(forgotten)} of {len(accepted)} accepted leads forgotten")
        wanted = set(accepted.values())
        wait_for(
            f"all {len(wanted)} accepted leads at the crm",
            lambda: wanted <= set(self.crm_leads()),
            timeout_s=60,
        )
        say(
            "PASS",
            "kill -9 of Redis (AOF everysec) mid-load",
            f"{len(accepted)} leads accepted before/around the kill, {refused} refused "
            f"(503/reset) while it was down, {retried} 503 retried after the restart; "
            "0 accepted leads lost: all remembered as "
            "duplicates after restart and all delivered to the crm",
        )

    # -- 6: SIGTERM ----------------------------------------------------------------------------

    def sigterm(self) -> None:
        report = []
        for service, grace_s in (("gateway", 15), ("worker", 25), ("crm", 10)):
            name = self.container(service)
            started = time.monotonic()
            # podman stop sends the image's stop signal (SIGTERM) and SIGKILLs after grace_s:
            # exit 0 well within it means the process drained and stopped by itself.
            podman("stop", "-t", str(grace_s), name, timeout_s=grace_s + 30)
            took = time.monotonic() - started
            code = podman("inspect", name, "--format", "{{.State.ExitCode}}")
            if code != "0" or took >= grace_s:
                raise Failure(f"{service}: exit {code} after {took:.1f} s (grace {grace_s} s)")
            report.append(f"{service} exit 0 in {took:.1f} s")
        logs = run("podman", "logs", self.container("gateway")).stderr
        logs += run("podman", "logs", self.container("gateway")).stdout
        if '"msg":"stopped"' not in logs:
            raise Failure("the gateway's log has no 'stopped' line")
        say("PASS", "SIGTERM drains", ", ".join(report))

    # -- 7: writes -----------------------------------------------------------------------------

    def no_writes(self) -> None:
        for service in RUNNABLE:
            name = self.container(service)
            changed = self.changes(name)
            if service == "redis":
                continue  # not our image; its writes go to its /data volume
            if changed:
                raise Failure(f"{service} wrote outside /tmp: {sorted(changed)}")
        # The documented `docker run` (example config, embedded store), but with a WRITABLE
        # root: whatever it writes outside /tmp shows in podman diff.
        port, metrics_port = free_port(), free_port()
        name = f"{PROJECT}-writable"
        podman("rm", "-f", name, check=False)
        podman(
            "run",
            "-d",
            "--name",
            name,
            "--tmpfs",
            "/tmp",
            "-p",
            f"127.0.0.1:{port}:{API_PORT}",
            "-p",
            f"127.0.0.1:{metrics_port}:{METRICS_PORT}",
            IMAGE,
            "serve",
            "--workers",
            "2",
        )
        try:
            base = f"http://127.0.0.1:{port}"
            wait_for(
                "writable run /readyz",
                lambda: http("GET", f"{base}/readyz")[0] == 200,
                timeout_s=60,
            )
            answer = post_lead(base, f"w.{uuid.uuid4().hex[:8]}@example.org", "w-1")
            if answer.get("decision") != "accepted":
                raise Failure(f"writable run: {answer}")
            status, _ = http("GET", f"http://127.0.0.1:{metrics_port}{METRICS_PATH}")
            if status != 200:
                raise Failure(f"writable run {METRICS_PATH}: {status}")
            podman("stop", "-t", "15", name, timeout_s=45)
            changed = self.changes(name)
            if changed:
                raise Failure(f"the writable run wrote outside /tmp: {sorted(changed)}")
        finally:
            podman("rm", "-f", name, check=False)
        say(
            "PASS",
            "nothing written outside /tmp",
            "podman diff empty (but podman's own mount "
            "points) for gateway, worker, crm, and for serve --workers 2 on a writable root "
            "after a lead and a scrape",
        )

    @staticmethod
    def changes(name: str) -> set[str]:
        """What ``podman diff`` lists, less what podman itself made: the mount points of
        /etc/hosts and friends, and of the container's volumes (with their parents)."""
        lines = podman("diff", name).splitlines()
        paths = {line.split(maxsplit=1)[1] for line in lines if line.strip()}
        mounts = json.loads(podman("inspect", name, "--format", "{{json .Mounts}}")) or []
        expected = set(PODMAN_PATHS)
        for mount in mounts:
            expected.update(
                str(p) for p in (Path(mount["Destination"]), *Path(mount["Destination"]).parents)
            )
        return {p for p in paths if p not in expected and not p.startswith("/tmp/")}


def _ready_redis(answer: tuple[int, bytes]) -> bool:
    status, body = answer
    return status == 200 and json.loads(body).get("store") == "redis"


@contextlib.contextmanager
def step_timer(test: ImageTest) -> Iterator[None]:
    started = time.monotonic()
    yield
    test.timings["total"] = time.monotonic() - started


def main() -> int:
    for tool in ("podman", "runc", "debootstrap"):
        if shutil.which(tool) is None:
            print(f"FAIL {tool} not found: run .ci/install-podman (make image-test does)")
            return 1
    os.environ.setdefault("CONTAINERS_CONF", str(HERE / "containers.conf"))
    test = ImageTest()
    steps = [
        test.build, test.inspect, test.check_config, test.compose_up, test.serve_checks,
        test.redis_settings, test.decide_and_deliver, test.redis_kill_mid_load, test.sigterm,
        test.no_writes,
    ]  # fmt: skip
    failed = False
    with step_timer(test):
        try:
            for step in steps:
                started = time.monotonic()
                step()
                test.timings.setdefault(step.__name__, time.monotonic() - started)
        except Failure as exc:
            say("FAIL", step.__name__.replace("_", " "), str(exc))
            for service in ("gateway", "worker", "crm", "redis"):
                with contextlib.suppress(Failure):
                    tail = run("podman", "logs", "--tail", "30", test.container(service))
                    print(f"--- {service} log (last lines)\n{tail.stdout}{tail.stderr}")
            failed = True
        finally:
            test.compose_down()
    times = ", ".join(f"{k} {v:.0f} s" for k, v in test.timings.items())
    print(f"image-test: {'FAILED' if failed else 'all checks passed'} ({times})", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
