"""``python -m bench.guard_cost`` runs and measures what it says (BENCHMARKS.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_guard_cost_prints_each_cost() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "bench.guard_cost"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    costs = json.loads(out)
    # The checked parse does the bare parse and more.
    assert costs["lead_checked_us"] > costs["lead_orjson_us"] > 0
    assert costs["batch_checked_us"] > costs["batch_orjson_us"] > 0
    assert costs["store_budget_us"] > 0
    assert costs["store_call_timer_us"] > 0
