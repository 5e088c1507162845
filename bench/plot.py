"""The run's picture: latency percentiles over time (1 s buckets), throughput vs baselines."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display on a server or in CI

import matplotlib.pyplot as plt

from bench.report import run_label


def draw(doc: dict[str, Any], path: Path) -> None:
    runs = [r for r in doc["runs"] if r["timeline"]]
    fig, (left, right) = plt.subplots(1, 2, figsize=(14, 5.5), gridspec_kw={"width_ratios": [3, 2]})
    styles = {"p50_ms": "-", "p95_ms": "--", "p99_ms": ":"}
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, run in enumerate(runs):
        color = colors[i % len(colors)]
        source = run.get("timeline_source", "")
        for key, style in styles.items():
            points = [(p["t"], p[key]) for p in run["timeline"] if p[key] is not None]
            if not points:
                continue
            xs, ys = zip(*points, strict=True)
            server = " (server)" if source.startswith("server") else ""
            label = f"{run_label(doc, run)} {key[:3]}{server}"
            left.plot(xs, ys, style, color=color, label=label, linewidth=1.5)
    left.set_yscale("log")
    left.set_xlabel("seconds into the run")
    left.set_ylabel("latency, ms (log)")
    left.set_title("Latency percentiles per 1 s")
    left.grid(True, which="both", alpha=0.3)
    if runs:
        left.legend(fontsize=7, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.13))

    names: list[str] = []
    values: list[float] = []
    bar_colors: list[str] = []
    hello = doc["baselines"]["hello_world"]
    if hello is not None:
        names.append("hello-world\n(req/s)")
        values.append(hello["requests_per_s"])
        bar_colors.append("#999999")
    redis = doc["baselines"]["redis_decide"]
    if redis is not None:
        names.append("redis decide.lua\n(calls/s)")
        values.append(redis["calls_per_s"])
        bar_colors.append("#bbbbbb")
    peer = doc["baselines"].get("peer")
    if peer is not None:
        names.append("peer\n(leads/s)")
        values.append(peer["leads_per_s"])
        bar_colors.append("#666666")
    hatches = ["" for _ in names]
    by_peer = peer["leads_per_s"] if peer else None
    # Each bar over the peer: a baseline over the (first) peer, a run over its own round's.
    over_peer: list[float | None] = [v / by_peer if by_peer else None for v in values]
    for i, run in enumerate(doc["runs"]):
        names.append(f"{run_label(doc, run)}\n(leads/s)")
        values.append(run["leads_per_s"])
        over_peer.append(run["ratios"].get("peer"))
        bar_colors.append(colors[i % len(colors)])
        hatches.append("//" if run["kind"] == "ceiling" else "")  # a ceiling, not the gateway
    bars = right.bar(range(len(values)), values, color=bar_colors, hatch=hatches)
    positive = [v for v in values if v > 0]
    if positive and max(positive) > 20 * min(positive):
        right.set_yscale("log")  # batch ceilings reach 100x what one connection does
    base = hello["requests_per_s"] if hello else None
    for bar, value, ratio in zip(bars, values, over_peer, strict=True):
        note = f"{value:,.0f}" + (f"\n{value / base:.2f}x hello" if base else "")
        note += f"\n{ratio:.2f}x peer" if ratio is not None else ""
        right.annotate(
            note, (bar.get_x() + bar.get_width() / 2, value), ha="center", va="bottom", fontsize=8
        )
    right.set_xticks(range(len(names)), names, fontsize=7, rotation=35, ha="right")
    right.set_ylabel("per second")
    right.set_title("Throughput (ratios to the hello-world and the peer; hatched: ceilings)")
    right.margins(y=0.2)
    fig.suptitle(
        f"leadgate bench {doc['date']} · {doc['git_sha']} · "
        f"{doc['machine']['cores']} cores {doc['machine']['cpu_model']}",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
