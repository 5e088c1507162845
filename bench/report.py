"""The run document (JSON), its schema, percentiles, 1-second timelines and the text table."""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Sequence
from typing import Any

from bench.probe import MetricsSnapshot, histogram_quantile
from bench.profile import table as profile_table

SCHEMA_ID = "leadgate-bench/1"

_LATENCY = {
    "type": "object",
    "required": ["p50", "p95", "p99", "max"],
    "properties": {k: {"type": ["number", "null"]} for k in ("p50", "p95", "p99", "max")},
}
_COUNTS = {"type": "object", "additionalProperties": {"type": "number"}}
_MIX = {"type": ["object", "null"], "additionalProperties": {"type": "number"}}
_RUN = {
    "type": "object",
    "required": [
        "name",
        "kind",
        "client",
        "batch",
        "workers",
        "duration_s",
        "requests",
        "leads",
        "requests_per_s",
        "leads_per_s",
        "latency_ms",
        "latency_source",
        "errors",
        "error_count",
        "decisions",
        "server_cpu_s",
        "cpu_us_per_lead",
        "redis_memory",
        "timeline",
        "ratios",
    ],
    "properties": {
        "name": {"type": "string"},
        "kind": {"enum": ["baseline", "gateway", "memory", "ceiling"]},
        # Only for kind "ceiling": the bench.ceiling mode (what part of a lead's work it does).
        "ceiling": {"enum": ["parse", "validate"]},
        "client": {"enum": ["wrk", "aiohttp"]},
        "batch": {"type": "integer", "minimum": 1},
        "workers": {"type": "integer", "minimum": 1},
        "duration_s": {"type": "number"},
        "requests": {"type": "integer", "minimum": 0},
        "leads": {"type": "integer", "minimum": 0},
        "requests_per_s": {"type": "number"},
        "leads_per_s": {"type": "number"},
        "latency_ms": _LATENCY,
        "latency_source": {"enum": ["client", "wrk"]},
        "errors": _COUNTS,
        "error_count": {"type": "integer", "minimum": 0},
        "decisions": {
            "type": "object",
            "required": ["answers", "metrics", "expected"],
            "properties": {
                "answers": _MIX,
                "metrics": _MIX,
                "expected": _MIX,
            },
        },
        "server_cpu_s": {"type": ["number", "null"]},
        "cpu_us_per_lead": {"type": ["number", "null"]},
        "redis_memory": {
            "type": ["object", "null"],
            "required": ["before_bytes", "after_bytes", "delta_bytes"],
        },
        "timeline": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["t", "requests", "p50_ms", "p95_ms", "p99_ms"],
                "properties": {
                    "t": {"type": "number"},
                    "requests": {"type": "number"},
                    "p50_ms": {"type": ["number", "null"]},
                    "p95_ms": {"type": ["number", "null"]},
                    "p99_ms": {"type": ["number", "null"]},
                },
            },
        },
        "timeline_source": {"enum": ["client", "server /metrics", "none"]},
        # With ``--rounds N``: which round the run belongs to (its ``ratios.peer`` is over
        # that round's peer).
        "round": {"type": "integer", "minimum": 1},
        "ratios": {"type": "object", "additionalProperties": {"type": ["number", "null"]}},
        # Only with ``--profile``: py-spy's samples of the gateway, shares in percent.
        "profile": {
            "type": "object",
            "required": ["file", "rate_hz", "samples", "idle_samples", "stages_pct"],
            "properties": {
                "file": {"type": "string"},
                "rate_hz": {"type": "integer"},
                "samples": {"type": "integer", "minimum": 0},
                "idle_samples": {"type": "integer", "minimum": 0},
                "stages_pct": _COUNTS,
                "top_self_pct": _COUNTS,
            },
        },
    },
}
SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": [
        "schema",
        "date",
        "git_sha",
        "command",
        "scenarios",
        "machine",
        "baselines",
        "runs",
    ],
    "properties": {
        "schema": {"const": SCHEMA_ID},
        "date": {"type": "string"},
        "git_sha": {"type": "string"},
        "command": {"type": "string"},
        "scenarios": {"type": "array", "items": {"type": "object", "required": ["name"]}},
        "machine": {
            "type": "object",
            "required": ["cpu_model", "cores", "kernel", "python", "redis", "pinned"],
        },
        "baselines": {
            "type": "object",
            "required": ["hello_world", "redis_decide"],
            "properties": {
                "hello_world": {"oneOf": [_RUN, {"type": "null"}]},
                # bench/peer.py: the same work written the obvious way (single leads).
                "peer": {"oneOf": [_RUN, {"type": "null"}]},
                # With ``--rounds N``: every round's peer run, in order (``peer`` is the first).
                "peer_rounds": {"type": "array", "items": _RUN},
                "redis_decide": {
                    "type": ["object", "null"],
                    "required": ["calls_per_s", "requests", "latency_ms", "errors"],
                },
            },
        },
        "runs": {"type": "array", "items": _RUN},
        # With ``--rounds N``: per scenario, its leads/s and its ratio to its round's peer
        # over the rounds (``rounds_summary``).
        "rounds": {
            "type": "object",
            "additionalProperties": {
                "type": "object",
                "required": ["rounds", "leads_per_s", "peer"],
                "properties": {
                    "rounds": {"type": "integer", "minimum": 1},
                    "leads_per_s": {"$ref": "#/$defs/spread"},
                    "peer": {"oneOf": [{"$ref": "#/$defs/spread"}, {"type": "null"}]},
                },
            },
        },
    },
    "$defs": {
        "spread": {
            "type": "object",
            "required": ["median", "min", "max"],
            "properties": {k: {"type": "number"} for k in ("median", "min", "max")},
        }
    },
}


