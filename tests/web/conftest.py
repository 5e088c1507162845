"""A gateway on a real socket, over either decision store, with an injected clock.

``make_gateway`` builds ``create_app(App(...))`` (the composition root, as ``leadgate serve``
does) from a config dict (``network()``, a small
network whose every campaign exists for one behaviour) or from ``examples/leadgate.yaml``, on
the parametrized ``store`` fixture: every behavioural test runs on the embedded store and on a
real Redis. ``make_embedded_gateway`` is the same on the embedded store only, for tests about
the HTTP transport itself (auth, media types, sizes), which never reach the store.

Requests go through ``aiohttp.test_utils.TestClient`` to a ``TestServer`` started like the CLI
starts the real server (no access log: it would write query strings, i.e. personal data).
"""

from __future__ import annotations

import copy
import hashlib
import itertools
from collections.abc import AsyncIterator, Awaitable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol
from zoneinfo import ZoneInfo

import orjson
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from multidict import CIMultiDictProxy
from support import StoreView

from gateway.app.root import App
from gateway.app.settings import Settings
from gateway.config.environment import Environment
from gateway.config.load import load_config, parse_config
from gateway.config.model import Config
from gateway.decision.intake import Intake
from gateway.delivery.memqueue import MemoryQueue
from gateway.delivery.queue import RedisQueue
from gateway.delivery.queue_base import Queue
from gateway.observe.metrics import Observer
from gateway.storage.base import Store
from gateway.storage.memory import MemoryStore
from gateway.types import FingerprintKey
from gateway.web.app import create_app, create_ops_app

EXAMPLE_CONFIG = Path(__file__).resolve().parents[2] / "examples" / "leadgate.yaml"
#: The demo keys published at the top of the example config.
EXAMPLE_KEYS = {
    "p-mailfox": "demo-mailfox-key",
    "p-coregia": "demo-coregia-key",
    "p-cashmoon": "demo-cashmoon-key",
    "p-compario": "demo-compario-key",
}
#: The API keys of ``network()``'s partners.
NETWORK_KEYS = {
    "p-mail": "test-key-mail",
    "p-coreg": "test-key-coreg",
    "p-cash": "test-key-cash",
    "p-comp": "test-key-comp",
}
PARIS = ZoneInfo("Europe/Paris")
#: The default injected instant: Friday 2026-11-20 10:00 in Paris, inside every peak window of
#: ``network()`` and the example config (Black Friday opens 2026-11-01).
T0 = datetime(2026, 11, 20, 10, 0, tzinfo=PARIS).timestamp()
DAY_S = 86_400.0
#: Fingerprint secret of the tests (fingerprints are keyed; any 16+ bytes do); a sha256 key,
#: as new deployments have, so hashed checks and pings can be matched.
FINGERPRINT_KEY = FingerprintKey("t1", b"leadgate-tests-fingerprint-key-0", "sha256")
ADMIN_TOKEN = "admin-token-of-the-tests-0123456789"

ConfigSource = Mapping[str, Any] | Path


def key_hash(api_key: str) -> str:
    return "sha256:" + hashlib.sha256(api_key.encode()).hexdigest()


