"""``--redis-server PATH`` (``python -m bench``, ``python -m bench.decide_cost``): the
redis-server binary a run starts, another version's say; one that is not there is said, and
nothing runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "module", [["bench", "--smoke", "--no-plot"], ["bench.decide_cost", "--leads", "10"]]
)
def test_a_redis_server_that_is_not_there_is_named(module: list[str], tmp_path: Path) -> None:
    missing = tmp_path / "redis-server"
    out = ["--out", str(tmp_path)] if module[0] == "bench" else []  # no results left behind
    done = subprocess.run(
        [sys.executable, "-m", *module, *out, "--redis-server", str(missing)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert str(missing) in done.stderr