def _spread(values: Sequence[float]) -> dict[str, float]:
    return {
        "median": round(statistics.median(values), 3),
        "min": round(min(values), 3),
        "max": round(max(values), 3),
    }


def rounds_summary(runs: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per scenario (its gateway runs over the rounds; ceilings left out): how many rounds,
    and the median, lowest and highest of its leads/s and of its ratio to its round's peer
    (``None`` without a peer). A median of paired ratios is what to read on a shared machine,
    where a run's rate moves by a third from one minute to the next."""
    by_name: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        if run["kind"] != "ceiling":
            by_name.setdefault(run["name"], []).append(run)
    summary: dict[str, dict[str, Any]] = {}
    for name, of_name in by_name.items():
        ratios = [r["ratios"]["peer"] for r in of_name if r["ratios"].get("peer") is not None]
        summary[name] = {
            "rounds": len(of_name),
            "leads_per_s": _spread([r["leads_per_s"] for r in of_name]),
            "peer": _spread(ratios) if ratios else None,
        }
    return summary


def percentile(sorted_values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile of an ascending sequence (``q`` in 0..1)."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[rank - 1]


def latency_ms(latencies_s: Sequence[float]) -> dict[str, float | None]:
    ordered = sorted(latencies_s)

    def ms(value: float | None) -> float | None:
        return None if value is None else round(value * 1000, 3)

    return {
        "p50": ms(percentile(ordered, 0.50)),
        "p95": ms(percentile(ordered, 0.95)),
        "p99": ms(percentile(ordered, 0.99)),
        "max": ms(ordered[-1] if ordered else None),
    }


def timeline_from_samples(
    samples: Sequence[tuple[float, float]], duration_s: float
) -> list[dict[str, float | None]]:
    """1-second buckets by start time: requests answered and latency percentiles (ms)."""
    seconds = max(1, math.ceil(duration_s))
    buckets: list[list[float]] = [[] for _ in range(seconds)]
    for start, latency in samples:
        buckets[min(seconds - 1, max(0, int(start)))].append(latency)
    out: list[dict[str, float | None]] = []
    for second, latencies in enumerate(buckets):
        summary = latency_ms(latencies)
        out.append(
            {
                "t": float(second),
                "requests": float(len(latencies)),
                "p50_ms": summary["p50"],
                "p95_ms": summary["p95"],
                "p99_ms": summary["p99"],
            }
        )
    return out


def timeline_from_metrics(
    snapshots: Sequence[tuple[float, MetricsSnapshot]],
) -> list[dict[str, float | None]]:
    """1-second buckets from successive /metrics scrapes: the server's own latency histogram
    (request received to response ready), so percentiles are bucket estimates."""
    out: list[dict[str, float | None]] = []
    t0 = snapshots[0][0] if snapshots else 0.0
    for (t_prev, prev), (t_next, nxt) in itertools.pairwise(snapshots):
        delta = nxt.minus(prev)
        span = max(t_next - t_prev, 1e-9)

        def q(p: float, delta: MetricsSnapshot = delta) -> float | None:
            value = histogram_quantile(delta.buckets, p)
            return None if value is None else round(value * 1000, 3)

        out.append(
            {
                "t": round(t_prev - t0, 3),
                "requests": round(delta.requests / span, 1),
                "p50_ms": q(0.5),
                "p95_ms": q(0.95),
                "p99_ms": q(0.99),
            }
        )
    return out


def _fmt(value: object, digits: int = 0) -> str:
    if value is None:
        return "-"
    if isinstance(value, int | float):
        return f"{value:,.{digits}f}"
    return str(value)


def run_label(doc: dict[str, Any], run: dict[str, Any]) -> str:
    """A run's name, with its round (``#2``) when the document has several."""
    if "rounds" in doc and "round" in run:
        return f"{run['name']} #{run['round']}"
    return str(run["name"])


def table(doc: dict[str, Any]) -> str:
    """The run as a text table: one line per baseline and gateway run, then the mixes."""
    rows: list[dict[str, Any]] = []
    hello = doc["baselines"]["hello_world"]
    if hello is not None:
        rows.append(hello)
    peer = doc["baselines"].get("peer")
    peers = doc["baselines"].get("peer_rounds") or ([peer] if peer is not None else [])
    if "rounds" in doc and peers:
        # Each round's peer just before that round's runs.
        for round_no, own in enumerate(peers, 1):
            rows.append(own)
            rows.extend(r for r in doc["runs"] if r.get("round") == round_no)
    else:
        rows.extend(peers)
        rows.extend(doc["runs"])
    head = (
        f"{'run':<30} {'client':<7} {'req/s':>9} {'leads/s':>9} {'x hello':>8} "
        f"{'x peer':>7} {'x redis':>8} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} "
        f"{'µs CPU/lead':>11} {'errors':>6}"
    )
    lines = [head, "-" * len(head)]
    for run in rows:
        lat = run["latency_ms"]
        name = run_label(doc, run)
        lines.append(
            f"{name:<30} {run['client']:<7} {_fmt(run['requests_per_s']):>9} "
            f"{_fmt(run['leads_per_s']):>9} {_fmt(run['ratios'].get('hello_world'), 2):>8} "
            f"{_fmt(run['ratios'].get('peer'), 2):>7} "
            f"{_fmt(run['ratios'].get('redis_decide'), 2):>8} {_fmt(lat['p50'], 2):>8} "
            f"{_fmt(lat['p95'], 2):>8} {_fmt(lat['p99'], 2):>8} "
            f"{_fmt(run['cpu_us_per_lead'], 1):>11} {run['error_count']:>6}"
        )
    redis = doc["baselines"]["redis_decide"]
    if redis is not None:
        lines.append(
            f"{'redis-benchmark decide':<30} {'-':<7} {_fmt(redis['calls_per_s']):>9} "
            f"{'':>9} {'':>8} {'':>7} {1.0:>8.2f} {_fmt(redis['latency_ms']['p50'], 2):>8} "
            f"{_fmt(redis['latency_ms']['p95'], 2):>8} {_fmt(redis['latency_ms']['p99'], 2):>8} "
            f"{'':>11} {redis['errors']:>6}"
        )
    if peer is not None:
        lines.append(
            "  peer: bench/peer.py, the same work written the obvious way (one EVALSHA a lead); "
            "x peer: leads/s over its single-lead rate"
        )
    for name, spread in doc.get("rounds", {}).items():
        rate = spread["leads_per_s"]
        over = spread["peer"]
        ratio = (
            f"x peer median {over['median']:.2f} ({over['min']:.2f}-{over['max']:.2f}), "
            if over
            else ""
        )
        lines.append(
            f"  {name}: {ratio}leads/s median {rate['median']:,.0f} "
            f"({rate['min']:,.0f}-{rate['max']:,.0f}) over {spread['rounds']} rounds"
        )
    ceilings = [run for run in doc["runs"] if run["kind"] == "ceiling"]
    if ceilings:
        lines.append(
            "  <scenario>/<mode>-only: the scenario's bodies against bench.ceiling, which does "
            "only that part of a lead's work (no rules, no fingerprints, no store): a ceiling"
        )
        lines.append("  no full pipeline on this stack can pass")
    for run in [*peers, *doc["runs"]]:
        name = run_label(doc, run)
        if run["kind"] == "ceiling":
            if run["errors"]:
                lines.append(f"  {name}: errors {run['errors']}")
            continue
        d = run["decisions"]
        mix = d["answers"] or d["metrics"] or {}
        shown = ", ".join(f"{k} {int(v):,}" for k, v in sorted(mix.items()))
        lines.append(f"  {name}: decisions {shown or '-'}")
        if d["expected"]:
            want = ", ".join(f"{k} {int(v):,}" for k, v in sorted(d["expected"].items()))
            lines.append(f"  {' ' * len(name)}  generated {want}")
        if run.get("bodies_cycled"):
            lines.append(
                f"  {' ' * len(name)}  (bodies sent more than once: later rounds are duplicates)"
            )
        if run["errors"]:
            lines.append(f"  {' ' * len(name)}  errors {run['errors']}")
        if run.get("profile"):
            lines.append(profile_table(run["name"], run["profile"]))
        memory = run.get("memory")
        if memory:
            pad = " " * len(name)
            if "bytes_per_accepted_lead" in memory:
                lines.append(
                    f"  {pad}  Redis bytes per accepted lead, everything but the stream: "
                    f"{memory['bytes_per_accepted_lead']:.1f} ({memory['accepted']:,} leads; "
                    f"the lead index {memory['lead_index_bytes_per_lead']:.1f})"
                )
            lines.append(
                f"  {pad}  Redis bytes per identity per scope: "
                f"{memory['bytes_per_identity_per_scope']:.1f} ({memory['identities']:,} "
                f"identities x {memory['scopes']} scopes, stream excluded)"
            )
    return "\n".join(lines)
