"""The shipped alert rules are valid Prometheus rules and behave as their unit tests say
(``promtool check rules`` and ``promtool test rules``, the tools ops teams use)."""

from __future__ import annotations

import subprocess

from prom_support import DEPLOY, promtool

RULES = DEPLOY / "prometheus" / "alerts.yaml"
RULE_TESTS = DEPLOY / "prometheus" / "alerts.test.yaml"


def run_promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool(), *args],
        cwd=RULES.parent,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_promtool_check_rules_passes() -> None:
    checked = run_promtool("check", "rules", RULES.name)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 21 rules found" in checked.stdout


def test_promtool_test_rules_passes() -> None:
    tested = run_promtool("test", "rules", RULE_TESTS.name)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout
