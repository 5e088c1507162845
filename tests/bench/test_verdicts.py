"""How a run's raw client output becomes errors and decisions, and the CI smoke's verdict."""

from __future__ import annotations

from typing import Any

import pytest

from bench.__main__ import _smoke_verdict, _wrk_record
from bench.scenario import parse_scenario

WRK_OUTPUT: dict[str, Any] = {
    "requests": 1000, "duration_us": 2_000_000, "bodies": 5000,
    "errors": {"connect": 0, "read": 2, "write": 0, "timeout": 3, "status": 12},
    "p50_us": 1500, "p95_us": 4000, "p99_us": 9000, "max_us": 20000, "mean_us": 1800.0,
    "statuses": {"200": 988, "422": 10, "503": 2},
}  # fmt: skip


def test_a_wrk_result_counts_422_as_invalid_and_other_statuses_as_errors() -> None:
    record = _wrk_record(WRK_OUTPUT, parse_scenario({}, "single"))
    assert record["requests"] == 1000
    assert record["duration_s"] == 2.0
    assert record["latency_ms"] == {"p50": 1.5, "p95": 4.0, "p99": 9.0, "max": 20.0}
    assert record["errors"] == {"socket read": 2, "socket timeout": 3, "http 503": 2}
    assert record["bodies_cycled"] is False


def test_in_a_batch_run_a_422_is_an_error() -> None:
    record = _wrk_record(WRK_OUTPUT, parse_scenario({"batch": 10}, "batch"))
    assert record["errors"]["http 422"] == 10
    assert record["leads"] == 10_000


def _run(errors: dict[str, int], answers: dict[str, int]) -> dict[str, Any]:
    return {
        "name": "smoke",
        "errors": errors,
        "error_count": sum(errors.values()),
        "decisions": {
            "answers": answers,
            "metrics": None,
            "expected": {"accepted": 10, "duplicate": 3, "invalid": 1},
        },
    }


def test_the_smoke_passes_a_clean_run() -> None:
    assert _smoke_verdict([_run({}, {"accepted": 10, "duplicate": 3, "invalid": 1})]) == 0


def test_the_smoke_fails_on_errors_or_a_missing_decision(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert _smoke_verdict([_run({"http 500": 1}, {"accepted": 10, "duplicate": 3,
                                                  "invalid": 1})]) == 1  # fmt: skip
    assert _smoke_verdict([_run({}, {"accepted": 14})]) == 1
    err = capsys.readouterr().err
    assert "errors {'http 500': 1}" in err
    assert "no duplicate answer" in err
