"""``python -m bench.intake_cost`` decides generated leads through the gateway's own intake
and a real Redis (a figure for each round, never judged: speed is measured, not asserted)."""

from __future__ import annotations

from pathlib import Path

from support import run_sources

#: Two rounds, the last profiled by cProfile, in a process running the sources
#: (``support.run_sources``: cProfile does not see into the modules compiled by mypyc).
_MEASURE = """
import pstats, sys
import orjson
from pathlib import Path
from bench.intake_cost import measure
profile = Path(sys.argv[1])
figures = measure(leads=200, concurrency=8, rounds=2, profile=profile)
raw = pstats.Stats(str(profile)).stats
print(orjson.dumps({"figures": figures, "calls": [f"{p}:{name}" for p, _, name in raw]}).decode())
"""


def test_every_round_is_measured_and_the_last_profiled(tmp_path: Path) -> None:
    profile = tmp_path / "intake.prof"

    out = run_sources(_MEASURE, args=[str(profile)])

    figures, calls = out["figures"], out["calls"]
    assert len(figures) == 2
    assert all(us > 0 for us in figures)
    # The profile is of the real path: the intake's submit, through the Redis store.
    assert any(c.endswith("gateway/decision/intake.py:submit") for c in calls)
    assert any(c.endswith("gateway/storage/redis.py:decide") for c in calls)
