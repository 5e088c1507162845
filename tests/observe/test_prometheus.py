"""A real Prometheus scraping a real, loaded gateway (two workers on Redis): the series a user
looks at hold the values the load produced, every panel of the shipped Grafana dashboard
returns data, the shipped alert rules load, and ``promtool check metrics`` passes.

The module starts Redis, the gateway and Prometheus once, drives a short bounded load whose
every answer is tallied, and waits until Prometheus has scraped the final counts.
"""

from __future__ import annotations

import collections
import hashlib
import json
import math
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from http_support import request
from network_support import WORKER_ENV, CrmReceiver, batch, network, post, write_config
from processes import GatewayLauncher, GatewayProcess
from prom_support import DEPLOY, Prometheus, promtool, start_prometheus
from support import RedisServer, free_port

DASHBOARD = DEPLOY / "grafana" / "leadgate.json"
#: What ``/metrics`` requires here (``LEADGATE_METRICS_TOKEN``), at least 32 characters.
METRICS_TOKEN = "metrics-token-of-the-prometheus-test-0123"
ALERTS = DEPLOY / "prometheus" / "alerts.yaml"
#: What Grafana would put in place of its variables, for "All" selections.
GRAFANA_VARIABLES = {
    "$__rate_interval": "1m",
    "$__range": "5m",
    "$partner": ".*",
    "$campaign": ".*",
    "$advertiser": ".*",
}


@dataclass
class Loaded:
    server: GatewayProcess
    worker: GatewayProcess
    prometheus: Prometheus
    #: (partner, campaign, decision) -> leads, as the gateway answered them.
    decisions: collections.Counter[tuple[str, str, str]]
    singles: int
    #: Advertiser -> leads of sold-main sold to it (the answers name them).
    sold_to: collections.Counter[str]


