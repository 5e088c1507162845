"""``leadgate report partners``: the figures from known counts, the ranking, ``--since``, and
the command end to end on a real Redis and through a gateway's admin API."""

from __future__ import annotations

import argparse
import hashlib
import io
import json
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import yaml
from aiohttp import web
from aiohttp.test_utils import TestServer

from gateway.cli import report as report_cli
from gateway.config.load import parse_config
from gateway.config.model import Config
from gateway.delivery import ops
from gateway.quality import report
from gateway.quality.ledger import QualityLedger, day_of
from gateway.quality.report import PartnerRow, days_between, format_table, parse_since, summarize
from gateway.storage.memory import MemoryStore
from gateway.storage.redis import RedisStore


def utc_ms(year: int, month: int, day: int, hour: int = 0) -> int:
    return int(datetime(year, month, day, hour, tzinfo=UTC).timestamp() * 1000)


NOW_MS = utc_ms(2026, 11, 22, 12)
DAY_MS = 86_400_000
TOKEN = "report-tests-admin-token-0123456789abcdef"


def config_data() -> dict[str, Any]:
    campaign = {"advertiser": "acme", "kind": "always_on", "identity": ["email"]}
    return {
        "channels": [{"id": "email"}],
        "advertisers": [{"id": "acme"}],
        "campaigns": [
            {"id": "paid", "cpl": 10, **campaign},
            {"id": "cheap", "cpl": 2.5, **campaign},
            {"id": "free", **campaign},
        ],
        "partners": [
            {
                "id": pid,
                "api_keys": ["sha256:" + hashlib.sha256(pid.encode()).hexdigest()],
                "channels": ["email"],
                "campaigns": campaigns,
            }
            for pid, campaigns in (
                ("alpha", ["paid", "cheap", "free"]),
                ("bravo", ["paid"]),
                ("charlie", ["paid", "free"]),
                ("quiet", ["free"]),
                ("silent", ["cheap"]),
            )
        ],
    }


def config() -> Config:
    return parse_config(config_data())


def counts(**by_partner: Mapping[str, int]) -> dict[str, int]:
    """``alpha={"paid|posted": 3}`` -> ``{"alpha|paid|posted": 3}``."""
    return {f"{p}|{name}": n for p, fields in by_partner.items() for name, n in fields.items()}


#: Two days of known counts.
DAY1 = counts(
    alpha={
        "paid|posted": 60, "paid|accepted": 40, "paid|duplicate": 10, "paid|capped": 5,
        "paid|rejected": 5, "paid|converted": 8, "paid|returned": 4, "paid|adv_rejected": 2,
        "free|posted": 20, "free|accepted": 20, "free|converted": 10,
    },
    bravo={"paid|posted": 10, "paid|accepted": 10, "paid|returned": 5},
)  # fmt: skip
DAY2 = counts(
    alpha={"cheap|posted": 20, "cheap|accepted": 20, "cheap|converted": 2},
    charlie={"paid|posted": 10, "paid|accepted": 10, "paid|adv_rejected": 5},
    former={"paid|posted": 4, "paid|accepted": 4},  # a partner no longer configured
)


def row(rows: Sequence[PartnerRow], partner: str) -> PartnerRow:
    (found,) = [r for r in rows if r.partner == partner]
    return found


def test_the_figures_from_known_counts() -> None:
    rows = summarize({"2026-11-21": DAY1, "2026-11-22": DAY2}, config())
    alpha = row(rows, "alpha")
    assert (alpha.posted, alpha.accepted, alpha.duplicate, alpha.capped, alpha.rejected) == (
        100,
        80,
        10,
        5,
        5,
    )
    assert (alpha.converted, alpha.returned, alpha.adv_rejected) == (20, 4, 2)
    assert alpha.duplicate_rate == pytest.approx(0.10)
    assert alpha.capped_rate == pytest.approx(0.05)
    assert alpha.rejection_rate == pytest.approx(0.05)
    assert alpha.return_rate == pytest.approx(4 / 80)
    assert alpha.conversion_rate == pytest.approx(20 / 80)
    # Paid for: 40 x 10 (paid) + 20 x 2.5 (cheap) = 450 over their 8 + 2 conversions; the
    # free campaign's 10 conversions cost nothing and are not in the denominator.
    assert alpha.cost_per_conversion == pytest.approx(45.0)
    assert alpha.net_quality == pytest.approx((80 - 4 - 2) / 100)
    bravo = row(rows, "bravo")
    assert bravo.cost_per_conversion is None  # no conversion
    assert bravo.net_quality == pytest.approx(0.5)
    assert row(rows, "former").posted == 4  # traffic in the range is shown, config or not


