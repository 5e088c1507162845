"""``leadgate rules check``: a dry run of rule packs against one lead or a file of leads.

::

    leadgate rules check rules/default.yaml rules/b2b.yaml --lead lead.json
    leadgate rules check rules/fr-b2c.yaml --leads traffic.jsonl --config leadgate.yaml \\
        --campaign acme-always-on

Leads go through the gateway's own parsing and normalization (``parse_lead``) first, in a
campaign: ``--config`` with ``--campaign`` uses that campaign (its phone region, required and
identity fields, minimum score); ``--config`` alone uses each lead's own ``campaign`` field; no
``--config`` uses a stand-in campaign (phone region ``--region``, default FR, no required
field). The packs evaluated are the ones on the command line, not the campaign's own.

``--lead``: every rule's verdict, the score and the decision; exit 0 when the lead passes, 1
when the rules reject it or it is invalid (a 422 from the gateway). ``--leads``: a JSON lines
file; a table of how many leads fail each rule. Exit 2 for unreadable files or bad packs.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any, cast
from zoneinfo import ZoneInfo

import orjson

from gateway.config.load import load_config
from gateway.config.model import Campaign, CampaignKind, Config
from gateway.config.reader import Reader
from gateway.errors import ConfigError, InvalidLead, UsageError
from gateway.leads.lead import Lead
from gateway.leads.parse import parse_lead
from gateway.rules.model import Action, Rule, RuleSet, Verdict
from gateway.rules.pack import Pack, combine_packs, read_pack
from gateway.types import AdvertiserId, CampaignId

STAND_IN = CampaignId("rules-check")


def add_parser(sub: Any) -> None:
    """Register ``rules check`` on the ``leadgate`` sub-parsers."""
    p_rules = sub.add_parser("rules", help="quality rule packs: dry runs")
    rules_sub = p_rules.add_subparsers(dest="rules_command", required=True)
    p = rules_sub.add_parser(
        "check", help="evaluate rule packs on a lead (--lead) or a JSONL file (--leads)"
    )
    p.add_argument("packs", nargs="+", metavar="PACK.yaml", help="rule pack files, combined")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--lead", metavar="FILE", help="one lead as a JSON object")
    what.add_argument("--leads", metavar="FILE", help="leads as JSON lines: a summary table")
    p.add_argument("--config", help="config file whose campaign normalizes the leads")
    p.add_argument("--campaign", help="the campaign of --config to use (default: the lead's)")
    p.add_argument("--region", default="FR", help="phone region without --config (default FR)")
    p.add_argument("--min-score", type=float, help="minimum score (default: the campaign's)")
    p.add_argument("--channel", help="the channel rules see (default: the lead's)")
    p.add_argument("--partner", help="the partner id rules see (default: none)")
    p.add_argument(
        "--now", help="evaluate at this instant, ISO 8601 with offset (default: the clock)"
    )


@dataclass
class _Setup:
    packs: list[Pack]
    config: Config | None
    campaign: Campaign | None
    now_s: float
    min_score: float | None


def run(args: argparse.Namespace, out: IO[str], err: IO[str] | None = None) -> int:
    err = err or sys.stderr
    try:
        setup = _setup(args)
        if args.lead is not None:
            return _check_one(args, setup, out)
        return _check_many(args, setup, out)
    except UsageError as refused:
        print(f"leadgate rules: {refused}", file=err)
        return 2
    except ConfigError as error:
        print("leadgate rules: configuration error:", file=err)
        for issue in error.issues:
            print(f"  {issue}", file=err)
        return 2


def _setup(args: argparse.Namespace) -> _Setup:
    config = load_config(args.config) if args.config else None
    campaign = None
    if args.campaign is not None:
        if config is None:
            raise UsageError("--campaign needs --config")
        campaign = config.campaigns.get(CampaignId(args.campaign))
        if campaign is None:
            raise UsageError(f"no campaign {args.campaign!r} in {args.config}")
    elif config is None:
        campaign = Campaign(
            id=STAND_IN,
            advertiser=AdvertiserId(STAND_IN),
            name="stand-in for rules check",
            kind=CampaignKind.ALWAYS_ON,
            timezone=ZoneInfo("UTC"),
            required_fields=(),
            phone_region=args.region,
        )
    r = Reader()
    known = None if config is None else config.suppression_lists
    packs = [read_pack(r, Path(path), known_lists=known) for path in args.packs]
    if r.issues:
        raise ConfigError(r.issues)
    now_s = time.time() if args.now is None else _instant(args.now)
    min_score = args.min_score
    if min_score is None and campaign is not None:
        min_score = campaign.min_score
    return _Setup([p for p in packs if p is not None], config, campaign, now_s, min_score)


def _instant(text: str) -> float:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"--now {text!r} is not an ISO 8601 date-time") from None
    if moment.tzinfo is None:
        raise UsageError("--now needs a UTC offset (like Z or +01:00)")
    return moment.timestamp()


def _rule_set(setup: _Setup, campaign: Campaign) -> RuleSet | None:
    r = Reader()
    combined = combine_packs(
        r, [(pack.path, pack) for pack in setup.packs], default_country=campaign.phone_region,
        min_score=setup.min_score, min_score_path="--min-score",
    )  # fmt: skip
    if r.issues:
        raise ConfigError(r.issues)
    return combined.rule_set


def _parse(setup: _Setup, data: Mapping[str, object]) -> tuple[Lead, Campaign]:
    """The lead as the gateway reads it, in its campaign; raises ``InvalidLead``."""
    campaigns: Mapping[CampaignId, Campaign]
    if setup.campaign is not None:
        data = {**data, "campaign": setup.campaign.id}
        campaigns = {setup.campaign.id: setup.campaign}
    else:
        campaigns = setup.config.campaigns if setup.config is not None else {}
    lead = parse_lead(data, campaigns, now_s=setup.now_s)
    return lead, campaigns[lead.campaign]


def _read_json(path: str) -> object:
    try:
        return orjson.loads(Path(path).read_bytes())
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
    except orjson.JSONDecodeError as exc:
        raise UsageError(f"{path}: not JSON: {exc}") from None


def _verdict(
    rule_set: RuleSet | None, lead: Lead, args: argparse.Namespace, now_s: float
) -> Verdict | None:
    if rule_set is None:
        return None
    channel = args.channel or lead.channel
    return rule_set.evaluate(lead, now_s, channel=channel, partner=args.partner)


def _check_one(args: argparse.Namespace, setup: _Setup, out: IO[str]) -> int:
    data = _read_json(args.lead)
    if not isinstance(data, dict):
        raise UsageError(f"{args.lead}: expected a JSON object (one lead)")
    try:
        lead, campaign = _parse(setup, cast(dict[str, object], data))
    except InvalidLead as invalid:
        print("invalid lead: the gateway answers 422 before any rule runs", file=out)
        for problem in invalid.problems:
            print(f"  {problem.field}: {problem.message}", file=out)
        return 1
    rule_set = _rule_set(setup, campaign)
    if rule_set is None:
        print("no rule to evaluate (the packs hold only store-decided rules)", file=out)
        return 0
    held = rule_set.explain(
        lead, setup.now_s, channel=args.channel or lead.channel, partner=args.partner
    )
    rows = [("pack", "rule", "action", "result", "reason", "message")]
    rows += [(r.pack, r.id, _action(r), _result(r, ok), r.reason, r.message) for r, ok in held]
    _table(rows, out)
    verdict = _verdict(rule_set, lead, args, setup.now_s)
    assert verdict is not None
    if verdict.score is not None:
        minimum = "" if rule_set.min_score is None else f" (minimum {rule_set.min_score:g})"
        print(f"\nscore: {verdict.score}{minimum}", file=out)
    if verdict.rejected:
        print(f"\ndecision: rejected: {', '.join(verdict.reasons)}", file=out)
        return 1
    print("\ndecision: passes the rules (dedup and caps decide next)", file=out)
    return 0


def _action(rule: Rule) -> str:
    if rule.action is Action.SCORE:
        return f"score {rule.points:+d}"
    return rule.action.value


def _result(rule: Rule, held: bool) -> str:
    if rule.action is Action.SCORE:
        return f"{rule.points:+d}" if held else "0"
    failed = held if rule.action is Action.REJECT_IF else not held
    return "FAIL" if failed else "pass"


def _lines(path: str) -> Iterator[tuple[int, object]]:
    try:
        with open(path, "rb") as file:
            for number, line in enumerate(file, 1):
                if not line.strip():
                    continue
                try:
                    yield number, orjson.loads(line)
                except orjson.JSONDecodeError:
                    yield number, None
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None


def _check_many(args: argparse.Namespace, setup: _Setup, out: IO[str]) -> int:
    total = invalid = rejected = below = 0
    failing: Counter[tuple[str, str]] = Counter()
    scored: Counter[tuple[str, str]] = Counter()
    bad_fields: Counter[str] = Counter()
    scores: list[int] = []
    rules: dict[tuple[str, str], Rule] = {}
    sets: dict[CampaignId, RuleSet | None] = {}
    for _, data in _lines(args.leads):
        total += 1
        if not isinstance(data, dict):
            invalid += 1
            bad_fields["(not a JSON object)"] += 1
            continue
        try:
            lead, campaign = _parse(setup, cast(dict[str, object], data))
        except InvalidLead as error:
            invalid += 1
            bad_fields.update({p.field for p in error.problems})
            continue
        if campaign.id not in sets:
            sets[campaign.id] = _rule_set(setup, campaign)
        rule_set = sets[campaign.id]
        verdict = _verdict(rule_set, lead, args, setup.now_s)
        if rule_set is None or verdict is None:
            continue
        for rule in rule_set.rules:
            rules.setdefault((rule.pack, rule.id), rule)
        failing.update((rule.pack, rule.id) for rule in verdict.failed)
        scored.update((rule.pack, rule.id) for rule in verdict.scored)
        if verdict.score is not None:
            scores.append(verdict.score)
        rejected += verdict.rejected
        below += verdict.below_minimum
    valid = total - invalid
    print(
        f"leads: {total}  invalid (422): {invalid}  rejected by rules: {rejected}  "
        f"passing: {valid - rejected}",
        file=out,
    )
    rows = [("pack", "rule", "action", "leads", "share", "reason")]
    for key, rule in rules.items():
        count = scored[key] if rule.action is Action.SCORE else failing[key]
        share = f"{100 * count / valid:.1f}%" if valid else "-"
        what = "matched" if rule.action is Action.SCORE else "failed"
        rows.append(
            (rule.pack, rule.id, f"{_action(rule)} ({what})", str(count), share, rule.reason)
        )
    if len(rows) > 1:
        print(file=out)
        _table(rows, out)
    if scores:
        mean = sum(scores) / len(scores)
        print(
            f"\nscore: min {min(scores)}  mean {mean:.1f}  max {max(scores)}  "
            f"below the minimum: {below}",
            file=out,
        )
    if bad_fields:
        listed = ", ".join(f"{field} {n}" for field, n in bad_fields.most_common(10))
        print(f"\ninvalid leads by field: {listed}", file=out)
    return 0


def _table(rows: Sequence[tuple[str, ...]], out: IO[str]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        print("  ".join([*cells, row[-1]]).rstrip(), file=out)