def network() -> dict[str, Any]:
    """A fresh copy of the test network (tests may change it before building a gateway).

    - ``acme-always-on``: acme, dedup advertiser-wide 30 d, 7 d for leads through cashback.
    - ``acme-peak``: acme's peak operation for November 2026, dedup advertiser-wide 30 d.
    - ``acme-summer``: a peak operation that ended on 2026-08-31.
    - ``nova-daily``: another advertiser, New York time, at most 2 leads per calendar day.
    - ``nova-ten``: at most 10 leads per day, nobody twice within 30 d.
    Partners: ``p-mail`` (email), ``p-coreg`` (coreg), ``p-cash`` (cashback), ``p-comp``
    (comparator, site); all may post everywhere, except ``p-comp`` to ``acme-peak``.
    """
    campaigns = ["acme-always-on", "acme-peak", "acme-summer", "nova-daily", "nova-ten"]
    return copy.deepcopy(
        {
            "channels": [{"id": c} for c in ("email", "coreg", "cashback", "comparator", "site")],
            "advertisers": [{"id": "acme"}, {"id": "nova"}],
            "campaigns": [
                {
                    "id": "acme-always-on",
                    "advertiser": "acme",
                    "kind": "always_on",
                    "timezone": "Europe/Paris",
                    "dedup": [
                        {"scope": "advertiser", "window": "30d", "channels": {"cashback": "7d"}}
                    ],
                },
                {
                    "id": "acme-peak",
                    "advertiser": "acme",
                    "kind": "peak",
                    "timezone": "Europe/Paris",
                    "start": "2026-11-01T00:00:00+01:00",
                    "end": "2026-12-01T00:00:00+01:00",
                    "dedup": [{"scope": "advertiser", "window": "30d"}],
                },
                {
                    "id": "acme-summer",
                    "advertiser": "acme",
                    "kind": "peak",
                    "timezone": "Europe/Paris",
                    "start": "2026-06-01",
                    "end": "2026-08-31",
                    "dedup": [{"scope": "advertiser", "window": "30d"}],
                },
                {
                    "id": "nova-daily",
                    "advertiser": "nova",
                    "kind": "always_on",
                    "timezone": "America/New_York",
                    "caps": [{"subject": "campaign", "window": "day", "limit": 2}],
                },
                {
                    "id": "nova-ten",
                    "advertiser": "nova",
                    "kind": "always_on",
                    "timezone": "Europe/Paris",
                    "dedup": [{"scope": "campaign", "window": "30d"}],
                    "caps": [{"subject": "campaign", "window": "day", "limit": 10}],
                },
            ],
            "partners": [
                {
                    "id": "p-mail",
                    "api_keys": [key_hash(NETWORK_KEYS["p-mail"])],
                    "channels": ["email"],
                    "campaigns": campaigns,
                },
                {
                    "id": "p-coreg",
                    "api_keys": [key_hash(NETWORK_KEYS["p-coreg"])],
                    "channels": ["coreg"],
                    "campaigns": campaigns,
                },
                {
                    "id": "p-cash",
                    "api_keys": [key_hash(NETWORK_KEYS["p-cash"])],
                    "channels": ["cashback"],
                    "campaigns": campaigns,
                },
                {
                    "id": "p-comp",
                    "api_keys": [key_hash(NETWORK_KEYS["p-comp"])],
                    "channels": ["comparator", "site"],
                    "campaigns": [c for c in campaigns if c != "acme-peak"],
                },
            ],
        }
    )


def sold_network() -> dict[str, Any]:
    """``network()`` with three more advertisers (buyers) and two campaigns sold to them:

    - ``sold-excl``: exclusive by priority to ``b-one`` (at most 1 lead a day), ``b-two`` (open
      Monday to Friday 09:00-18:00 Paris time) and ``b-three`` (Paris postal codes only);
      campaign dedup 30 d; pays publishers 4.5 per lead sold.
    - ``sold-shared``: shared to two of the three by price, naming them (``show_buyers``).
    Every partner may post to both.
    """
    config = network()
    config["advertisers"] += [{"id": "b-one"}, {"id": "b-two"}, {"id": "b-three"}]
    paris_only = {
        "rules": [
            {
                "id": "paris",
                "message": "Paris only",
                "require": {"kind": "regex", "field": "postal_code", "pattern": "75[0-9]{3}"},
            }
        ]
    }
    config["campaigns"] += [
        {
            "id": "sold-excl",
            "kind": "always_on",
            "timezone": "Europe/Paris",
            "payout": 4.5,
            "dedup": [{"scope": "campaign", "window": "30d"}],
            "buyers": [
                {
                    "advertiser": "b-one",
                    "price": 20,
                    "caps": [{"subject": "buyer", "window": "day", "limit": 1}],
                },
                {
                    "advertiser": "b-two",
                    "price": 15,
                    "hours": {"mon-fri": ["09:00-18:00"]},
                },
                {"advertiser": "b-three", "price": 10, "filter": paris_only},
            ],
        },
        {
            "id": "sold-shared",
            "kind": "always_on",
            "timezone": "Europe/Paris",
            "distribution": "shared",
            "max_buyers": 2,
            "order": "price",
            "show_buyers": True,
            "buyers": [
                {"advertiser": "b-one", "price": 20},
                {"advertiser": "b-two", "price": 15},
                {"advertiser": "b-three", "price": 10},
            ],
        },
    ]
    for partner in config["partners"]:
        partner["campaigns"] = [*partner["campaigns"], "sold-excl", "sold-shared"]
    return config


_people = itertools.count(1)