def test_ranked_by_net_quality_then_conversion_then_id_and_idle_partners_last() -> None:
    tie = counts(
        bravo={"paid|posted": 10, "paid|accepted": 10, "paid|converted": 1},
        charlie={"paid|posted": 10, "paid|accepted": 10, "paid|converted": 3},
        former={"paid|posted": 10, "paid|accepted": 10, "paid|converted": 3},
        alpha={"paid|posted": 10, "paid|accepted": 5},
    )
    rows = summarize({"2026-11-22": tie}, config())
    assert [r.partner for r in rows] == ["charlie", "former", "bravo", "alpha", "quiet", "silent"]
    assert row(rows, "quiet") == PartnerRow("quiet")  # zeros


def test_one_campaign() -> None:
    rows = summarize({"d1": DAY1, "d2": DAY2}, config(), campaign="paid")
    # bravo and charlie tie at 0.5 with no conversion: by id.
    assert [r.partner for r in rows] == ["former", "alpha", "bravo", "charlie"]
    alpha = row(rows, "alpha")
    assert (alpha.posted, alpha.converted, alpha.cost_per_conversion) == (60, 8, 50.0)
    # Configured for "free" only: not listed, even with zeros.
    assert "quiet" not in [r.partner for r in summarize({}, config(), campaign="paid")]


@pytest.mark.parametrize(
    ("text", "expected_ms"),
    [
        ("7d", NOW_MS - 7 * DAY_MS),
        ("24h", NOW_MS - DAY_MS),
        ("90m", NOW_MS - 90 * 60_000),
        ("2026-11-01", utc_ms(2026, 11, 1)),
        ("2026-11-20T10:00:00+01:00", utc_ms(2026, 11, 20, 9)),
        (str(NOW_MS - 5), NOW_MS - 5),
        ("400d", NOW_MS - 400 * DAY_MS),
    ],
)  # fmt: skip
def test_since_accepts(text: str, expected_ms: int) -> None:
    assert parse_since(text, NOW_MS) == expected_ms


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("401d", "more than 400 days back"),
        ("2025-01-01", "more than 400 days back"),
        ("2026-12-01", "in the future"),
        ("2026-02-30", "not a date"),
        ("last week", "is not a time"),
        ("2026-11-20T10:00:00", "no UTC offset"),
    ],
)
def test_since_refuses(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        parse_since(text, NOW_MS)


def test_a_range_is_widened_to_whole_utc_days() -> None:
    assert days_between(NOW_MS - 90 * 60_000, NOW_MS) == ["2026-11-22"]
    assert days_between(NOW_MS - 13 * 3_600_000, NOW_MS) == ["2026-11-21", "2026-11-22"]
    assert len(days_between(parse_since("7d", NOW_MS), NOW_MS)) == 8


def test_the_table_aligns_columns_and_shows_percentages() -> None:
    rows = summarize({"2026-11-22": DAY1}, config())
    lines = format_table(rows).splitlines()
    assert lines[0].split() == [
        "partner", "posted", "accepted", "dup", "capped", "rejected", "returned", "converted",
        "cost/conv", "net", "quality", "revenue", "payout", "margin",
    ]  # fmt: skip
    assert lines[1].split() == [
        "alpha", "80", "60", "12.5%", "6.2%", "6.2%", "6.7%", "30.0%", "50.00", "67.5%",
        "400.00", "0.00", "400.00",
    ]  # fmt: skip
    assert lines[2].split()[0] == "bravo"
    assert lines[-1].split() == [
        "silent", "0", "0", *["0.0%"] * 5, "-", "0.0%", "0.00", "0.00", "0.00"
    ]  # fmt: skip
    assert len({len(line) for line in lines}) == 1  # right-aligned up to the last column
    assert format_table([]) == "(no partners)"


# --- the command ------------------------------------------------------------------------------


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="leadgate")
    report_cli.register(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["report", "partners", *argv])


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "leadgate.yaml"
    path.write_text(yaml.safe_dump(config_data()))
    return path


