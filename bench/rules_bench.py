"""``python -m bench.rules_bench``: the cost of evaluating rule packs, in µs per lead.

Each shipped pack (and the combination the example config uses) is compiled once, then
evaluated on a mix of realistic leads, already parsed and normalized as the intake hands them
over: passing ones, rejected ones (disposable, role, typo domains), B2B ones, with and without
consent. Pure CPU, one process; the figure is the best of several rounds (the least disturbed
by the rest of the machine), divided by the number of evaluations.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path
from zoneinfo import ZoneInfo

from gateway.config.model import Campaign, CampaignKind
from gateway.config.reader import Reader
from gateway.leads.lead import Lead
from gateway.leads.parse import parse_lead
from gateway.rules.model import RuleSet
from gateway.rules.pack import combine_packs, read_pack
from gateway.types import AdvertiserId, CampaignId

RULES = Path(__file__).resolve().parent.parent / "rules"
NOW_S = 1_795_000_000.0  # 2026-11-18
CAMPAIGN = Campaign(
    id=CampaignId("bench"),
    advertiser=AdvertiserId("bench"),
    name="bench",
    kind=CampaignKind.ALWAYS_ON,
    timezone=ZoneInfo("Europe/Paris"),
    required_fields=(),
)
_CONSENT = {
    "given": True,
    "at": NOW_S - 3600,
    "text": "J'accepte d'être recontacté par ACME Énergie.",
    "version": "v3",
    "certificate_id": "https://cert.trustedform.com/0123456789abcdef0123456789abcdef01234567",
}
LEADS_DATA: list[dict[str, object]] = [
    {"email": "marie.dupont@gmail.com", "first_name": "Marie", "last_name": "Dupont",
     "phone": "06 12 34 56 78", "postal_code": "75011", "birth_date": "1988-04-23",
     "consent": _CONSENT},
    {"email": "jean.morel@orange.fr", "first_name": "Jean", "last_name": "Morel",
     "phone": "0698765432", "postal_code": "69003"},
    {"email": "paul@yopmail.com", "first_name": "Paul", "postal_code": "13001"},
    {"email": "contact@boulangerie-martin.fr", "first_name": "Luc", "last_name": "Martin",
     "company": "Boulangerie Martin", "phone": "+33 1 23 45 67 89", "job_title": "Gérant"},
    {"email": "lea.petit@gmial.com", "first_name": "Léa", "last_name": "Petit",
     "phone": "+33 7 81 22 33 44", "birth_date": "12/05/2010", "honeypot": "http://spam"},
    {"email": "c.roux@acme-industrie.fr", "first_name": "Claire", "last_name": "Roux",
     "company": "ACME Industrie", "phone": "+33 4 78 42 10 20", "consent": True},
]  # fmt: skip


def _leads() -> list[Lead]:
    return [
        parse_lead({**data, "campaign": CAMPAIGN.id}, {CAMPAIGN.id: CAMPAIGN}, now_s=NOW_S)
        for data in LEADS_DATA
    ]


def _rule_set(names: list[str]) -> RuleSet:
    r = Reader()
    packs = [(name, read_pack(r, RULES / f"{name}.yaml")) for name in names]
    combined = combine_packs(
        r, [(at, pack) for at, pack in packs if pack is not None],
        default_country="FR", min_score=None, min_score_path="",
    )  # fmt: skip
    if r.issues or combined.rule_set is None:
        raise SystemExit("\n".join(map(str, r.issues)) or f"{names}: no rule")
    return combined.rule_set


def _us_per_lead(rule_set: RuleSet, leads: list[Lead], rounds: int, loops: int) -> float:
    evaluate = rule_set.evaluate
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(loops):
            for lead in leads:
                evaluate(lead, NOW_S, channel="email", partner="p-bench")
        best = min(best, time.perf_counter() - started)
    return best / (loops * len(leads)) * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.rules_bench")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--loops", type=int, default=2000, help="passes over the leads per round")
    args = parser.parse_args()
    leads = _leads()
    runs = {
        "default": ["default"],
        "fr-b2c": ["fr-b2c"],
        "b2b": ["b2b"],
        "consent": ["consent"],
        "default+fr-b2c+consent": ["default", "fr-b2c", "consent"],
        "default+b2b": ["default", "b2b"],
    }
    print(f"python {platform.python_version()}, {os.cpu_count()} CPUs, {platform.platform()}")
    print(f"{len(leads)} leads x {args.loops} loops, best of {args.rounds} rounds\n")
    print(f"{'packs':<24} {'rules':>5} {'µs/lead':>8}")
    for name, packs in runs.items():
        rule_set = _rule_set(packs)
        rule_set.evaluate(leads[0], NOW_S)  # warm: typo table, lazy imports
        cost = _us_per_lead(rule_set, leads, args.rounds, args.loops)
        print(f"{name:<24} {len(rule_set.rules):>5} {cost:>8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
