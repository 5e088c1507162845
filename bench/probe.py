"""What the harness reads around a run: the gateway's /metrics, process CPU, the machine."""

from __future__ import annotations

import os
import platform
import subprocess
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

#: The lead routes' label values in ``leadgate_http_request_duration_seconds``.
LEAD_ROUTES = frozenset({"/v1/leads", "/v1/leads/batch"})
_CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass
class MetricsSnapshot:
    """The counters a run's deltas come from (summed over every label but the one kept)."""

    decisions: dict[str, float] = field(default_factory=dict)
    refused: dict[str, float] = field(default_factory=dict)  # HTTP status -> requests
    requests: float = 0.0  # answered on the lead routes
    statuses: dict[str, float] = field(default_factory=dict)  # the lead routes', by status
    #: (upper bound s, cumulative count) of the lead routes' latency histogram.
    buckets: dict[float, float] = field(default_factory=dict)

    def minus(self, before: MetricsSnapshot) -> MetricsSnapshot:
        def sub(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
            return {k: v - b.get(k, 0.0) for k, v in a.items() if v - b.get(k, 0.0)}

        return MetricsSnapshot(
            decisions=sub(self.decisions, before.decisions),
            refused=sub(self.refused, before.refused),
            statuses=sub(self.statuses, before.statuses),
            requests=self.requests - before.requests,
            buckets={le: n - before.buckets.get(le, 0.0) for le, n in self.buckets.items()},
        )


def parse_metrics(text: str) -> MetricsSnapshot:
    snap = MetricsSnapshot()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = sample.labels
            if sample.name == "leadgate_leads_total":
                key = labels.get("decision", "")
                snap.decisions[key] = snap.decisions.get(key, 0.0) + sample.value
            elif sample.name == "leadgate_requests_refused_total":
                key = labels.get("status", "")
                snap.refused[key] = snap.refused.get(key, 0.0) + sample.value
            elif labels.get("route") not in LEAD_ROUTES:
                continue
            elif sample.name == "leadgate_http_requests_total":
                snap.requests += sample.value
                key = labels.get("status", "")
                snap.statuses[key] = snap.statuses.get(key, 0.0) + sample.value
            elif sample.name == "leadgate_http_request_duration_seconds_bucket":
                le = float(labels["le"])
                snap.buckets[le] = snap.buckets.get(le, 0.0) + sample.value
    return snap


def fetch_metrics(base_url: str) -> MetricsSnapshot:
    return parse_metrics(metrics_text(base_url))


def metrics_text(base_url: str) -> str:
    """The gateway's /metrics exposition, unparsed."""
    with urllib.request.urlopen(base_url + "/metrics", timeout=5) as resp:  # noqa: S310 (loopback)
        text: str = resp.read().decode()
        return text


def histogram_quantile(buckets: dict[float, float], q: float) -> float | None:
    """Prometheus' estimate (linear within a bucket) from cumulative ``buckets``; seconds."""
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] <= 0:
        return None
    rank = q * buckets[bounds[-1]]
    lower, below = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if bound == float("inf"):
                return lower
            inside = count - below
            return lower + (bound - lower) * ((rank - below) / inside if inside else 1.0)
        lower, below = bound, count
    return lower


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (``serve --workers N`` forks its workers)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rpartition(")")[2].split()[1])
        parents.setdefault(ppid, []).append(int(entry.name))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(parents.get(current, []))
    return tree


def cpu_seconds(pids: list[int]) -> float:
    """utime + stime of ``pids`` (from /proc/<pid>/stat), in seconds; gone processes count 0."""
    ticks = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])  # utime, stime: fields 14 and 15 of stat
    return ticks / _CLK_TCK


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(argv: list[str]) -> str | None:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (out.stdout or out.stderr).strip().splitlines()
    return text[0] if text else None


def machine(redis_version: str | None) -> dict[str, object]:
    return {
        "cpu_model": _cpu_model(),
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "redis": redis_version,
        "wrk": _version(["wrk", "--version"]),
        "pinned": pinning_available(),
    }


def pinning_available() -> bool:
    return (os.cpu_count() or 1) >= 2 and hasattr(os, "sched_setaffinity")


def git_sha(repo: Path) -> str:
    out = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=repo, capture_output=True, text=True
    )
    sha = out.stdout.strip() or "unknown"
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"],
        cwd=repo,
        capture_output=True,
        text=True,
    )
    return sha + ("-dirty" if dirty.stdout.strip() else "")
