"""``python -m bench.stages`` runs every stage on generated leads (a figure for each, never
judged: speed is measured, not asserted)."""

from __future__ import annotations

from bench.stages import measure


def test_every_stage_is_measured_on_valid_generated_leads() -> None:
    figures = measure(leads=60, rounds=1)

    assert set(figures) == {
        "email normalizer (emval, email-validator)",
        "phone normalizer (phonenumbers)",
        "parse_lead (with both normalizers)",
        "rules (the default pack)",
        "build_request",
        "decide command",
        "pack (hiredis)",
        "answer JSON (orjson)",
    }
    assert all(us >= 0 for us in figures.values())
    assert figures["parse_lead (with both normalizers)"] > 0  # 60 parses take measurable time