def person(**fields: object) -> dict[str, object]:
    """A lead for a person nobody has posted yet in this run (plus ``fields``)."""
    n = next(_people)
    lead: dict[str, object] = {
        "email": f"person{n}.lastname@example.com",
        "phone": f"+33 6 {n // 10000 % 100:02d} {n // 100 % 100:02d} {n % 100:02d} 99",
        "first_name": "Camille",
        "last_name": "Martin",
    }
    lead.update(fields)
    return lead


class FakeClock:
    """The intake's clock: epoch seconds that move only when a test says so."""

    def __init__(self, now_s: float) -> None:
        self.now_s = now_s

    def __call__(self) -> float:
        return self.now_s

    def advance(self, seconds: float) -> None:
        self.now_s += seconds


@dataclass(frozen=True, slots=True)
class Reply:
    """A response, read to the end (so nothing is left open)."""

    status: int
    headers: CIMultiDictProxy[str]
    body: bytes

    @property
    def content_type(self) -> str:
        return self.headers.get("Content-Type", "").split(";")[0].strip()

    def json(self) -> Any:
        return orjson.loads(self.body)


@dataclass
class Gateway:
    client: TestClient[web.Request, web.Application]
    app: App
    clock: FakeClock
    view: StoreView
    #: The metrics listener (``create_ops_app``: ``/metrics``, ``/healthz``, ``/readyz``).
    ops: TestClient[web.Request, web.Application]
    keys: Mapping[str, str] = field(default_factory=lambda: {**NETWORK_KEYS, **EXAMPLE_KEYS})
    #: The delivery queue behind the admin API (``make(admin=True)``).
    queue: Queue | None = None

    async def ops_request(
        self, method: str, path: str, *, headers: Mapping[str, str] | None = None
    ) -> Reply:
        """A request to the metrics listener."""
        async with self.ops.request(method, path, headers=headers or {}) as response:
            return Reply(response.status, response.headers, await response.read())

    async def metrics(self) -> str:
        """The ``/metrics`` page, from the metrics listener."""
        reply = await self.ops_request("GET", "/metrics")
        assert reply.status == 200, reply.body
        return reply.body.decode()

    async def admin(self, method: str, path: str, body: object = None) -> Reply:
        """A request to the admin API (``/v1/admin`` + ``path``) with the admin token."""
        extra: dict[str, Any] = {} if body is None else {"data": orjson.dumps(body)}
        return await self.request(
            method, f"/v1/admin{path}", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, **extra
        )

    @property
    def store(self) -> Store:
        return self.app.store

    @property
    def intake(self) -> Intake:
        return self.app.intake

    @property
    def observer(self) -> Observer:
        return self.app.observer

    def auth(self, partner: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[partner]}"}

    async def request(
        self,
        method: str,
        path: str,
        *,
        partner: str | None = None,
        headers: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> Reply:
        sent = {**(self.auth(partner) if partner else {}), **(headers or {})}
        async with self.client.request(method, path, headers=sent, **kwargs) as response:
            body = await response.read()
            return Reply(response.status, response.headers, body)

    async def post(
        self,
        partner: str | None,
        lead: object,
        *,
        path: str = "/v1/leads",
        headers: Mapping[str, str] | None = None,
    ) -> Reply:
        """POST ``lead`` as JSON (any JSON value, so tests can send wrong shapes)."""
        return await self.request(
            "POST",
            path,
            partner=partner,
            data=orjson.dumps(lead),
            headers={"Content-Type": "application/json", **(headers or {})},
        )

    async def decide(
        self, partner: str, lead: Mapping[str, object], *, headers: Mapping[str, str] | None = None
    ) -> dict[str, Any]:
        """POST one lead that must get a decision (HTTP 200); its answer."""
        reply = await self.post(partner, lead, headers=headers)
        assert reply.status == 200, reply.body
        answer: dict[str, Any] = reply.json()
        return answer

    async def batch(
        self, partner: str, leads: object, *, headers: Mapping[str, str] | None = None
    ) -> Reply:
        return await self.post(partner, {"leads": leads}, path="/v1/leads/batch", headers=headers)


class GatewayFactory(Protocol):
    def __call__(
        self,
        config: ConfigSource | None = None,
        *,
        now_s: float = T0,
        store: Store | None = None,
        admin: bool = False,
        metrics_token: str | None = None,
        fingerprint_keys: tuple[FingerprintKey, ...] = (FINGERPRINT_KEY,),
    ) -> Awaitable[Gateway]: ...


def build_config(source: ConfigSource | None) -> Config:
    if source is None:
        return parse_config(network())
    if isinstance(source, Path):
        return load_config(source)
    return parse_config(source)


async def _gateways(shared: Store | None, view: StoreView | None) -> AsyncIterator[GatewayFactory]:
    """The factory behind both fixtures. ``shared``: the store every gateway of the test uses
    (the parametrized fixture's); ``None``: each gateway gets its own new embedded store."""
    opened: list[TestClient[web.Request, web.Application]] = []

    async def make(
        config: ConfigSource | None = None,
        *,
        now_s: float = T0,
        store: Store | None = None,
        admin: bool = False,
        metrics_token: str | None = None,
        fingerprint_keys: tuple[FingerprintKey, ...] = (FINGERPRINT_KEY,),
    ) -> Gateway:
        """A gateway on ``config`` (default ``network()``) at ``now_s``. ``store`` replaces
        the fixture's (outage tests; ``Gateway.view`` does not read it then). ``admin``: with
        the admin API (token ``ADMIN_TOKEN``) over the store's delivery queue; a config given
        as a file can be reloaded through it. ``metrics_token``: what ``/metrics`` on the
        metrics listener (``Gateway.ops``) requires. ``fingerprint_keys``: the gateway's."""
        built = build_config(config)
        clock = FakeClock(now_s)
        own = MemoryStore()
        used = store or shared or own
        if store is not None:
            stores.append(store)
        queue: Queue | None = None
        if admin:
            seen = view or StoreView(own, None)
            queue = (
                MemoryQueue(used)
                if isinstance(used, MemoryStore)
                else RedisQueue(str(seen.redis_url))
            )
            queues.append(queue)
        environment = Environment(
            fingerprint_keys=fingerprint_keys, admin_token=ADMIN_TOKEN if admin else None
        )
        path = str(config) if isinstance(config, Path) else ""
        gateway = App(
            Settings.of(built, environment, config_path=path), store=used, queue=queue, clock=clock
        )
        apps.append(gateway)
        app = create_app(gateway, gateway.admin_api())
        server = TestServer(app)
        # As the CLI runs it: no access log (request lines carry query strings).
        await server.start_server(access_log=None)
        client = TestClient(server)
        opened.append(client)
        await client.start_server()
        ops_server = TestServer(create_ops_app(gateway, metrics_token=metrics_token))
        await ops_server.start_server(access_log=None)
        ops = TestClient(ops_server)
        opened.append(ops)
        await ops.start_server()
        return Gateway(client, gateway, clock, view or StoreView(own, None), ops, queue=queue)

    queues: list[Queue] = []
    stores: list[Store] = []
    apps: list[App] = []
    try:
        yield make
    finally:
        for client in opened:
            await client.close()
        for gateway in apps:
            await gateway.aclose()
        for queue in queues:
            await queue.close()
        for given in stores:
            await given.close()


@pytest_asyncio.fixture
async def make_gateway(store: Store, view: StoreView) -> AsyncIterator[GatewayFactory]:
    """Build gateways over the parametrized store (embedded, then a real emptied Redis)."""
    async for factory in _gateways(store, view):
        yield factory


@pytest_asyncio.fixture
async def make_embedded_gateway() -> AsyncIterator[GatewayFactory]:
    """Build gateways each on a new embedded store (tests of the HTTP layer itself)."""
    async for factory in _gateways(None, None):
        yield factory


PROBLEM_MEMBERS = ("type", "title", "status", "detail", "instance")


def assert_problem(
    reply: Reply, status: int, slug: str, *, instance: str | None = ""
) -> dict[str, Any]:
    """``reply`` is an RFC 9457 problem of this status and ``urn:leadgate:problem:<slug>``
    with every standard member; its body. ``instance``: the route it must name; ``None``:
    it must have none (a path no route matched is request input, never echoed)."""
    assert reply.status == status, reply.body
    assert reply.content_type == "application/problem+json", reply.headers
    problem: dict[str, Any] = reply.json()
    members = [m for m in PROBLEM_MEMBERS if instance is not None or m != "instance"]
    missing = [m for m in members if not isinstance(problem.get(m), str | int)]
    assert not missing, f"problem without {missing}: {problem}"
    assert problem["type"] == f"urn:leadgate:problem:{slug}", problem
    assert problem["status"] == status
    if instance is None:
        assert "instance" not in problem, problem
    elif instance:
        assert problem["instance"] == instance
    return problem


def error_fields(problem: Mapping[str, Any]) -> list[str]:
    """The ``field`` of every entry of a 422 problem's ``errors``."""
    return [error["field"] for error in problem["errors"]]
