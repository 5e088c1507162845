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
    # Campaigns sold to buyers: a lead down the waterfall, buyer by buyer, a filtering buyer
    # passed over, a shared sale to two CRMs (whatever the hour: the call centre whose hours
    # may close it is the last buyer, and no lead of the demo reaches it).
    for text in (
        "waterfall: solaris capped -> helio-install SOLD",
        "not offered: solaris filtered out",
        "2 buyer(s): acme-energy, helio-install",
        "waterfall: acme-energy SOLD -> helio-install has the person",
        "duplicate.campaign; 0 buyer(s)",
    ):
        assert text in out, text
    # Ping/post on hashed identifiers: a check finds a person posted in full, a ping holds
    # room, its post commits it, and the person is then found by hash.
    for pattern in (
        r"check Marie by email_sha256 +-> duplicate \['duplicate.advertiser'",
        r"ping Sophie \(hashes, 69007\) +-> open, room held 60 s as pg_",
        r"post Sophie with its ping_id +-> accepted \(ping committed\)",
        r"check Sophie by her hashes +-> duplicate",
    ):
        assert re.search(pattern, out), pattern
    helio = re.search(r"helio-install\s+webhook\s+(\d+)\s+signature verified \((\d+)\)", out)
    assert helio is not None, out
    assert (helio[1], helio[2]) == ("3", "3")
    assert re.search(
        r"shared sale of Élise \(lead [0-9a-f-]+…\): sold to acme-energy, helio-install; "
        r"reached the CRMs of acme-energy, helio-install",
        out,
    ), out
