"""``make demo`` (``leadgate demo``), the README's first command, as a user runs it: it ends
by itself, shows every decision kind, and the local CRM receives signed leads."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from app.conftest import REPO_ROOT


def test_the_demo_runs_end_to_end() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEADGATE_")}
    env["PYTHONPATH"] = str(REPO_ROOT)
    done = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "demo"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
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
