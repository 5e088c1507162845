"""``python -m bench.decide_cost``: what a decision asks of Redis, by command, and under
``--callgrind`` how many instructions it costs Redis, counted only while the measured leads
are decided (the start-up and the prefill left out)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _run(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "bench.decide_cost", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_commands_a_decision_asks_of_redis_are_counted() -> None:
    out = _run("--leads", "300")
    found = re.search(r"per decision: ([\d.]+) commands from the script: (.*)", out)
    assert found, out
    counts = dict(
        (name, float(n)) for name, n in (part.split() for part in found.group(2).split(", "))
    )
    # The bench campaign: 2 identities in 2 scopes (marks written), 2 calendar caps, the index.
    assert counts["XADD"] == 1.0
    assert counts["INCR"] == 2.0
    assert counts["HSET"] == 5.0
    assert float(found.group(1)) == pytest.approx(sum(counts.values()), abs=0.1)


@pytest.mark.skipif(shutil.which("valgrind") is None, reason="valgrind is not installed")
def test_callgrind_counts_the_measured_decisions_only() -> None:
    few = _run("--leads", "100", "--callgrind")
    more = _run("--leads", "100", "--prefill", "300", "--callgrind")
    pattern = r"callgrind: ([\d,]+) Redis instructions per decision, ([\d,]+) of them inside"

    def counts(out: str) -> tuple[int, int]:
        found = re.search(pattern, out)
        assert found, out
        return int(found.group(1).replace(",", "")), int(found.group(2).replace(",", ""))

    total, script = counts(few)
    assert 50_000 < script < total < 2_000_000
    # A prefill is not counted: per decision, the same order of magnitude either way.
    total_after, _ = counts(more)
    assert total / 2 < total_after < total * 2


def test_single_posts_share_calls() -> None:
    """``--single``: each lead decided as a single post of its own, 500 at once; those waiting
    together share ``decide.lua`` calls, so there are fewer calls than leads."""
    out = _run("--leads", "600", "--single")
    found = re.search(r"decide\.lua, single posts: 600 decisions: EVALSHA ([\d,]+) calls", out)
    assert found, out
    assert 2 <= int(found.group(1).replace(",", "")) < 300, out
