"""The Helm chart (``helm/leadgate``), checked without helm: values against the schema, the
templates rendered by ``gotemplate`` for the default values and every ``ci/*-values.yaml``, the
manifests against the Kubernetes schemas (kubernetes-validate, strict: unknown fields fail),
and what an ops engineer relies on (labels, probes, shutdown timing, secrets, config roll)."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml

from gateway.config.load import load_config

from .gotemplate import Template, TemplateError, documents, merge_values

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "leadgate"
DEFAULTS: dict[str, Any] = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))
SCHEMA: dict[str, Any] = json.loads((CHART / "values.schema.json").read_text(encoding="utf-8"))
CI_FILES = sorted((CHART / "ci").glob("*-values.yaml"))
#: The oldest Kubernetes the chart declares (Chart.yaml kubeVersion) and the newest schema.
KUBE_VERSIONS = ("1.25.0", kubernetes_validate.latest_version())
#: Custom resources: kubernetes-validate has no schema for them; checked by tests below.
CUSTOM_KINDS = {"ServiceMonitor", "PrometheusRule"}
#: Objects the schema leaves open on purpose: Kubernetes types passed through as they are
#: (the rendered manifests are validated against the Kubernetes schemas instead), the Bitnami
#: subchart's values (its own schema), and Helm's `global`.
OPEN_OBJECTS = {
    "affinity",
    "podSecurityContext",
    "securityContext",
    "redis",
    "global",
}


def values_for(name: str) -> dict[str, Any]:
    if name == "default":
        return copy.deepcopy(DEFAULTS)
    overlay = yaml.safe_load((CHART / "ci" / name).read_text(encoding="utf-8"))
    merged: dict[str, Any] = merge_values(copy.deepcopy(DEFAULTS), overlay)
    return merged


VALUE_SETS = ["default", *(f.name for f in CI_FILES)]


@pytest.fixture(scope="module")
def chart() -> Template:
    return Template(CHART)


def render(chart: Template, values: dict[str, Any]) -> list[dict[str, Any]]:
    return documents(chart.render(values))


def one(docs: list[dict[str, Any]], kind: str, name_suffix: str = "") -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"].endswith(name_suffix)]
    assert len(found) == 1, f"{kind} *{name_suffix}: {len(found)} rendered"
    return found[0]


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    result: dict[str, Any] = containers[0]
    return result


def env_refs(c: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("valueFrom", {}).get("secretKeyRef", e.get("value")) for e in c["env"]}


# --- values and schema -------------------------------------------------------------------


def test_ci_value_files_exist() -> None:
    assert {f.name for f in CI_FILES} >= {"production-values.yaml", "embedded-values.yaml"}


@pytest.mark.parametrize("name", VALUE_SETS)
def test_values_match_the_schema(name: str) -> None:
    jsonschema.Draft7Validator.check_schema(SCHEMA)
    jsonschema.Draft7Validator(SCHEMA).validate(values_for(name))


@pytest.mark.parametrize(
    ("path", "bad"),
    [
        (("api", "replica"), 3),  # a typo of replicas
        (("api", "drainSeconds"), "10s"),
        (("secrets", "crm", "lowercase_var"), {"name": "s", "key": "k"}),
        (("secrets", "redisUrl", "namespace"), "x"),
        (("logLevel",), "verbose"),
        (("rulePacks", "Bad Name"), "rules: []"),
        (("metrics", "serviceMonitor", "scrapeTimeout"), "10s"),
    ],
)
def test_schema_refuses_unknown_keys_and_bad_values(path: tuple[str, ...], bad: object) -> None:
    values = copy.deepcopy(DEFAULTS)
    target = values
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = bad
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft7Validator(SCHEMA).validate(values)


def _objects(schema: dict[str, Any], where: str) -> Iterator[tuple[str, dict[str, Any]]]:
    if schema.get("type") == "object":
        yield where, schema
    for name, sub in schema.get("properties", {}).items():
        yield from _objects(sub, name)
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            yield from _objects(schema[key], where)
    for sub in schema.get("oneOf", []):
        yield from _objects(sub, where)


def test_every_schema_object_is_closed() -> None:
    """additionalProperties: false on every object with fixed keys; a typed value schema on
    maps; open only where OPEN_OBJECTS says why."""
    for where, obj in _objects(SCHEMA, "(root)"):
        if where in OPEN_OBJECTS:
            continue
        closed = obj.get("additionalProperties")
        assert closed is False or isinstance(closed, dict), f"{where} is open"
        if "properties" in obj:
            assert closed is False, f"{where} has fixed keys but accepts others"


# --- rendering and the Kubernetes schemas ------------------------------------------------


@pytest.mark.parametrize("name", VALUE_SETS)
def test_manifests_are_valid_kubernetes(chart: Template, name: str) -> None:
    docs = render(chart, values_for(name))
    kinds = [d["kind"] for d in docs]
    assert kinds.count("Deployment") == (2 if values_for(name)["worker"]["enabled"] else 1)
    for doc in docs:
        if doc["kind"] in CUSTOM_KINDS:
            continue
        for version in KUBE_VERSIONS:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as error:
                where = "/".join(str(p) for p in error.path)
                pytest.fail(f"{doc['kind']} {doc['metadata']['name']} ({version}) {where}: {error}")


def test_defaults_render_every_always_on_kind(chart: Template) -> None:
    kinds = sorted(d["kind"] for d in render(chart, values_for("default")))
    twice = ["ConfigMap", "Deployment", "PodDisruptionBudget"]
    # Services: the public API, and the api's and the workers' metrics (headless).
    assert kinds == sorted([*twice, *twice, *["Service"] * 3, "ServiceAccount"])


def test_optional_features_are_off_by_default_and_render_when_on(chart: Template) -> None:
    default = {d["kind"] for d in render(chart, values_for("default"))}
    production = {d["kind"] for d in render(chart, values_for("production-values.yaml"))}
    optional = {"HorizontalPodAutoscaler", "NetworkPolicy", "ServiceMonitor", "PrometheusRule"}
    assert not default & optional
    assert production >= optional


# --- workloads -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", VALUE_SETS)
def test_components_labels_and_selectors_agree(chart: Template, name: str) -> None:
    docs = render(chart, values_for(name))
    for deployment in (d for d in docs if d["kind"] == "Deployment"):
        component = deployment["metadata"]["labels"]["app.kubernetes.io/component"]
        assert deployment["metadata"]["name"].endswith(f"-{component}")
        selector = deployment["spec"]["selector"]["matchLabels"]
        pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert selector["app.kubernetes.io/component"] == component
        assert selector.items() <= pod_labels.items()
    api = one(docs, "Deployment", "-api")
    service = one(docs, "Service", "leadgate")
    api_labels = api["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= api_labels.items()
    assert [p["targetPort"] for p in service["spec"]["ports"]] == ["http"]  # the API only
    assert container(api)["ports"][0]["name"] == "http"
    for kind in ("HorizontalPodAutoscaler", "PodDisruptionBudget"):
        for doc in (d for d in docs if d["kind"] == kind):
            target = one(docs, "Deployment", doc["metadata"]["name"][-4:])
            if kind == "HorizontalPodAutoscaler":
                assert doc["spec"]["scaleTargetRef"]["name"] == target["metadata"]["name"]
                assert "replicas" not in target["spec"]  # the HPA owns the count
            else:
                labels = target["spec"]["template"]["metadata"]["labels"]
                assert doc["spec"]["selector"]["matchLabels"].items() <= labels.items()


@pytest.mark.parametrize("name", VALUE_SETS)
def test_probes_and_shutdown_timing(chart: Template, name: str, tmp_path: Path) -> None:
    values = values_for(name)
    docs = render(chart, values)
    api = one(docs, "Deployment", "-api")
    c = container(api)
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    # Liveness on the metrics listener (a flood of partner connections must not get a live
    # pod restarted), readiness on the public port (can partners be served?).
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert ports == {"http": 8080, "metrics": values["api"]["metricsPort"]}
    env = {e["name"]: e for e in c["env"]}
    assert env["LEADGATE_METRICS_PORT"]["value"] == str(values["api"]["metricsPort"])
    token = values["secrets"]["metricsToken"]
    assert ("LEADGATE_METRICS_TOKEN" in env) == bool(token["name"])
    args = c["args"]
    assert args[0] == "serve"
    drain_s = float(args[args.index("--drain-s") + 1])
    sleep = c["lifecycle"]["preStop"]["exec"]["command"]
    assert sleep[0] == "sleep"
    grace = api["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace > drain_s + float(sleep[1])
    assert int(args[args.index("--workers") + 1]) == values["api"]["processes"]
    if values["worker"]["enabled"]:
        worker = one(docs, "Deployment", "-worker")
        w = container(worker)
        assert w["args"][0] == "worker"
        assert w["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
        assert w["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
        port = int(w["args"][w["args"].index("--metrics-port") + 1])
        assert w["ports"] == [{"name": "metrics", "containerPort": port, "protocol": "TCP"}]
        config = _load_rendered_config(docs, tmp_path)
        assert worker["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > (
            config.delivery.shutdown_grace_s
        )


@pytest.mark.parametrize("name", VALUE_SETS)
def test_pods_run_unprivileged_on_a_read_only_root(chart: Template, name: str) -> None:
    for deployment in (d for d in render(chart, values_for(name)) if d["kind"] == "Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        c = container(deployment)
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == 10001  # the Dockerfile's USER
        assert c["securityContext"]["readOnlyRootFilesystem"] is True
        assert c["securityContext"]["allowPrivilegeEscalation"] is False
        assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}
        mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert "emptyDir" in volumes[mounts["/tmp"]]
        writable = [m for m in c["volumeMounts"] if not m.get("readOnly")]
        assert [m["mountPath"] for m in writable] == ["/tmp"]
        assert pod["automountServiceAccountToken"] is False


def test_no_resources_by_default(chart: Template) -> None:
    for deployment in (
        d for d in render(chart, values_for("default")) if d["kind"] == "Deployment"
    ):
        assert container(deployment)["resources"] == {}


# --- config, rules, roll on change -------------------------------------------------------


def _load_rendered_config(docs: list[dict[str, Any]], tmp: Path) -> Any:
    """Write the rendered ConfigMaps where the pods mount them (under ``tmp``), check that the
    config's rules_dir is the rules mount, and load it with the gateway's own loader."""
    api = one(docs, "Deployment", "-api")
    mounts = {m["name"]: m["mountPath"] for m in container(api)["volumeMounts"]}
    volumes = {
        v["name"]: v["configMap"]["name"]
        for v in api["spec"]["template"]["spec"]["volumes"]
        if "configMap" in v
    }
    maps = {d["metadata"]["name"]: d["data"] for d in docs if d["kind"] == "ConfigMap"}
    config_path = container(api)["args"][container(api)["args"].index("--config") + 1]
    assert Path(config_path).parent.as_posix() == mounts["config"]
    config_data = maps[volumes["config"]]
    text = config_data[Path(config_path).name]
    assert yaml.safe_load(text)["rules_dir"] == mounts["rules"]
    rules = tmp / "rules"
    rules.mkdir(parents=True, exist_ok=True)
    for file, pack in maps[volumes["rules"]].items():
        (rules / file).write_text(pack, encoding="utf-8")
    local = text.replace(f"rules_dir: {mounts['rules']}", f"rules_dir: {rules}")
    (tmp / "leadgate.yaml").write_text(local, encoding="utf-8")
    return load_config(str(tmp / "leadgate.yaml"))


@pytest.mark.parametrize("name", VALUE_SETS)
def test_rendered_config_and_rules_load(chart: Template, name: str, tmp_path: Path) -> None:
    config = _load_rendered_config(render(chart, values_for(name)), tmp_path)
    assert config.campaigns


def test_rule_packs_ship_and_can_be_replaced_or_added(chart: Template) -> None:
    shipped = {p.name: p.read_text(encoding="utf-8") for p in (ROOT / "rules").glob("*.yaml")}
    docs = render(chart, values_for("default"))
    assert one(docs, "ConfigMap", "-rules")["data"] == shipped
    values = values_for("default")
    values["rulePacks"] = {"default": "rules: []\n", "mine": "rules: []\n"}
    data = one(render(chart, values), "ConfigMap", "-rules")["data"]
    assert data == {**shipped, "default.yaml": "rules: []\n", "mine.yaml": "rules: []\n"}


def test_chart_copies_of_rules_and_alerts_equal_the_originals() -> None:
    """One source: files/ holds copies (Helm cannot read outside the chart); refresh with
    `cp rules/*.yaml helm/leadgate/files/rules/ && cp deploy/prometheus/alerts.yaml
    helm/leadgate/files/`."""
    originals = {p.name: p.read_bytes() for p in (ROOT / "rules").glob("*.yaml")}
    copies = {p.name: p.read_bytes() for p in (CHART / "files" / "rules").glob("*.yaml")}
    assert copies == originals
    alerts = (ROOT / "deploy" / "prometheus" / "alerts.yaml").read_bytes()
    assert (CHART / "files" / "alerts.yaml").read_bytes() == alerts


def test_a_config_change_rolls_every_pod(chart: Template) -> None:
    def checksums(values: dict[str, Any]) -> set[str]:
        docs = render(chart, values)
        deployments = [d for d in docs if d["kind"] == "Deployment"]
        assert len(deployments) == 2
        return {
            d["spec"]["template"]["metadata"]["annotations"]["checksum/config"] for d in deployments
        }

    before = checksums(values_for("default"))
    assert len(before) == 1  # api and worker roll together
    changed = values_for("default")
    changed["config"] += "# a comment is a change too\n"
    assert checksums(changed).isdisjoint(before)
    packs = values_for("default")
    packs["rulePacks"] = {"extra": "rules: []\n"}
    assert checksums(packs).isdisjoint(before)
    assert checksums(values_for("default")) == before  # deterministic


# --- secrets -------------------------------------------------------------------------------


def test_secrets_reach_only_the_pods_that_need_them(chart: Template) -> None:
    docs = render(chart, values_for("production-values.yaml"))
    api = env_refs(container(one(docs, "Deployment", "-api")))
    worker = env_refs(container(one(docs, "Deployment", "-worker")))
    assert api == {
        "LEADGATE_LOG_LEVEL": "warning",
        "LEADGATE_REDIS_URL": {"name": "leadgate-redis", "key": "url"},
        "LEADGATE_FINGERPRINT_KEY": {"name": "leadgate-keys", "key": "current"},
        "LEADGATE_FINGERPRINT_PREVIOUS_KEYS": {"name": "leadgate-keys", "key": "previous"},
        "LEADGATE_ADMIN_TOKEN": {"name": "leadgate-admin", "key": "token"},
        "LEADGATE_METRICS_TOKEN": {"name": "leadgate-metrics", "key": "token"},
        "LEADGATE_METRICS_PORT": "9101",
    }
    assert worker == {
        "LEADGATE_LOG_LEVEL": "warning",
        "LEADGATE_REDIS_URL": {"name": "leadgate-redis", "key": "url"},
        "LEADGATE_METRICS_TOKEN": {"name": "leadgate-metrics", "key": "token"},
        "LEADGATE_WEBHOOK_SECRET_ACME": {"name": "leadgate-crm", "key": "acme"},
    }
    # With the worker inside the api process, the CRM secrets go to the api pods too.
    values = values_for("production-values.yaml")
    values["api"]["withWorker"] = True
    api_with_worker = container(one(render(chart, values), "Deployment", "-api"))
    assert "--with-worker" in api_with_worker["args"]
    assert "LEADGATE_WEBHOOK_SECRET_ACME" in env_refs(api_with_worker)


def test_the_embedded_demo_has_no_secrets_and_no_worker(chart: Template) -> None:
    docs = render(chart, values_for("embedded-values.yaml"))
    assert env_refs(container(one(docs, "Deployment", "-api"))) == {
        "LEADGATE_LOG_LEVEL": "info",
        "LEADGATE_METRICS_PORT": "9101",  # a port, not a secret
    }
    assert not [d for d in docs if d["metadata"]["name"].endswith("-worker")]


@pytest.mark.parametrize(
    ("key", "value"),
    [("api.replicas", 2), ("api.processes", 2), ("worker.enabled", True)],
)
def test_the_embedded_store_refuses_more_than_one_process(
    chart: Template, key: str, value: object
) -> None:
    """Each process would keep its own memory: dedup and caps would not hold."""
    values = values_for("embedded-values.yaml")
    section, name = key.split(".")
    values[section][name] = value
    with pytest.raises(TemplateError, match="in-memory store"):
        chart.render(values)
    values["secrets"]["redisUrl"]["name"] = "leadgate"
    assert render(chart, values)


def test_bitnami_redis_url_is_composed_from_the_subchart(chart: Template) -> None:
    docs = render(chart, values_for("bitnami-redis-values.yaml"))
    for deployment in (d for d in docs if d["kind"] == "Deployment"):
        env = container(deployment)["env"]
        names = [e["name"] for e in env]
        # $(REDIS_PASSWORD) expands only if the variable is defined earlier in the list.
        assert names.index("REDIS_PASSWORD") < names.index("LEADGATE_REDIS_URL")
        url = env[names.index("LEADGATE_REDIS_URL")]["value"]
        assert url == "redis://:$(REDIS_PASSWORD)@lg-redis-master:6379/0"
        password = env[names.index("REDIS_PASSWORD")]["valueFrom"]["secretKeyRef"]
        assert password == {"name": "lg-redis", "key": "redis-password"}
    chart_yaml = yaml.safe_load((CHART / "Chart.yaml").read_text(encoding="utf-8"))
    [dependency] = chart_yaml["dependencies"]
    assert (dependency["name"], dependency["condition"]) == ("redis", "redis.enabled")


# --- Prometheus Operator resources -------------------------------------------------------


def test_prometheus_rule_holds_the_projects_alert_rules(chart: Template) -> None:
    docs = render(chart, values_for("production-values.yaml"))
    rule = one(docs, "PrometheusRule")
    alerts = yaml.safe_load((ROOT / "deploy/prometheus/alerts.yaml").read_text(encoding="utf-8"))
    assert rule["spec"] == alerts
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"


def test_service_monitor_scrapes_the_metrics_ports_never_the_public_one(chart: Template) -> None:
    values = values_for("production-values.yaml")
    docs = render(chart, values)
    monitor = one(docs, "ServiceMonitor")
    selector = monitor["spec"]["selector"]["matchLabels"]
    services = [d for d in docs if d["kind"] == "Service"]
    selected = [s for s in services if selector.items() <= s["metadata"]["labels"].items()]
    scraped = {e["port"] for e in monitor["spec"]["endpoints"]}
    assert scraped == {"metrics"}
    assert {e["path"] for e in monitor["spec"]["endpoints"]} == {"/metrics"}
    # The api's and the workers' metrics ports are offered by headless Services of their own;
    # the public Service has the API port only, so nothing scrapes (or exposes) it there.
    offering = {
        s["spec"]["selector"]["app.kubernetes.io/component"]
        for s in selected
        if "metrics" in {p["name"] for p in s["spec"]["ports"]}
    }
    assert offering == {"api", "worker"}
    public = one(docs, "Service", "leadgate")
    assert [p["name"] for p in public["spec"]["ports"]] == ["http"]
    for service in selected:
        if service is not public:
            assert service["spec"]["clusterIP"] == "None"
    token = values["secrets"]["metricsToken"]
    for endpoint in monitor["spec"]["endpoints"]:
        credentials = endpoint["authorization"]["credentials"]
        assert (credentials["name"], credentials["key"]) == (token["name"], token["key"])
        assert endpoint["authorization"]["type"] == "Bearer"
    worker_env = {e["name"] for e in container(one(docs, "Deployment", "-worker"))["env"]}
    assert "LEADGATE_METRICS_TOKEN" in worker_env


def test_network_policy_opens_the_ports_the_pods_declare(chart: Template) -> None:
    docs = render(chart, values_for("production-values.yaml"))
    policy = one(docs, "NetworkPolicy")
    opened = {p["port"] for rule in policy["spec"]["ingress"] for p in rule["ports"]}
    declared = {p["name"] for d in docs if d["kind"] == "Deployment" for p in container(d)["ports"]}
    assert opened == declared
    assert all(rule["from"] for rule in policy["spec"]["ingress"])


# --- the renderer itself -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "values", "expected"),
    [
        ("a\n  {{- .Values.x }}\nb", {"x": 1}, "a1\nb"),
        ("{{ .Values.x -}}\n  b", {"x": "a"}, "ab"),
        ("{{ if .Values.x }}y{{ else if .Values.z }}z{{ else }}n{{ end }}", {"x": 0, "z": ""}, "n"),
        (
            "{{ range $k, $v := .Values.m }}{{ $k }}={{ $v }};{{ end }}",
            {"m": {"b": 2, "a": 1}},
            "a=1;b=2;",
        ),
        ("{{ .Values.s | quote }}", {"s": 'say "hi"'}, '"say \\"hi\\""'),
        ("{{ toYaml .Values.m | nindent 2 }}", {"m": {"k": [1]}}, "\n  k:\n  - 1"),
        ('{{ default "d" .Values.e }}', {"e": ""}, "d"),
        ("{{ add .Values.a 2 3 }}", {"a": 5}, "10"),
        ("{{/* gone */}}x", {}, "x"),
        ("{{ gt (int .Values.n) 1 }}", {"n": 2}, "true"),  # values are float64 in Helm
        ('{{ or .Values.t (fail "never evaluated") }}', {"t": True}, "true"),
    ],
)
def test_renderer_follows_go_template_rules(
    tmp_path: Path, source: str, values: dict[str, Any], expected: str
) -> None:
    assert _render_one(tmp_path, source, values) == expected


@pytest.mark.parametrize(
    "source",
    [
        "{{ .Values.missing }}",
        "{{ nosuchfunc 1 }}",
        "{{ with .Values.x }}{{ end }}",
        "{{ if 1 }}",
        "{{ gt .Values.x 1 }}",  # float64 against an int: Go refuses to compare
    ],
)
def test_renderer_refuses_what_helm_strict_would(tmp_path: Path, source: str) -> None:
    with pytest.raises(TemplateError):
        _render_one(tmp_path, source, {"x": 1})


def _render_one(tmp_path: Path, source: str, values: dict[str, Any]) -> str:
    (tmp_path / "templates").mkdir(exist_ok=True)
    (tmp_path / "Chart.yaml").write_text("name: t\nversion: 0.0.1\n", encoding="utf-8")
    (tmp_path / "templates" / "t.yaml").write_text(source, encoding="utf-8")
    return Template(tmp_path).render(values)["t/templates/t.yaml"]