def drive_load(
    server: GatewayProcess,
) -> tuple[collections.Counter[tuple[str, str, str]], int, collections.Counter[str]]:
    """A short, bounded mix: accepted, duplicates, caps, an inactive campaign, leads sold to
    buyers down a waterfall, an invalid lead in a batch and an unknown key. The tally of
    decisions, the single posts sent and who bought sold-main's leads."""
    tally: collections.Counter[tuple[str, str, str]] = collections.Counter()
    sold_to: collections.Counter[str] = collections.Counter()
    singles = 0

    def send(partner: str, campaign: str, email: str, **more: str) -> None:
        nonlocal singles
        reply = post(server, partner, {"campaign": campaign, "email": email, **more})
        singles += 1
        assert reply.status == 200, reply
        tally[(partner, campaign, reply.body["decision"])] += 1
        sold_to.update(reply.body.get("sold_to", []))

    for n in range(12):
        send("p-alpha", "acme-main", f"alpha{n}@example.com")
    for n in range(6):  # the first three were already sent by p-alpha
        send("p-beta", "acme-main", f"alpha{n}@example.com" if n < 3 else f"beta{n}@example.com")
    for n in range(4):
        send("p-alpha", "nova-main", f"nova-a{n}@example.com")
    for n in range(3):
        send("p-beta", "nova-main", f"nova-b{n}@example.com")
    for n in range(2):
        send("p-alpha", "nova-summer", f"summer{n}@example.com")
    for n in range(4):  # acme buys 2 (its cap of the day), nova the rest
        send("p-alpha", "sold-main", f"sold{n}@example.com")
    batched = batch(
        server,
        "p-alpha",
        [{"campaign": "acme-main", "email": f"batch{n}@example.com"} for n in range(3)]
        + [{"campaign": "acme-main", "email": "not an email"}],
    )
    assert batched.status == 200, batched
    for item in batched.body["results"]:
        if "decision" in item:
            tally[("p-alpha", "acme-main", item["decision"])] += 1

    # A pre-ping check of a person already bought (a duplicate), then a ping and its post.
    def sha(text: str) -> str:
        return hashlib.sha256(text.encode()).hexdigest()

    checked = post(
        server, "p-alpha", {"campaign": "acme-main", "email_sha256": sha("alpha0@example.com")},
        path="/v1/leads/check",
    )  # fmt: skip
    assert checked.status == 200, checked
    assert checked.body["status"] == "duplicate"
    pinged = post(
        server, "p-beta", {"campaign": "acme-main", "email_sha256": sha("pinged0@example.com")},
        path="/v1/ping",
    )  # fmt: skip
    assert pinged.status == 200, pinged
    send("p-beta", "acme-main", "pinged0@example.com", ping_id=pinged.body["ping_id"])
    unknown = request(
        "POST",
        f"{server.url}/v1/leads",
        body={"campaign": "acme-main", "email": "x@example.com"},
        headers={"Authorization": "Bearer no-such-key"},
    )
    assert unknown.status == 401
    return tally, singles, sold_to


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Loaded]:
    workdir = tmp_path_factory.mktemp("prometheus-e2e")
    redis = RedisServer(workdir / "redis", port=free_port())
    redis.start()
    launcher = GatewayLauncher(workdir)
    prometheus: Prometheus | None = None
    crm = CrmReceiver().__enter__()
    try:
        config = write_config(workdir / "leadgate.yaml", network(crm.url, buyers=True))
        # Prometheus first: it takes a few seconds to start scraping a new target. It scrapes
        # the gateway's metrics listener (never its public port) and the worker's, both
        # behind the metrics token, as the Helm chart's ServiceMonitor does.
        port, metrics_port, worker_port = free_port(), free_port(), free_port()
        prometheus = start_prometheus(
            workdir / "prometheus",
            [f"127.0.0.1:{metrics_port}", f"127.0.0.1:{worker_port}"],
            rule_files=[ALERTS],
            bearer_token=METRICS_TOKEN,
        )
        token = {"LEADGATE_METRICS_TOKEN": METRICS_TOKEN}
        server = launcher.start(
            config,
            redis_url=redis.url,
            workers=2,
            port=port,
            env={"LEADGATE_METRICS_PORT": str(metrics_port), **token},
        )
        worker = launcher.start_worker(
            config, redis_url=redis.url, env={**WORKER_ENV, **token}, port=worker_port
        )
        # Scrapes of the all-zero series first, so rates have a "before".
        prometheus.wait_for("up{job='leadgate'} == 1", lambda r: len(r) == 2)
        prometheus.wait_for(
            "count_over_time(leadgate_build_info[1m])",
            lambda r: bool(r) and int(r[0]["value"][1]) >= 2,
        )
        decisions, singles, sold_to = drive_load(server)
        total = sum(decisions.values())
        prometheus.wait_for(
            "sum(leadgate_leads_total)", lambda r: bool(r) and float(r[0]["value"][1]) == total
        )
        # Every accepted lead delivered once (acme) or refused by its CRM (nova).
        accepted = sum(n for (_, _, d), n in decisions.items() if d == "accepted")
        prometheus.wait_for(
            "sum(leadgate_delivery_attempts_total)",
            lambda r: bool(r) and float(r[0]["value"][1]) == accepted,
        )
        yield Loaded(server, worker, prometheus, decisions, singles, sold_to)
    finally:
        if prometheus is not None:
            prometheus.stop()
        launcher.close()
        crm.__exit__()
        redis.stop()


def value(result: list[dict[str, Any]]) -> float:
    assert len(result) == 1, result
    return float(result[0]["value"][1])


def by(result: list[dict[str, Any]], *labels: str) -> dict[tuple[str, ...], float]:
    return {
        tuple(r["metric"].get(label, "") for label in labels): float(r["value"][1]) for r in result
    }


