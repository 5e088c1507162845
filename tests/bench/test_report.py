"""The run document: its schema, percentiles, 1-second timelines, /metrics deltas, the table."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from bench.probe import histogram_quantile, parse_metrics
from bench.report import (
    SCHEMA,
    SCHEMA_ID,
    latency_ms,
    percentile,
    rounds_summary,
    table,
    timeline_from_metrics,
    timeline_from_samples,
)

METRICS = """\
# TYPE leadgate_leads counter
leadgate_leads_total{partner="p-alpha",campaign="bench",channel="email",decision="accepted"} 70
leadgate_leads_total{partner="p-beta",campaign="bench",channel="coreg",decision="accepted"} 10
leadgate_leads_total{partner="p-beta",campaign="bench",channel="coreg",decision="duplicate"} 15
# TYPE leadgate_requests_refused counter
leadgate_requests_refused_total{partner="p-beta",status="422"} 3
# TYPE leadgate_http_requests counter
leadgate_http_requests_total{route="/v1/leads",method="POST",status="200"} 95
leadgate_http_requests_total{route="/v1/leads",method="POST",status="422"} 5
leadgate_http_requests_total{route="/metrics",method="GET",status="200"} 9
# TYPE leadgate_http_request_duration_seconds histogram
leadgate_http_request_duration_seconds_bucket{route="/v1/leads",method="POST",le="0.001"} 50
leadgate_http_request_duration_seconds_bucket{route="/v1/leads",method="POST",le="0.002"} 90
leadgate_http_request_duration_seconds_bucket{route="/v1/leads",method="POST",le="+Inf"} 100
leadgate_http_request_duration_seconds_bucket{route="/metrics",method="GET",le="+Inf"} 9
leadgate_http_request_duration_seconds_count{route="/v1/leads",method="POST"} 100
leadgate_http_request_duration_seconds_sum{route="/v1/leads",method="POST"} 0.12
"""


def _run(name: str = "single", **overrides: Any) -> dict[str, Any]:
    run: dict[str, Any] = {
        "name": name, "kind": "gateway", "client": "wrk", "batch": 1, "workers": 1,
        "duration_s": 10.0, "requests": 20_000, "leads": 20_000, "requests_per_s": 2000.0,
        "leads_per_s": 2000.0, "latency_ms": latency_ms([0.001, 0.002, 0.004]),
        "latency_source": "wrk", "errors": {}, "error_count": 0,
        "decisions": {"answers": None, "metrics": {"accepted": 15000.0, "duplicate": 4600.0,
                                                   "invalid": 400.0},
                      "expected": {"accepted": 15010, "duplicate": 4590, "invalid": 400}},
        "server_cpu_s": 9.5, "cpu_us_per_lead": 475.0,
        "redis_memory": {"before_bytes": 1_000_000, "after_bytes": 9_000_000,
                         "delta_bytes": 8_000_000},
        "timeline": timeline_from_samples([(0.1, 0.002), (1.5, 0.003)], 2.0),
        "timeline_source": "server /metrics", "ratios": {"hello_world": 0.1,
                                                         "redis_decide": 0.08},
    }  # fmt: skip
    run.update(overrides)
    return run


def _doc() -> dict[str, Any]:
    hello = _run("hello-world", kind="baseline", requests_per_s=20000.0, leads_per_s=20000.0,
                 redis_memory=None, server_cpu_s=None, cpu_us_per_lead=None, timeline=[],
                 decisions={"answers": None, "metrics": None, "expected": None},
                 ratios={"hello_world": 1.0, "redis_decide": None})  # fmt: skip
    return {
        "schema": SCHEMA_ID, "date": "2026-11-22T17:00:00Z", "git_sha": "abc1234",
        "command": "python -m bench single", "scenarios": [{"name": "single"}],
        "machine": {"cpu_model": "x", "cores": 2, "kernel": "6.1", "python": "3.11.7",
                    "redis": "7.0.15", "pinned": True},
        "baselines": {"hello_world": hello, "redis_decide": {
            "calls_per_s": 25000.0, "requests": 200000,
            "latency_ms": {"p50": 1.0, "p95": 2.0, "p99": 3.0, "max": 9.0}, "errors": 0}},
        "runs": [_run(), _run("memory", kind="memory", memory={
            "identities": 1_000_000, "accepted": 500_000, "scopes": 2,
            "bytes_per_identity_per_scope": 91.5, "bytes_per_accepted_lead": 150.25,
            "lead_index_bytes_per_lead": 27.0})],
    }  # fmt: skip


def test_a_document_matches_the_schema() -> None:
    jsonschema.validate(_doc(), SCHEMA)


@pytest.mark.parametrize(
    ("where", "value"),
    [
        (("runs", 0, "latency_ms"), {"p50": 1.0}),
        (("runs", 0, "kind"), "other"),
        (("runs", 0, "error_count"), -1),
        (("schema",), "leadgate-bench/0"),
        (("baselines", "redis_decide"), {"calls_per_s": 1.0}),
    ],
)
def test_the_schema_refuses_a_broken_document(where: tuple[Any, ...], value: object) -> None:
    doc = copy.deepcopy(_doc())
    target: Any = doc
    for step in where[:-1]:
        target = target[step]
    target[where[-1]] = value
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, SCHEMA)


def test_the_table_shows_every_run_and_the_ratios() -> None:
    text = table(_doc())
    lines = text.splitlines()
    assert lines[0].split()[:3] == ["run", "client", "req/s"]
    assert any(line.startswith("hello-world") and " 1.00 " in line for line in lines)
    assert any(line.startswith("single") and " 0.10 " in line for line in lines)
    assert any(line.startswith("redis-benchmark decide") for line in lines)
    assert "decisions accepted 15,000, duplicate 4,600, invalid 400" in text
    assert "generated accepted 15,010" in text
    assert "Redis bytes per identity per scope: 91.5" in text
    assert "Redis bytes per accepted lead, everything but the stream: 150.2" in text
    assert "the lead index 27.0" in text


def test_a_ceiling_run_is_a_row_beside_its_scenario_with_its_ratio() -> None:
    doc = _doc()
    doc["runs"].insert(1, _run("single/validate-only", kind="ceiling", ceiling="validate",
                               leads_per_s=9000.0, ratios={"hello_world": 0.45},
                               decisions={"answers": None, "metrics": None, "expected": None},
                               redis_memory=None, cpu_us_per_lead=101.5))  # fmt: skip
    jsonschema.validate(doc, SCHEMA)

    lines = table(doc).splitlines()

    row = next(line for line in lines if line.startswith("single/validate-only"))
    assert " 0.45 " in row
    assert row.rstrip().endswith("101.5      0")
    assert any("no full pipeline on this stack can pass" in line for line in lines)
    assert not any(line.startswith("  single/validate-only: decisions") for line in lines)


def test_percentiles_are_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.5) == 50.0
    assert percentile(values, 0.99) == 99.0
    assert percentile(values, 1.0) == 100.0
    assert percentile([], 0.5) is None
    assert latency_ms([0.001, 0.003]) == {"p50": 1.0, "p95": 3.0, "p99": 3.0, "max": 3.0}


def test_a_timeline_has_one_bucket_per_second_of_start_time() -> None:
    samples = [(0.2, 0.001), (0.9, 0.003), (2.5, 0.002), (7.0, 0.004)]  # last: after the end
    timeline = timeline_from_samples(samples, 3.0)
    assert [b["t"] for b in timeline] == [0.0, 1.0, 2.0]
    assert [b["requests"] for b in timeline] == [2.0, 0.0, 2.0]
    assert timeline[0]["p50_ms"] == 1.0
    assert timeline[0]["p99_ms"] == 3.0
    assert timeline[1]["p50_ms"] is None


def test_metrics_are_summed_over_labels_and_read_as_deltas() -> None:
    snap = parse_metrics(METRICS)
    assert snap.decisions == {"accepted": 80.0, "duplicate": 15.0}
    assert snap.refused == {"422": 3.0}
    assert snap.requests == 100.0  # the lead routes only, not /metrics
    assert snap.statuses == {"200": 95.0, "422": 5.0}
    assert snap.buckets == {0.001: 50.0, 0.002: 90.0, float("inf"): 100.0}
    later = parse_metrics(
        METRICS.replace("} 70", "} 75").replace('le="+Inf"} 100', 'le="+Inf"} 110')
    )
    delta = later.minus(snap)
    assert delta.decisions == {"accepted": 5.0}
    assert delta.buckets[float("inf")] == 10.0


def test_histogram_quantiles_interpolate_within_a_bucket() -> None:
    buckets = {0.001: 50.0, 0.002: 90.0, float("inf"): 100.0}
    assert histogram_quantile(buckets, 0.5) == pytest.approx(0.001)
    assert histogram_quantile(buckets, 0.7) == pytest.approx(0.0015)
    assert histogram_quantile(buckets, 0.99) == pytest.approx(0.002)  # in +Inf: its lower bound
    assert histogram_quantile({0.001: 0.0, float("inf"): 0.0}, 0.5) is None


def test_a_metrics_timeline_is_one_point_per_scrape_interval() -> None:
    first = parse_metrics(METRICS)
    second = parse_metrics(METRICS.replace('le="0.001"} 50', 'le="0.001"} 250')
                           .replace('le="0.002"} 90', 'le="0.002"} 290')
                           .replace('le="+Inf"} 100', 'le="+Inf"} 300')
                           .replace('status="200"} 95', 'status="200"} 295'))  # fmt: skip
    timeline = timeline_from_metrics([(10.0, first), (12.0, second)])
    assert len(timeline) == 1
    assert timeline[0]["t"] == 0.0
    assert timeline[0]["requests"] == 100.0  # 200 in 2 s
    # 200 new answers, all under 1 ms: the median is interpolated half-way into (0, 1 ms].
    assert timeline[0]["p50_ms"] == pytest.approx(0.5)


def test_a_profiled_run_validates_and_its_stages_are_in_the_table() -> None:
    doc = _doc()
    doc["runs"][0]["profile"] = {
        "file": "bench-x-single.pyspy.txt",
        "rate_hz": 200,
        "samples": 2000,
        "idle_samples": 0,
        "stages_pct": {"email-validator": 12.5, "aiohttp": 20.0},
        "top_self_pct": {"calendar_bucket (gateway/decision/windows.py)": 5.0},
    }
    jsonschema.validate(doc, SCHEMA)
    text = table(doc)
    assert "single: CPU by stage (py-spy, 2,000 samples)" in text
    assert any(line.split() == ["12.5", "%", "email-validator"] for line in text.splitlines())
    doc["runs"][0]["profile"]["samples"] = -1
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, SCHEMA)


def test_the_picture_is_drawn_with_gateway_runs_and_ceilings(tmp_path: Path) -> None:
    from bench.plot import draw

    doc = _doc()
    doc["runs"].append(_run("single/parse-only", kind="ceiling", ceiling="parse", timeline=[],
                            leads_per_s=900_000.0))  # fmt: skip
    png = tmp_path / "run.png"

    draw(doc, png)

    data = png.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(data) > 20_000  # two panels, not an empty figure


def test_the_peer_is_a_baseline_row_and_every_run_has_its_ratio_to_it() -> None:
    doc = _doc()
    doc["baselines"]["peer"] = _run("peer", kind="baseline", leads_per_s=2500.0,
                                    ratios={"hello_world": 0.125, "peer": 1.0})  # fmt: skip
    doc["runs"][0]["ratios"]["peer"] = 0.8
    jsonschema.validate(doc, SCHEMA)

    lines = table(doc).splitlines()

    assert lines[0].split()[4:7] == ["x", "hello", "x"]
    peer = next(line for line in lines if line.startswith("peer "))
    single = next(line for line in lines if line.startswith("single "))
    assert " 1.00 " in peer
    assert " 0.80 " in single
    assert any(line.strip().startswith("peer: decisions accepted") for line in lines)


def _rounds_doc() -> dict[str, Any]:
    """Two rounds: each round's peer, then its single and batch runs, each over its own
    round's peer; a ceiling in round 1 only."""
    doc = _doc()
    peers = [
        _run("peer", kind="baseline", leads_per_s=rate, round=n,
             ratios={"hello_world": rate / 20000, "peer": 1.0})
        for n, rate in ((1, 2000.0), (2, 4000.0))
    ]  # fmt: skip
    runs = []
    for n, peer_rate, single, batch in ((1, 2000.0, 1800.0, 5000.0), (2, 4000.0, 4400.0, 8000.0)):
        for name, rate in (("single", single), ("batch", batch)):
            ratios = {"hello_world": rate / 20000, "redis_decide": None, "peer": rate / peer_rate}
            runs.append(_run(name, leads_per_s=rate, round=n, ratios=ratios))
    runs.append(_run("single/parse-only", kind="ceiling", ceiling="parse", round=1,
                     leads_per_s=900_000.0, ratios={"peer": 450.0}))  # fmt: skip
    doc["baselines"]["peer"] = peers[0]
    doc["baselines"]["peer_rounds"] = peers
    doc["runs"] = runs
    doc["rounds"] = rounds_summary(runs)
    return doc


