"""``leadgate erase`` and ``leadgate suppress``: forgetting a person and suppression lists, on
Redis (the embedded store lives in the serving process: use its admin API there)."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path
from typing import TextIO

import orjson

from gateway.app.root import App
from gateway.app.settings import load_settings
from gateway.errors import InvalidValue
from gateway.leads.fingerprint import Fingerprinter
from gateway.privacy.erasure import Person
from gateway.privacy.suppression import describe, identity_keys, load_csv
from gateway.storage.base import SuppressionStore


def register_erase(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "erase",
        help="forget one person: dedup marks, contact pressure and queued leads (Redis)",
    )
    parser.add_argument("--config", help="config file (default: $LEADGATE_CONFIG)")
    parser.add_argument("--email", help="the person's email (any spelling the gateway accepts)")
    parser.add_argument("--phone", help="the person's phone (E.164, or national with --region)")
    parser.add_argument("--region", default="FR", help="region of a phone without +CC (FR)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


async def run_erase(args: argparse.Namespace, environ: Mapping[str, str], out: TextIO) -> int:
    """``leadgate erase …``; returns the exit status. Raises ``ConfigError``."""
    settings = load_settings(environ, args.config)
    url = settings.environment.redis_url
    if not url:
        print(
            "leadgate: the embedded store lives in the serving process: erase through its "
            "admin API (DELETE /v1/admin/identities), or set LEADGATE_REDIS_URL",
            file=out,
        )
        return 2
    try:
        person = Person.parse(args.email, args.phone, args.region)
    except InvalidValue as bad:
        print(f"leadgate: {bad}", file=out)
        return 2
    async with App(settings, environ=environ) as app:
        await app.open_store()
        report = await app.eraser(app.open_queue()).erase(person)
    if args.json:
        print(orjson.dumps(report.to_json()).decode(), file=out)
    else:
        for line in report.lines():
            print(line, file=out)
    return 0


def register_suppress(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "suppress", help="fill suppression lists (opt-outs, customers) in Redis"
    )
    verbs = parser.add_subparsers(dest="verb", required=True)
    for name, what in (
        ("load", "put every email/phone of a CSV file (header: email,phone) on a list"),
        ("unload", "take every email/phone of a CSV file off a list"),
        ("add", "put one person on a list"),
        ("remove", "take one person off a list"),
        ("size", "how many identities a list holds"),
    ):
        verb = verbs.add_parser(name, help=what)
        verb.add_argument("--config", help="config file (default: $LEADGATE_CONFIG)")
        verb.add_argument("--list", required=True, dest="list_id", help="a configured list id")
        if name in ("load", "unload"):
            verb.add_argument("file", type=Path)
        if name in ("add", "remove"):
            verb.add_argument("--email")
            verb.add_argument("--phone")
        if name != "size":
            verb.add_argument(
                "--region", default="FR", help="region of phones without +CC (default FR)"
            )


async def run_suppress(args: argparse.Namespace, environ: Mapping[str, str], out: TextIO) -> int:
    """``leadgate suppress …``; returns the exit status. Raises ``ConfigError``."""
    settings = load_settings(environ, args.config)
    if args.list_id not in settings.config.suppression_lists:
        known = ", ".join(settings.config.suppression_lists) or "none"
        print(f"leadgate: unknown suppression list {args.list_id!r} (known: {known})", file=out)
        return 2
    url = settings.environment.redis_url
    if not url:
        print(
            "leadgate: suppression lists live in Redis: set LEADGATE_REDIS_URL (and the "
            "gateway's LEADGATE_FINGERPRINT_KEY); the embedded store lives in one process",
            file=out,
        )
        return 2
    async with App(settings, environ=environ) as app:
        store = await app.open_store()
        return await _suppress(args, app.fingerprinter, store, out)


async def _suppress(
    args: argparse.Namespace, fingerprinter: Fingerprinter, store: SuppressionStore, out: TextIO
) -> int:
    if args.verb == "size":
        print(await store.suppression_size(args.list_id), file=out)
        return 0
    remove = args.verb in ("unload", "remove")
    if args.verb in ("load", "unload"):
        try:
            report = await load_csv(
                store, fingerprinter, args.list_id, args.file, region=args.region, remove=remove
            )
        except (OSError, ValueError, UnicodeDecodeError) as bad:
            print(f"leadgate: {args.file}: {bad}", file=out)
            return 2
        for line in describe(report, args.list_id, remove=remove):
            print(line, file=out)
        return 0
    if not (args.email or args.phone):
        print("leadgate: give --email and/or --phone", file=out)
        return 2
    try:
        found = identity_keys(
            fingerprinter, email=args.email, phone=args.phone, region=args.region,
            every_key=remove,
        )  # fmt: skip
    except ValueError as bad:
        print(f"leadgate: {bad}", file=out)
        return 2
    changed = await store.suppression_change(args.list_id, found, add=not remove)
    verb = "taken off" if remove else "put on"
    print(f"{args.list_id!r}: {changed} identities {verb} (others were already)", file=out)
    return 0