async def run(environ: Mapping[str, str], *argv: str) -> tuple[int, str]:
    out = io.StringIO()
    status = await report_cli.run(parse(*argv), environ, out)
    return status, out.getvalue()


async def seed(store: RedisStore | MemoryStore) -> list[str]:
    """DAY1 two days ago, DAY2 today (the command reads the real clock)."""
    now = ops.now_ms()
    days = [day_of(now - 2 * DAY_MS), day_of(now)]
    await store.ledger_add({days[0]: DAY1, days[1]: DAY2})
    await store.ledger_add({day_of(now - 30 * DAY_MS): counts(bravo={"paid|posted": 999})})
    return days


async def test_the_command_prints_the_ranked_table_from_redis(
    redis_url: str, config_file: Path
) -> None:
    store = RedisStore(redis_url)
    try:
        await seed(store)
    finally:
        await store.close()
    environ = {"LEADGATE_CONFIG": str(config_file), "LEADGATE_REDIS_URL": redis_url}
    status, out = await run(environ, "--since", "7d")
    assert status == 0, out
    lines = out.splitlines()
    assert lines[0].startswith("partners by net quality, UTC days ")
    table = {line.split()[0]: line.split()[1:] for line in lines[2:]}
    assert list(table) == ["former", "alpha", "bravo", "charlie", "quiet", "silent"]
    assert table["former"][:2] == ["4", "4"]  # 4 posted, 4 accepted
    assert table["alpha"] == [
        "100", "80", "10.0%", "5.0%", "5.0%", "5.0%", "25.0%", "45.00", "74.0%", "450.00", "0.00",
        "450.00",
    ]  # fmt: skip
    assert table["bravo"][0] == "10"  # the 999 posted 30 days ago are out of range

    status, out = await run(environ, "--since", "7d", "--campaign", "paid", "--json")
    assert status == 0, out
    body = json.loads(out)
    assert body["campaign"] == "paid"
    alpha = body["partners"][1]
    assert (alpha["partner"], alpha["posted"], alpha["net_quality"]) == ("alpha", 60, 0.5667)
    assert alpha["cost_per_conversion"] == 50.0

    status, out = await run(environ, "--since", "31d")
    assert status == 0
    table = {line.split()[0]: line.split()[1:] for line in out.splitlines()[2:]}
    assert table["bravo"][0] == "1009"
    assert list(table)[-3:] == ["bravo", "quiet", "silent"]


async def test_the_command_refuses_bad_input_and_an_absent_store(
    redis_url: str, config_file: Path
) -> None:
    environ = {"LEADGATE_CONFIG": str(config_file), "LEADGATE_REDIS_URL": redis_url}
    assert await run(environ, "--since", "500d") == (
        2,
        "leadgate: '500d' is more than 400 days back\n",
    )
    status, out = await run(environ, "--campaign", "nope")
    assert (status, out) == (2, "leadgate: campaign 'nope' is not in the config\n")
    status, out = await run({"LEADGATE_CONFIG": str(config_file)})
    assert status == 2
    assert "embedded store" in out
    assert "--url" in out


async def test_the_command_says_so_when_redis_is_down(config_file: Path, tmp_path: Path) -> None:
    environ = {
        "LEADGATE_CONFIG": str(config_file),
        "LEADGATE_REDIS_URL": f"unix://{tmp_path}/nobody.sock",
    }
    status, out = await run(environ)
    assert status == 1
    assert out.startswith("leadgate: the store did not answer")


# --- through a running gateway's admin API ------------------------------------------------