def test_the_series_a_user_looks_at_hold_what_the_load_did(loaded: Loaded) -> None:
    prom, tally = loaded.prometheus, loaded.decisions
    by_decision = collections.Counter[str]()
    by_partner_decision = collections.Counter[tuple[str, str]]()
    for (partner, _, decision), n in tally.items():
        by_decision[decision] += n
        by_partner_decision[(partner, decision)] += n
    # The load exercised every decision.
    assert set(by_decision) == {"accepted", "duplicate", "capped", "rejected"}

    got = by(prom.query("sum by (decision) (leadgate_leads_total)"), "decision")
    assert got == {
        (d,): float(by_decision[d]) for d in ("accepted", "duplicate", "capped", "rejected")
    }
    got = by(
        prom.query("sum by (partner, decision) (leadgate_leads_total) > 0"), "partner", "decision"
    )
    assert got == {k: float(n) for k, n in by_partner_decision.items()}

    assert (
        value(prom.query('sum(leadgate_duplicates_total{scope="advertiser"})'))
        == by_decision["duplicate"]
    )
    assert (
        value(prom.query('sum(leadgate_caps_hit_total{campaign="nova-main",subject="channel"})'))
        == by_decision["capped"]
    )
    assert (
        value(prom.query('sum(leadgate_lead_reasons_total{reason="campaign.inactive"})'))
        == by_decision["rejected"]
    )
    assert value(prom.query('sum(leadgate_requests_refused_total{status="422"})')) == 1

    # Caps used, read from Redis at scrape: the channel cap of nova-main is full.
    assert (
        value(
            prom.query(
                'max(leadgate_cap_used{campaign="nova-main",subject="channel",window="day"})'
            )
        )
        == 2
    )
    accepted_acme = sum(n for (_, c, d), n in tally.items() if c == "acme-main" and d == "accepted")
    assert (
        value(
            prom.query(
                'max(leadgate_cap_used{campaign="acme-main",subject="campaign",window="day"})'
            )
        )
        == accepted_acme
    )

    # Requests by route (the two workers' counts merged) and their latency.
    assert (
        value(
            prom.query(
                'sum(leadgate_http_requests_total{route="/v1/leads",method="POST",status="200"})'
            )
        )
        == loaded.singles
    )
    assert (
        value(prom.query('sum(leadgate_http_requests_total{route="/v1/leads",status="401"})')) == 1
    )
    assert (
        value(
            prom.query(
                'sum(leadgate_http_request_duration_seconds_count{route="/v1/leads",method="POST"})'
            )
        )
        == loaded.singles + 1
    )
    p99 = value(
        prom.query(
            "histogram_quantile(0.99, sum by (le) "
            '(rate(leadgate_http_request_duration_seconds_bucket{route="/v1/leads"}[1m])))'
        )
    )
    assert math.isfinite(p99)
    assert p99 > 0
    assert value(prom.query("sum(leadgate_redis_round_trip_duration_seconds_count)")) > 0
    assert value(prom.query("min(leadgate_store_up)")) == 1
    assert value(prom.query("count(leadgate_build_info == 1)")) == 1
    assert value(prom.query("sum(leadgate_config_reloads_total)")) == 0

    # Delivery, as the worker reported it.
    accepted = collections.Counter[str](loaded.sold_to)
    for (_, campaign, decision), n in tally.items():
        if decision == "accepted" and campaign != "sold-main":
            accepted[campaign.split("-")[0]] += n
    got = by(
        prom.query("sum by (advertiser, outcome) (leadgate_delivery_attempts_total) > 0"),
        "advertiser",
        "outcome",
    )
    assert got == {
        ("acme", "delivered"): accepted["acme"],
        ("nova", "rejected_by_advertiser"): accepted["nova"],
    }
    got = by(
        prom.query("sum by (advertiser, reason) (leadgate_delivery_dead_letters_total) > 0"),
        "advertiser",
        "reason",
    )
    assert got == {("nova", "rejected_by_advertiser"): accepted["nova"]}
    assert (
        value(prom.query('sum(leadgate_delivery_duration_seconds_count{advertiser="acme"})'))
        == accepted["acme"]
    )

    # Buyers of sold-main: acme sold 2 (its cap), then passed the other 2 on to nova.
    assert loaded.sold_to == {"acme": 2, "nova": 2}
    got = by(
        prom.query("sum by (buyer, result) (leadgate_buyer_offers_total) > 0"), "buyer", "result"
    )
    assert got == {("acme", "sold"): 2, ("acme", "capped"): 2, ("nova", "sold"): 2}
    got = by(prom.query("sum by (buyer) (leadgate_buyer_revenue_total)"), "buyer")
    assert got == {("acme",): 20, ("nova",): 14}
    assert value(prom.query('max(leadgate_buyer_cap_used{buyer="acme",window="day"})')) == 2
    assert value(prom.query('max(leadgate_campaign_buyers{campaign="sold-main"})')) == 2


