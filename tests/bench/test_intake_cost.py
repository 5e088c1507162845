"""``python -m bench.intake_cost`` decides generated leads through the gateway's own intake
and a real Redis (a figure for each round, never judged: speed is measured, not asserted)."""

from __future__ import annotations

import pstats
from pathlib import Path

from bench.intake_cost import measure


def test_every_round_is_measured_and_the_last_profiled(tmp_path: Path) -> None:
    profile = tmp_path / "intake.prof"

    figures = measure(leads=200, concurrency=8, rounds=2, profile=profile)

    assert len(figures) == 2
    assert all(us > 0 for us in figures)
    # The profile is of the real path: the intake's submit, through the Redis store.
    raw = pstats.Stats(str(profile)).stats  # type: ignore[attr-defined]
    calls = {f"{path}:{name}" for path, _, name in raw}
    assert any(c.endswith("gateway/decision/intake.py:submit") for c in calls)
    assert any(c.endswith("gateway/storage/redis.py:decide") for c in calls)
