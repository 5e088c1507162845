"""``python -m bench.metrics_cost``: its in-process part runs, and ``bench.serve_variant``
serves the gateway with its metrics, or with none recorded (embedded store: no Redis)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

import bench.metrics_cost
import bench.serve_variant
from bench.__main__ import _free_port, _process, _wait_http
from bench.generate import LeadGenerator
from bench.probe import fetch_metrics
from bench.scenario import GATEWAY_CONFIG, Scenario

REPO = Path(__file__).resolve().parents[2]


def test_modules_import() -> None:
    assert callable(bench.metrics_cost.main)
    assert callable(bench.serve_variant.main)


def _metrics_cost(*args: str, metrics_dir: Path | None) -> str:
    """``python -m bench.metrics_cost`` with ``args``, in one process or, with
    ``metrics_dir``, in prometheus-client's multiprocess mode (``--workers N``'s); its
    output."""
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    if metrics_dir is not None:
        env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    return subprocess.run(
        [sys.executable, "-m", "bench.metrics_cost", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout


@pytest.mark.parametrize("multiprocess", [False, True])
def test_micro_prints_a_positive_cost(multiprocess: bool, tmp_path: Path) -> None:
    out = _metrics_cost(
        "--micro", "--micro-calls", "2000", metrics_dir=tmp_path if multiprocess else None
    )
    micro = json.loads(out)
    us = micro["metrics_per_request_us"]
    assert isinstance(us, float)
    assert 0 < us < 10_000
    assert 0 < micro["scrape_ms"] < 10_000
    assert micro["scrape_lines"] > 100  # the bench configuration's series, all of them
    if multiprocess:  # the values really went to the multiprocess files
        assert list(tmp_path.glob("*.db"))


@pytest.mark.parametrize("multiprocess", [False, True])
def test_scrape_reports_a_networks_page_on_and_off_the_loop(
    multiprocess: bool, tmp_path: Path
) -> None:
    out = _metrics_cost("--scrape", "4", metrics_dir=tmp_path if multiprocess else None)
    # 4 partners x 5 campaigns x 2 channels: 40 routes, about 14 lines each, and the rest.
    found = re.search(
        r"^4 partners x 5 campaigns x 2 channels: ([\d,]+) lines; rendered on the event loop "
        r"in \d+ ms \(the loop's longest pause \d+ ms\), in a thread in \d+ ms \(longest "
        r"pause [\d.]+ ms\)$",
        out.strip(),
    )
    assert found, out
    assert int(found.group(1).replace(",", "")) > 40 * 10
    if multiprocess:
        assert list(tmp_path.glob("*.db"))


@contextlib.contextmanager
def _serve(variant: str, tmp_path: Path) -> Iterator[str]:
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LEADGATE_CONFIG": str(GATEWAY_CONFIG),
        "LEADGATE_LOG_LEVEL": "error",
    }
    argv = [sys.executable, "-m", "bench.serve_variant", str(port), variant]
    with _process(argv, env, tmp_path / f"{variant}.log") as proc:
        _wait_http(url + "/healthz", proc)
        yield url


def _post(url: str, n: int) -> None:
    for request in LeadGenerator(Scenario(name="t")).requests(n):
        post = urllib.request.Request(  # noqa: S310 (loopback only)
            url + "/v1/leads",
            data=request.body,
            headers={
                "Authorization": f"Bearer {request.api_key}",
                "Content-Type": "application/json",
            },
        )
        with urllib.request.urlopen(post, timeout=5) as resp:  # noqa: S310 (loopback only)
            assert resp.status == 200


@pytest.mark.parametrize("variant", ["with", "without"])
def test_serve_variant_records_metrics_or_none(variant: str, tmp_path: Path) -> None:
    with _serve(variant, tmp_path) as url:
        _post(url, 3)
        snapshot = fetch_metrics(url)
    if variant == "with":
        assert {k: v for k, v in snapshot.decisions.items() if v} == {"accepted": 3.0}
        assert snapshot.requests == 3.0
    else:  # neither the decision counters nor the request middleware recorded anything
        assert not any(snapshot.decisions.values())
        assert snapshot.requests == 0.0