def test_rounds_are_summed_up_per_scenario_over_their_own_peers() -> None:
    doc = _rounds_doc()
    jsonschema.validate(doc, SCHEMA)

    assert doc["rounds"] == {
        "single": {
            "rounds": 2,
            "leads_per_s": {"median": 3100.0, "min": 1800.0, "max": 4400.0},
            "peer": {"median": 1.0, "min": 0.9, "max": 1.1},
        },
        "batch": {
            "rounds": 2,
            "leads_per_s": {"median": 6500.0, "min": 5000.0, "max": 8000.0},
            "peer": {"median": 2.25, "min": 2.0, "max": 2.5},
        },
    }
    without_peer = [dict(r, ratios={"peer": None}) for r in doc["runs"]]
    assert rounds_summary(without_peer)["single"]["peer"] is None


def test_the_table_shows_each_round_after_its_peer_and_the_medians() -> None:
    lines = table(_rounds_doc()).splitlines()
    labels = [line.split("  ")[0] for line in lines[2:9]]

    assert labels == [
        "hello-world", "peer #1", "single #1", "batch #1", "single/parse-only #1", "peer #2",
        "single #2",
    ]  # fmt: skip
    single_2 = next(line for line in lines if line.startswith("single #2 "))
    assert " 1.10 " in single_2  # 4,400 over round 2's peer (4,000), not round 1's
    assert (
        "  single: x peer median 1.00 (0.90-1.10), leads/s median 3,100 (1,800-4,400) over 2 rounds"
        in lines
    )
    assert any(line.strip().startswith("peer #2: decisions") for line in lines)


def test_the_picture_is_drawn_with_rounds(tmp_path: Path) -> None:
    from bench.plot import draw

    png = tmp_path / "rounds.png"
    draw(_rounds_doc(), png)
    assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