def grafana_queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, PromQL with the variables replaced) for every target of every panel."""
    queries: list[tuple[str, str]] = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"]
            for name in sorted(GRAFANA_VARIABLES, key=len, reverse=True):
                expr = expr.replace(name, GRAFANA_VARIABLES[name])
            assert "$" not in expr, (panel["title"], expr)
            queries.append((panel["title"], expr))
    return queries


def test_the_dashboard_is_provisionable_from_a_file() -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert "__inputs" not in dashboard
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    rows = [p["title"] for p in dashboard["panels"] if p["type"] == "row"]
    assert rows == [
        "Traffic and decisions per partner",
        "Quality per partner",
        "Caps",
        "Latency and health",
        "Delivery per advertiser",
        "Buyers (distributed campaigns)",
        "Pings and checks per partner",
    ]
    for panel in dashboard["panels"]:
        if panel.get("targets"):
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
            for target in panel["targets"]:
                assert target["datasource"]["uid"] == "${datasource}"
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))


def test_every_dashboard_query_returns_data(loaded: Loaded) -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    queries = grafana_queries(dashboard)
    assert len(queries) >= 20
    empty = [(title, expr) for title, expr in queries if not loaded.prometheus.query(expr)]
    assert empty == []
    # The variables' own queries list the configured ids.
    for variable in dashboard["templating"]["list"]:
        if variable["type"] != "query":
            continue
        match = re.fullmatch(r"label_values\((\w+), (\w+)\)", variable["query"]["query"])
        assert match, variable["query"]
        metric, label = match.groups()
        values = loaded.prometheus.get(f"/api/v1/label/{label}/values", **{"match[]": metric})
        expected = {
            "partner": {"p-alpha", "p-beta"},
            "campaign": {"acme-main", "nova-main", "nova-summer", "sold-main"},
            "advertiser": {"acme", "nova"},
        }[label]
        assert set(values) == expected


def test_the_alert_rules_load_in_prometheus(loaded: Loaded) -> None:
    groups = loaded.prometheus.get("/api/v1/rules")["groups"]
    rules = [rule for group in groups for rule in group["rules"]]
    assert all(rule["health"] in ("ok", "unknown") for rule in rules), rules
    alerts = {rule["name"] for rule in rules if rule["type"] == "alerting"}
    assert alerts == {
        "LeadgateHighErrorRate",
        "LeadgateLatencyP99High",
        "LeadgateRedisDown",
        "LeadgateDeliveryBacklogGrowing",
        "LeadgateOldestUndeliveredTooOld",
        "LeadgateDeadLetters",
        "LeadgateCapReached",
        "LeadgatePartnerDuplicateRateJump",
        "LeadgatePartnerRejectionRateJump",
        "LeadgateBuyerRefusesEverything",
        "LeadgateUnsoldShareRising",
    }
    # nova-main's channel cap is full: the cap alert is active for it (and only for it).
    firing = loaded.prometheus.wait_for(
        'ALERTS{alertname="LeadgateCapReached"}', lambda r: len(r) >= 1, timeout_s=10
    )
    assert {(r["metric"]["campaign"], r["metric"]["subject"]) for r in firing} == {
        ("nova-main", "channel")
    }


@pytest.mark.parametrize("process", ["gateway", "worker"])
def test_promtool_accepts_the_metrics_page(loaded: Loaded, process: str) -> None:
    text = (loaded.server if process == "gateway" else loaded.worker).metrics()
    assert "leadgate_delivery_attempts_total" in text
    checked = subprocess.run(
        [promtool(), "check", "metrics"],
        input=text.encode(),
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout.decode() + checked.stderr.decode()
    assert checked.stdout.decode().strip() == ""
