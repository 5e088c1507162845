"""``make demo`` (``leadgate demo``), the README's first command, as a user runs it: it ends
by itself, shows every decision kind, and the local CRM receives signed leads."""

from __future__ import annotations

import re

from processes import run_leadgate


def test_the_demo_runs_end_to_end() -> None:
    done = run_leadgate("demo", timeout_s=120)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    out = done.stdout
    shown = ("accepted", "duplicate.advertiser", "cap.person", "cap.partner.rolling",
             "campaign.inactive", "rule.email_not_disposable", "HTTP 422", "(replay)")  # fmt: skip
    for text in shown:
        assert text in out, text
    delivered = re.search(r"acme-energy\s+webhook\s+(\d+)\s+signature verified \((\d+)\)", out)
    assert delivered is not None, out
    assert int(delivered[1]) > 0
    assert delivered[1] == delivered[2]
