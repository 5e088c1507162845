"""``python -m bench.intake_count`` counts what a lead costs the intake: Python opcodes by
function, and machine instructions under callgrind (counts, never judged)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from support import run_sources

from bench.intake_count import _callgrind_total, group_of, http_opcodes

#: Counts a round of opcodes in a process running the sources (``support.run_sources``):
#: the modules compiled by mypyc run no opcodes a tracer could see.
_COUNT_OPCODES = """
import orjson
from bench.intake_count import opcodes
runs = [opcodes(leads=100, concurrency=8) for _ in range(2)]
print(orjson.dumps([run._asdict() for run in runs]).decode())
"""


def test_opcodes_are_counted_per_lead_and_by_function_on_the_real_path() -> None:
    first, again = run_sources(_COUNT_OPCODES)
    total, ranked = first["opcodes"], first["by_function"]

    assert total == pytest.approx(sum(per_lead for _, per_lead in ranked))
    assert first["calls"] == pytest.approx(sum(n for _, n in first["calls_by_function"]))
    assert 10 < first["calls"] < total / 5
    names = [name for name, _ in ranked]
    # The path through the Redis store, not a stand-in: its command is built for every lead.
    decide_parts = next(n for n in names if n.startswith("_decide_parts (gateway/storage/redis.py"))
    assert dict(ranked)[decide_parts] > 50
    assert any(n.startswith("parse (gateway/leads/parse.py") for n in names)
    # A count, not a time: the same leads cost the same opcodes whatever the machine does.
    assert again["opcodes"] == pytest.approx(total, rel=0.02)


@pytest.mark.skipif(shutil.which("valgrind") is None, reason="valgrind is not installed")
def test_instructions_of_a_whole_run_are_read_from_callgrind(tmp_path: Path) -> None:
    few = _callgrind_total(20, 8, 1, tmp_path / "few", warm_up=20)

    # The interpreter's start and the gateway's imports alone are billions of instructions.
    assert 500_000_000 < few < 50_000_000_000


def test_whole_requests_are_counted_in_the_gateway_process_only() -> None:
    (counts,) = run_sources(
        "import orjson\nfrom bench.intake_count import http_opcodes\n"
        "print(orjson.dumps([http_opcodes(leads=100, warm_up=50)._asdict()]).decode())"
    )
    calls_by_function = counts["calls_by_function"]

    groups = {group_of(name) for name, _ in calls_by_function}
    # The lead app's own layers and aiohttp's are in it; the client, another process, is not.
    assert {"aiohttp/", "gateway/web/", "gateway/decision/", "gateway/storage/"} <= groups
    assert not any(name.startswith("run (<string>") for name, _ in calls_by_function)
    (post_lead,) = [
        n for name, n in calls_by_function if name.startswith("post_lead (gateway/web/")
    ]
    assert post_lead == pytest.approx(2.0, abs=0.2)  # a coroutine: entered, then resumed


def test_requests_only_posts_without_counting() -> None:
    # What --instructions --http runs under callgrind: the requests, and no tracer's cost.
    counts = http_opcodes(leads=20, warm_up=10, count=False)

    assert counts.opcodes == 0
    assert counts.calls == 0


def test_the_peer_is_counted_the_same_way_in_its_own_app() -> None:
    counts = http_opcodes(leads=60, warm_up=30, peer=True)

    groups = {group_of(name) for name, _ in counts.calls_by_function}
    # The peer's handler and aiohttp's are in it; nothing of the gateway's is.
    assert {"aiohttp/", "bench/peer"} <= groups
    assert not any(g.startswith("gateway/") for g in groups)
    (single,) = [n for name, n in counts.calls_by_function if name.startswith("single (bench/")]
    assert single == pytest.approx(2.0, abs=0.2)  # a coroutine: entered, then resumed