@pytest_asyncio.fixture
async def gateway() -> AsyncIterator[tuple[str, MemoryStore]]:
    """A server answering the report route as the admin API does (``report_json`` over an
    embedded store's ledger, the Bearer check, problem+json), without a whole gateway."""
    store = MemoryStore()
    ledger = QualityLedger(store)
    cfg = config()

    async def partners(request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return web.json_response({"detail": "unauthorized"}, status=401)
        query = request.rel_url.query
        try:
            body = await report.report_json(
                ledger.read,
                cfg,
                since=query.get("since", "7d"),
                now_ms=ops.now_ms(),
                campaign=query.get("campaign"),
            )
        except ValueError as error:  # as the admin API answers it: problem+json, 422
            problem = {
                "title": "Invalid request",
                "detail": "1 invalid field(s): since",
                "errors": [{"field": "since", "message": str(error)}],
            }
            return web.json_response(problem, status=422)
        return web.json_response(body)

    app = web.Application()
    app.router.add_get(report.REPORT_PATH, partners)
    server = TestServer(app)
    await server.start_server()
    try:
        yield str(server.make_url("")), store
    finally:
        await server.close()


async def test_url_reads_a_running_gateway(gateway: tuple[str, MemoryStore]) -> None:
    url, store = gateway
    await seed(store)
    environ = {"LEADGATE_ADMIN_TOKEN": TOKEN}
    status, out = await run(environ, "--url", url)
    assert status == 0, out
    assert [line.split()[0] for line in out.splitlines()[2:]][:2] == ["former", "alpha"]

    status, out = await run(environ, "--url", url, "--json", "--campaign", "paid")
    assert status == 0, out
    assert json.loads(out)["partners"][0]["partner"] == "former"

    assert await run(environ, "--url", url, "--since", "2030-01-01") == (
        2,
        f"leadgate: {url}{report.REPORT_PATH} answered 422: since: '2030-01-01' is in the future\n",
    )
    wrong = {"LEADGATE_ADMIN_TOKEN": "x" * 40}
    status, out = await run(wrong, "--url", url)
    assert (status, "answered 401: unauthorized" in out) == (1, True)
    assert "x" * 40 not in out
    status, out = await run({}, "--url", url)
    assert (status, "LEADGATE_ADMIN_TOKEN" in out) == (2, True)


async def test_url_without_a_gateway_listening(tmp_path: Path) -> None:
    from support import free_port

    status, out = await run(
        {"LEADGATE_ADMIN_TOKEN": TOKEN}, "--url", f"http://127.0.0.1:{free_port()}"
    )
    assert status == 1
    assert "no report" in out


# --- money: revenue, payout, margin per partner and per buyer ---------------------------------


def sold_config() -> Config:
    data = config_data()
    data["advertisers"] += [{"id": "b1"}, {"id": "b2"}]
    data["campaigns"].append(
        {
            "id": "sold",
            "kind": "always_on",
            "distribution": "shared",
            "max_buyers": 2,
            "payout": 5,
            "buyers": [{"advertiser": "b1", "price": 12}, {"advertiser": "b2", "price": 8}],
        }
    )
    data["partners"][0]["campaigns"].append("sold")
    return parse_config(data)


#: alpha: 10 leads posted to the shared campaign, 6 sold (4 to both buyers, 2 to b1 only):
#: 10 sales; paid 5 per lead sold. b2 returned one of its sales, b1 converted two of its own.
SOLD_DAY = counts(
    alpha={
        "sold|posted": 10, "sold|accepted": 6, "sold|duplicate": 4,
        "sold|sold|b1": 6, "sold|revenue_cents|b1": 7200, "sold|payout_cents|b1": 2000,
        "sold|sold|b2": 4, "sold|revenue_cents|b2": 3200, "sold|payout_cents|b2": 1000,
        "sold|returned": 1, "sold|returned|b2": 1,
        "sold|converted": 2, "sold|converted|b1": 2,
        "paid|posted": 10, "paid|accepted": 10, "paid|payout_cents": 3000,
    },
)  # fmt: skip


def test_revenue_payout_and_margin_per_partner() -> None:
    alpha = row(summarize({"2026-11-22": SOLD_DAY}, sold_config()), "alpha")
    # Revenue: the buyers' prices (72 + 32) and the paid campaign's cpl (10 x 10).
    assert alpha.revenue == pytest.approx(204.0)
    assert alpha.payout == pytest.approx(60.0)  # 30 + 20 + 10
    assert alpha.margin == pytest.approx(144.0)
    # 10 sales of the shared campaign and 10 leads of the paid one: rates are per sale.
    assert alpha.sales == 20
    assert alpha.return_rate == pytest.approx(1 / 20)
    assert alpha.conversion_rate == pytest.approx(2 / 20)
    assert alpha.net_quality == pytest.approx(16 / 20 * (1 - 1 / 20))


def test_a_row_per_buyer_with_its_own_returns_and_conversions() -> None:
    b1, b2 = report.summarize_buyers({"2026-11-22": SOLD_DAY})
    assert (b1.buyer, b1.sold, b1.revenue, b1.payout, b1.margin) == ("b1", 6, 72.0, 20.0, 52.0)
    assert (b1.converted, b1.returned) == (2, 0)
    assert b1.conversion_rate == pytest.approx(2 / 6)
    assert (b2.buyer, b2.sold, b2.revenue, b2.margin) == ("b2", 4, 32.0, 22.0)
    assert b2.returned == 1
    assert b2.return_rate == pytest.approx(1 / 4)
    table = report.format_buyers([b1, b2]).splitlines()
    assert table[1].split() == [
        "buyer", "sold", "revenue", "payout", "margin", "returned", "converted"
    ]  # fmt: skip
    assert table[2].split() == ["b1", "6", "72.00", "20.00", "52.00", "0.0%", "33.3%"]
    assert report.summarize_buyers({"2026-11-22": SOLD_DAY}, campaign="paid") == []


async def test_the_ledger_counts_sales_per_buyer_and_the_payout_once_per_lead() -> None:
    from gateway.decision.answer import Answer, Sale
    from gateway.decision.model import Decision
    from gateway.types import AdvertiserId, CampaignId, ChannelId, LeadId

    store = MemoryStore()
    ledger = QualityLedger(store)
    partner = sold_config().partners[next(iter(sold_config().partners))]
    sold = Answer(
        LeadId("l1"), Decision.ACCEPTED, (), None, CampaignId("sold"), ChannelId("email"),
        False, sales=(Sale(AdvertiserId("b1"), 12.0), Sale(AdvertiserId("b2"), 8.0)), payout=5.0,
    )  # fmt: skip
    unsold = Answer(
        LeadId("l2"), Decision.DUPLICATE, ("buyer.duplicate",), None, CampaignId("sold"),
        ChannelId("email"), False, sales=(), payout=5.0,
    )  # fmt: skip
    ledger.decided(partner, [sold, unsold], 0.001, NOW_MS / 1000)
    ledger.feedback("alpha", "sold", "returned", NOW_MS, buyer="b2")
    day = (await ledger.read([day_of(NOW_MS)]))[day_of(NOW_MS)]
    assert day == {
        "alpha|sold|posted": 2,
        "alpha|sold|accepted": 1,
        "alpha|sold|duplicate": 1,
        "alpha|sold|sold|b1": 1,
        "alpha|sold|revenue_cents|b1": 1200,
        "alpha|sold|payout_cents|b1": 250,
        "alpha|sold|sold|b2": 1,
        "alpha|sold|revenue_cents|b2": 800,
        "alpha|sold|payout_cents|b2": 250,
        "alpha|sold|returned": 1,
        "alpha|sold|returned|b2": 1,
    }


async def test_the_command_prints_the_buyers_table(redis_url: str, tmp_path: Path) -> None:
    path = tmp_path / "sold.yaml"
    data = config_data()
    data["advertisers"] += [{"id": "b1"}, {"id": "b2"}]
    data["campaigns"].append(
        {
            "id": "sold",
            "kind": "always_on",
            "distribution": "shared",
            "max_buyers": 2,
            "payout": 5,
            "buyers": [{"advertiser": "b1", "price": 12}, {"advertiser": "b2", "price": 8}],
        }
    )
    data["partners"][0]["campaigns"].append("sold")
    path.write_text(yaml.safe_dump(data))
    store = RedisStore(redis_url)
    try:
        await store.ledger_add({day_of(ops.now_ms()): SOLD_DAY})
    finally:
        await store.close()
    environ = {"LEADGATE_CONFIG": str(path), "LEADGATE_REDIS_URL": redis_url}

    status, out = await run(environ, "--since", "1d")

    assert status == 0, out
    lines = out.splitlines()
    at = lines.index("buyers of distributed campaigns")
    assert lines[at + 2].split() == ["b1", "6", "72.00", "20.00", "52.00", "0.0%", "33.3%"]
    assert lines[at + 3].split() == ["b2", "4", "32.00", "10.00", "22.00", "25.0%", "0.0%"]
    alpha = next(line for line in lines if line.startswith("alpha"))
    assert alpha.split()[-3:] == ["204.00", "60.00", "144.00"]  # revenue, payout, margin
