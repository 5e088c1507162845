"""``leadgate worker`` (``app.worker``) and ``leadgate deliveries list|replay|enable``.

The ``deliveries`` commands work on Redis (the embedded store lives in the memory of the
process that serves; use the admin API there). They print ids, codes and counts only.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Mapping
from typing import TextIO

from gateway.app.root import App
from gateway.app.settings import Settings, load_settings, start_logging
from gateway.app.worker import DEFAULT_METRICS_PORT, run_worker
from gateway.delivery import ops
from gateway.delivery.queue_base import Queue
from gateway.errors import ConfigError, ConfigIssue, StoreError
from gateway.types import AdvertiserId, LeadId


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p_worker = sub.add_parser("worker", help="deliver accepted leads to advertisers' CRMs")
    p_worker.add_argument("--config", help="config file (default: $LEADGATE_CONFIG)")
    p_worker.add_argument(
        "--metrics-port", type=int, default=DEFAULT_METRICS_PORT,
        help=f"port of /metrics and /healthz (default {DEFAULT_METRICS_PORT}; 0: none)",
    )  # fmt: skip
    p_worker.add_argument(
        "--metrics-host", help="address of /metrics (default: $LEADGATE_HOST or 127.0.0.1)"
    )

    p_dlv = sub.add_parser("deliveries", help="inspect and replay deliveries (on Redis)")
    p_dlv.add_argument("--config", help="config file (default: $LEADGATE_CONFIG)")
    actions = p_dlv.add_subparsers(dest="action", required=True)
    p_list = actions.add_parser("list", help="dead letters, or leads waiting for a retry")
    p_list.add_argument("--advertiser", help="only this advertiser")
    p_list.add_argument("--dead", action="store_true", help="dead letters (default: retries)")
    p_list.add_argument("--since", help="dead-lettered since: 2h, 1d, an ISO instant, epoch ms")
    p_list.add_argument("--limit", type=int, default=100, help="rows per advertiser (100)")
    p_replay = actions.add_parser("replay", help="put dead letters back in the queue")
    which = p_replay.add_mutually_exclusive_group(required=True)
    which.add_argument("--lead", help="one lead, by its id")
    which.add_argument("--since", help="every dead letter since: 2h, 1d, an ISO instant")
    p_replay.add_argument("--advertiser", help="the advertiser (required with --since)")
    p_enable = actions.add_parser("enable", help="re-enable an endpoint disabled by a 410")
    p_enable.add_argument("--advertiser", required=True)


def dispatch(args: argparse.Namespace) -> int | None:
    """Run the command if it is one of ours; ``None`` otherwise."""
    if args.command == "worker":
        settings = load_settings(os.environ, args.config)
        start_logging(settings, os.environ)
        return asyncio.run(run_worker(settings, args.metrics_host, args.metrics_port))
    if args.command == "deliveries":
        return asyncio.run(run_deliveries(args, os.environ, sys.stdout))
    return None


# --- deliveries list | replay | enable ----------------------------------------------------


def _advertisers(settings: Settings, only: str | None) -> list[AdvertiserId]:
    known = list(settings.config.advertisers)
    if only is None:
        return known
    if only not in known:
        raise ConfigError([ConfigIssue("--advertiser", f"{only!r} is not in the config")])
    return [AdvertiserId(only)]


def _since(text: str | None) -> int:
    if text is None:
        return 0
    try:
        return ops.parse_since(text)
    except ValueError as error:
        raise ConfigError([ConfigIssue("--since", str(error))]) from None


def _table(rows: list[dict[str, object]], columns: list[str], out: TextIO) -> None:
    cells = [[("-" if r[c] is None or r[c] == "" else str(r[c])) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip(), file=out)
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip(), file=out)


async def run_deliveries(args: argparse.Namespace, environ: Mapping[str, str], out: TextIO) -> int:
    settings = load_settings(environ, args.config)
    async with App(settings, environ=environ) as app:
        try:
            return await _deliveries(args, settings, app.open_queue(), out)
        except StoreError as error:
            print(f"leadgate: the delivery queue is unavailable: {error}", file=sys.stderr)
            return 1


async def _deliveries(
    args: argparse.Namespace, settings: Settings, queue: Queue, out: TextIO
) -> int:
    now = ops.now_ms()
    if args.action == "enable":
        (advertiser,) = _advertisers(settings, args.advertiser)
        if await queue.enable(advertiser):
            print(f"{advertiser}: endpoint enabled; waiting leads are delivered again", file=out)
        else:
            print(f"{advertiser}: endpoint was not disabled", file=out)
        return 0
    if args.action == "replay":
        if args.lead is not None:
            advertisers = _advertisers(settings, args.advertiser)
            entry = await ops.find_dead(queue, advertisers, LeadId(args.lead))
            if entry is None:
                print(f"no dead letter for lead {args.lead}", file=sys.stderr)
                return 1
            moved = await queue.replay(entry.advertiser, [entry], now)
            print(f"replayed {moved} lead(s) of {entry.advertiser}", file=out)
            return 0
        if args.advertiser is None:
            raise ConfigError([ConfigIssue("--advertiser", "required with --since")])
        (advertiser,) = _advertisers(settings, args.advertiser)
        moved = await ops.replay_since(queue, advertiser, _since(args.since))
        print(f"replayed {moved} lead(s) of {advertiser}", file=out)
        return 0
    # list
    since = _since(args.since)
    rows: list[dict[str, object]] = []
    for advertiser in _advertisers(settings, args.advertiser):
        if args.dead:
            found = await ops.dead_letters(queue, advertiser, since, args.limit)
            rows += [ops.dead_row(e, now) for e in found]
            continue
        state = await queue.state(advertiser)
        disabled = ", ENDPOINT DISABLED (410): see `deliveries enable`" if state.disabled else ""
        print(
            f"{advertiser}: {state.depth} undelivered ({state.delayed} waiting for a retry), "
            f"oldest {state.oldest_age_s(now):.0f}s, {state.dead_letters} dead letter(s)"
            f"{disabled}",
            file=out,
        )
        delayed = await queue.delayed_leads(advertiser, args.limit)
        rows += [ops.delayed_row(e, now) for e in delayed]
    if args.dead:
        columns = ["lead_id", "advertiser", "campaign", "partner", "age", "attempts", "reason",
                   "status", "detail"]  # fmt: skip
    else:
        columns = ["lead_id", "advertiser", "campaign", "partner", "age", "attempts",
                   "next_attempt_in_s", "status", "detail"]  # fmt: skip
    if not rows:
        print("no dead letters" if args.dead else "no lead waiting for a retry", file=out)
        return 0
    if not args.dead:
        print(file=out)
    _table(rows, columns, out)
    return 0
