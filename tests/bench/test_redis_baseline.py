"""The bench's ``redis-benchmark`` baseline builds ``decide.lua``'s arguments by hand (the
tool sends text, so its numbers go through a prelude): when the script's argument layout
changes, the baseline must follow. Its own first call must decide a new person ``accepted``
and redis-benchmark must then run the call without an error."""

from __future__ import annotations

import shutil

import pytest

from bench.__main__ import _redis_decide
from bench.scratch_redis import scratch_redis


@pytest.mark.skipif(shutil.which("redis-benchmark") is None, reason="needs redis-benchmark")
def test_the_redis_baseline_decides_with_the_scripts_current_arguments() -> None:
    with scratch_redis("leadgate-test-redis-baseline-") as (sock, _):
        baseline = _redis_decide(sock, 200)

    assert baseline is not None
    assert baseline["errors"] == 0
    assert baseline["calls_per_s"] > 0
