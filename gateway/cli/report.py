"""``leadgate report partners``: the partner report (``quality.report``) from Redis, or from a
running gateway's admin API (``--url``; needed with the embedded store)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from typing import TextIO

import aiohttp

from gateway.app.root import App
from gateway.app.settings import load_settings
from gateway.config.environment import Environment
from gateway.delivery import ops
from gateway.errors import StoreError
from gateway.quality import report


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("report", help="reports from the quality ledger")
    kinds = parser.add_subparsers(dest="report", required=True)
    partners = kinds.add_parser(
        "partners", help="partners ranked by net quality (volume, duplicates, returns, ...)"
    )
    partners.add_argument("--config", help="config file (default: $LEADGATE_CONFIG)")
    partners.add_argument(
        "--since", default=report.DEFAULT_SINCE,
        help="from: 7d, 24h, 90m, an ISO date or instant (default 7d; at most 400 days back)",
    )  # fmt: skip
    partners.add_argument("--campaign", help="only this campaign")
    partners.add_argument("--json", action="store_true", help="print JSON, not a table")
    partners.add_argument(
        "--url", help="read a running gateway's admin API (e.g. http://127.0.0.1:8080), "
        "with $LEADGATE_ADMIN_TOKEN; needed with the embedded store",
    )  # fmt: skip


async def run(args: argparse.Namespace, environ: Mapping[str, str], out: TextIO) -> int:
    """``leadgate report partners``; returns the exit status (1: the source did not answer,
    2: bad usage). Raises ``ConfigError``."""
    if args.url:
        body = await _from_admin_api(args, environ, out)
    else:
        body = await _from_redis(args, environ, out)
    if isinstance(body, int):
        return body
    if args.json:
        print(json.dumps(body, indent=2), file=out)
    else:
        print(report.title(body), file=out)
        print(report.format_table(report.rows_from_json(body)), file=out)
        buyers = report.format_buyers(report.buyers_from_json(body))
        if buyers:
            print(f"\n{buyers}", file=out)
    return 0


async def _from_redis(
    args: argparse.Namespace, environ: Mapping[str, str], out: TextIO
) -> dict[str, object] | int:
    settings = load_settings(environ, args.config)
    url = settings.environment.redis_url
    if not url:
        print(
            "leadgate: no LEADGATE_REDIS_URL: with the embedded store the figures live in the "
            "serving process; read them with --url http://HOST:PORT (and LEADGATE_ADMIN_TOKEN)",
            file=out,
        )
        return 2
    async with App(settings, environ=environ) as app:
        try:
            store = await app.open_store()
            return await report.report_json(
                store.ledger_read,
                settings.config,
                since=args.since,
                now_ms=ops.now_ms(),
                campaign=args.campaign,
            )
        except ValueError as bad:
            print(f"leadgate: {bad}", file=out)
            return 2
        except StoreError as error:
            print(f"leadgate: the store did not answer: {error}", file=out)
            return 1


async def _from_admin_api(
    args: argparse.Namespace, environ: Mapping[str, str], out: TextIO
) -> dict[str, object] | int:
    token = Environment.from_environ(environ).admin_token
    if token is None:
        print(
            "leadgate: --url needs the admin token: set LEADGATE_ADMIN_TOKEN or "
            "LEADGATE_ADMIN_TOKEN_FILE",
            file=out,
        )
        return 2
    params = {"since": args.since, **({"campaign": args.campaign} if args.campaign else {})}
    url = args.url.rstrip("/") + report.REPORT_PATH
    timeout = aiohttp.ClientTimeout(total=30)
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.get(
                url, params=params, headers={"Authorization": f"Bearer {token}"}
            ) as response,
        ):
            payload = await response.json(content_type=None)
            status = response.status
    except (aiohttp.ClientError, TimeoutError, ValueError) as error:
        print(f"leadgate: {url}: no report ({type(error).__name__}: {error})", file=out)
        return 1
    if status != 200 or not isinstance(payload, dict):
        print(f"leadgate: {url} answered {status}: {_problem(payload)}", file=out)
        # The request was wrong (a bad --since, an unknown campaign): as when reading Redis.
        return 2 if status in (400, 404, 422) else 1
    return payload


def _problem(payload: object) -> str:
    """What a problem+json answer says: its field errors, else its detail."""
    if not isinstance(payload, dict):
        return "not a report"
    errors = payload.get("errors")
    if isinstance(errors, list) and errors:
        return "; ".join(
            f"{e.get('field')}: {e.get('message')}" if isinstance(e, dict) else str(e)
            for e in errors
        )
    return str(payload.get("detail") or payload.get("title") or "not a report")
