"""``python -m bench.stages``: CPU per lead of each in-process stage of the hot path.

The bench campaign (``bench/scenarios/gateway.yaml``) and the ``single`` scenario's generated
leads (the valid ones), each stage run over all of them, best of ``--rounds``
(``time.process_time``): the email and phone normalizers alone (email-validator,
phonenumbers), ``parse_lead`` (which calls them), the campaign's rules, ``build_request``
(fingerprints, dedup and cap keys, the delivery record), and the decision script's command,
formed and packed by hiredis. No HTTP, no event loop, no store: for comparing two trees'
hot path code (run it from each), next to ``python -m bench``'s end-to-end figures.
"""

from __future__ import annotations

import argparse
import gc
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import orjson
from hiredis import pack_command

from bench.generate import LeadGenerator
from bench.scenario import load_scenario, write_gateway_config
from gateway.config.load import load_config
from gateway.decision.model import DecisionRequest
from gateway.decision.plan import Plan, build_request
from gateway.errors import InvalidLead
from gateway.leads.email import normalize_email
from gateway.leads.fingerprint import Fingerprinter
from gateway.leads.ids import new_lead_id
from gateway.leads.lead import Lead
from gateway.leads.parse import parse_lead
from gateway.leads.phone import normalize_phone
from gateway.storage.redis import _decide_command, _decide_parts
from gateway.types import CampaignId, ChannelId, FingerprintKey, PartnerId


def _best_us(work: Callable[[], object], count: int, rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        gc.collect()
        started = time.process_time()
        work()
        best = min(best, time.process_time() - started)
    return best / count * 1e6


def measure(leads: int, rounds: int) -> dict[str, float]:
    """µs of CPU per lead for each stage, over ``leads`` valid generated leads."""
    with tempfile.TemporaryDirectory(prefix="leadgate-stages-") as tmp:
        config = load_config(write_gateway_config(Path(tmp) / "gateway.yaml"))
    campaign = config.campaigns[CampaignId("bench")]
    partner = config.partners[PartnerId("p-alpha")]
    assert campaign.rules is not None
    rules = campaign.rules
    fingerprinter = Fingerprinter([FingerprintKey("b1", b"bench-stages-key-of-32-bytes!!!!")])
    now_s = time.time()

    posted: list[Mapping[str, object]] = []
    parsed: list[Lead] = []
    generator = LeadGenerator(load_scenario("single"))
    while len(parsed) < leads:
        data = generator.lead("p-alpha").lead
        try:
            lead = parse_lead(data, config.campaigns, now_s=now_s)
        except InvalidLead:
            continue
        posted.append(data)
        parsed.append(lead)
    emails = [str(d["email"]) for d in posted]
    phones = [str(d["phone"]) for d in posted]
    channels = [ChannelId(lead.channel or "email") for lead in parsed]
    ids = [new_lead_id() for _ in parsed]

    # As the intake plans: what a (campaign, partner, channel) shares is worked out once.
    compiled = Plan(config)

    def plan() -> list[DecisionRequest]:
        return [
            build_request(
                lead=lead,
                lead_id=lead_id,
                campaign=campaign,
                partner=partner,
                channel=channel,
                pressure=config.contact_pressure,
                fingerprinter=fingerprinter,
                now_s=now_s,
                plan=compiled,
            )
            for lead, lead_id, channel in zip(parsed, ids, channels, strict=True)
        ]

    requests = plan()
    commands = [_decide_command([_decide_parts(rq, None, 0)]) for rq in requests]
    n = len(parsed)
    return {
        "email normalizer (emval, email-validator)": _best_us(
            lambda: [normalize_email(e) for e in emails], n, rounds
        ),
        "phone normalizer (phonenumbers)": _best_us(
            lambda: [normalize_phone(p, campaign.phone_region) for p in phones], n, rounds
        ),
        "parse_lead (with both normalizers)": _best_us(
            lambda: [parse_lead(d, config.campaigns, now_s=now_s) for d in posted], n, rounds
        ),
        "rules (the default pack)": _best_us(
            lambda: [
                rules.evaluate(lead, now_s, channel=channel, partner=partner.id)
                for lead, channel in zip(parsed, channels, strict=True)
            ],
            n,
            rounds,
        ),
        "build_request": _best_us(plan, n, rounds),
        "decide command": _best_us(
            lambda: [_decide_command([_decide_parts(r, None, 0)]) for r in requests], n, rounds
        ),
        "pack (hiredis)": _best_us(lambda: [pack_command(c) for c in commands], n, rounds),  # type: ignore[arg-type]
        "answer JSON (orjson)": _best_us(
            lambda: [orjson.dumps({"lead_id": i, "decision": "accepted"}) for i in ids], n, rounds
        ),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leads", type=int, default=4000, help="valid leads (default 4000)")
    parser.add_argument("--rounds", type=int, default=5, help="best of (default 5)")
    args = parser.parse_args()
    figures = measure(args.leads, args.rounds)
    width = max(map(len, figures))
    print(f"{'stage':<{width}}  µs CPU/lead  ({args.leads:,} leads, best of {args.rounds})")
    for stage, us in figures.items():
        print(f"{stage:<{width}}  {us:>11.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
