"""Scenario files: what traffic ``python -m bench`` sends, read strictly with clear errors.

A scenario is a YAML mapping (see ``bench/scenarios/*.yaml``)::

    description: single leads, closed loop          # free text, printed in the report
    client: wrk                                     # wrk | aiohttp (open loop needs aiohttp)
    load: {concurrency: 64}                         # closed loop: N requests always in flight
    # load: {rate: 1500, max_in_flight: 1000}       # open loop: requests/s on a fixed schedule
    duration_s: 10
    batch: 1                                        # leads per request (>1: the batch endpoint)
    workers: 1                                      # `leadgate serve --workers N`
    store: redis                                    # redis | embedded
    partners: {p-alpha: 3, p-beta: 1}               # weights (ids of bench/scenarios/gateway.yaml)
    channels: {email: 2, coreg: 1}                  # weights, among the partner's own channels
    duplicates: {same: 0.10, respelled: 0.05, other_channel: 0.05}  # shares of all leads
    invalid: 0.02                                   # share of leads the gateway must refuse (422)
    seed: 1
    bodies: 200000                                  # requests pre-generated (default: estimate)
    identities: 1000000                             # memory scenario: remember this many, once each
    campaign: bench                                 # the campaign posted to (gateway.yaml:
                                                    # bench, or bench-sold / bench-waterfall,
                                                    # sold to buyers)
    timeline: true                                  # wrk runs: scrape /metrics each second for the
                                                    # latency curve (false: no scraping, as the
                                                    # one-connection runs, whose p99 it raises)

Every problem is reported at once, with its path, as a ``ConfigError``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

import yaml

from gateway.config.reader import MISSING, Reader, join, load_yaml, show
from gateway.errors import ConfigError

HERE = Path(__file__).resolve().parent
SCENARIO_DIR = HERE / "scenarios"
GATEWAY_CONFIG = SCENARIO_DIR / "gateway.yaml"


def write_gateway_config(path: Path) -> Path:
    """``gateway.yaml`` copied to ``path`` with its rule packs' directory made absolute (the
    copy lives elsewhere than ``bench/scenarios``); ``path``."""
    rules = HERE.parent / "rules"
    path.write_text(GATEWAY_CONFIG.read_text().replace("../../rules", str(rules)))
    return path


#: The partners of ``gateway.yaml``: id -> (API key, channels).
PARTNERS: dict[str, tuple[str, tuple[str, ...]]] = {
    "p-alpha": ("bench-key-alpha", ("email", "coreg")),
    "p-beta": ("bench-key-beta", ("coreg", "comparator")),
    "p-gamma": ("bench-key-gamma", ("email", "comparator")),
}
CHANNELS = ("email", "coreg", "comparator")
CAMPAIGN = "bench"
#: The campaigns of ``gateway.yaml`` a scenario may post to.
CAMPAIGNS = (CAMPAIGN, "bench-sold", "bench-waterfall")
#: The dedup scopes of the bench campaign (memory is reported per scope).
DEDUP_SCOPES = 2
DUPLICATE_KINDS = ("same", "respelled", "other_channel")
MAX_BATCH = 1000  # the gateway's default batch_max_leads

_KEYS = (
    "description",
    "client",
    "load",
    "duration_s",
    "batch",
    "workers",
    "store",
    "partners",
    "channels",
    "duplicates",
    "invalid",
    "seed",
    "bodies",
    "identities",
    "timeline",
    "campaign",
)


class Client(StrEnum):
    WRK = "wrk"
    AIOHTTP = "aiohttp"


class Store(StrEnum):
    REDIS = "redis"
    EMBEDDED = "embedded"


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    description: str = ""
    client: Client = Client.WRK
    #: Closed loop: requests kept in flight. ``None`` when the scenario is open loop.
    concurrency: int | None = 64
    #: Open loop: requests per second on a fixed schedule. ``None`` when closed loop.
    rate: float | None = None
    #: Open loop: most requests in flight; a request due when the bound is reached is missed.
    max_in_flight: int = 1000
    duration_s: float = 10.0
    batch: int = 1
    workers: int = 1
    store: Store = Store.REDIS
    partners: dict[str, float] = field(default_factory=lambda: {"p-alpha": 1.0})
    channels: dict[str, float] = field(default_factory=lambda: {"email": 1.0})
    duplicates: dict[str, float] = field(default_factory=dict)
    invalid: float = 0.0
    seed: int = 1
    bodies: int | None = None
    #: Memory scenario: every body sent exactly once; this many identities remembered.
    identities: int | None = None
    #: wrk runs: the per-second latency curve from the gateway's /metrics, scraped during the
    #: run. Scraping is not free (the exposition holds the event loop a few ms, the fetch takes
    #: CPU beside wrk and Redis): on one connection it raised p99 from ~1.2 to 1.5-2.2 ms.
    timeline: bool = True
    #: The campaign posted to: ``bench``, or one sold to buyers.
    campaign: str = CAMPAIGN

    @property
    def open_loop(self) -> bool:
        return self.rate is not None

    @property
    def duplicate_share(self) -> float:
        return sum(self.duplicates.values())

    def body_count(self) -> int:
        """Requests to pre-generate: enough that a run never sends the same body twice."""
        if self.identities is not None:
            return -(-self.identities // (2 * self.batch))  # email + phone: 2 identities a lead
        if self.bodies is not None:
            return self.bodies
        # Above what the gateway reaches on one core with each client (requests/s; batches:
        # leads/s), so the bodies rarely run out; a run that sends one twice says so.
        ceiling = 20_000 if self.client is Client.WRK else 5_000
        if self.batch > 1:
            ceiling = 20_000 // self.batch + 1
        per_s = self.rate if self.rate is not None else ceiling
        return max(1000, int(per_s * self.duration_s * 1.2) + 1)

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "description": self.description,
            "client": self.client.value,
            "concurrency": self.concurrency,
            "rate": self.rate,
            "max_in_flight": self.max_in_flight,
            "duration_s": self.duration_s,
            "batch": self.batch,
            "workers": self.workers,
            "store": self.store.value,
            "partners": self.partners,
            "channels": self.channels,
            "duplicates": self.duplicates,
            "invalid": self.invalid,
            "seed": self.seed,
            "identities": self.identities,
            "timeline": self.timeline,
            "campaign": self.campaign,
        }


def _weights(
    r: Reader, value: object, path: str, known: tuple[str, ...], *, one: bool = True
) -> dict[str, float]:
    """A mapping of id to weight (or share); ``one``: at least one must be above 0."""
    fields = r.mapping(value, path, "a mapping of id to weight", optional=known)
    weights = {key: r.number(item, join(path, key), positive=False) for key, item in fields.items()}
    if one and isinstance(value, dict) and not any(weights.values()):
        r.fail(path, "needs at least one weight above 0")
    return weights


def parse_scenario(data: object, name: str) -> Scenario:
    """Validate one scenario (what ``load_yaml`` returned); raises ``ConfigError``."""
    r = Reader()
    root = r.mapping(data, "", "a scenario mapping", optional=_KEYS)
    description = root.get("description", "")
    if not isinstance(description, str):
        r.fail("description", f"expected text, got {show(description)}")
        description = ""
    client = r.choice(root.get("client", MISSING), "client", Client)
    load = r.mapping(
        root.get("load", {"concurrency": 64}),
        "load",
        "a mapping with concurrency (closed loop) or rate (open loop)",
        optional=("concurrency", "rate", "max_in_flight"),
    )
    concurrency: int | None = None
    rate: float | None = None
    if ("concurrency" in load) == ("rate" in load):
        r.fail("load", "give exactly one of concurrency (closed loop) or rate (open loop)")
    if "concurrency" in load:
        concurrency = r.integer(load["concurrency"], "load.concurrency", 1, fallback=1)
    if "rate" in load:
        rate = r.number(load["rate"], "load.rate", positive=True)
        if client is Client.WRK:
            r.fail("client", "open loop (load.rate) needs client: aiohttp (wrk2 is not available)")
    elif "max_in_flight" in load:
        r.fail("load.max_in_flight", "only for open loop (load.rate)")
    max_in_flight = r.integer(
        load.get("max_in_flight", MISSING), "load.max_in_flight", 1, fallback=1000
    )
    duration_s = r.number(root.get("duration_s", 10), "duration_s", positive=True)
    batch = r.integer(root.get("batch", MISSING), "batch", 1, fallback=1)
    if batch > MAX_BATCH:
        r.fail("batch", f"{batch} is more than the gateway's {MAX_BATCH} leads per batch")
    workers = r.integer(root.get("workers", MISSING), "workers", 1, fallback=1)
    store = r.choice(root.get("store", MISSING), "store", Store)
    partners = _weights(r, root.get("partners", {"p-alpha": 1}), "partners", tuple(PARTNERS))
    channels = _weights(r, root.get("channels", {"email": 1}), "channels", CHANNELS)
    for partner in partners:
        if partner in PARTNERS and not set(PARTNERS[partner][1]) & {
            c for c, w in channels.items() if w > 0
        }:
            r.fail(join("partners", partner), "posts through none of the scenario's channels")
    duplicates = _weights(r, root.get("duplicates", {}), "duplicates", DUPLICATE_KINDS, one=False)
    duplicates = {kind: share for kind, share in duplicates.items() if share > 0}
    invalid = r.number(root.get("invalid", 0), "invalid", positive=False)
    if sum(duplicates.values()) + invalid >= 1:
        r.fail("duplicates", "duplicate and invalid shares must add up to less than 1")
    seed = r.integer(root.get("seed", MISSING), "seed", 0, fallback=1)
    bodies = root.get("bodies")
    if bodies is not None:
        bodies = r.integer(bodies, "bodies", 1, fallback=1000)
    identities = root.get("identities")
    if identities is not None:
        identities = r.integer(identities, "identities", 2, fallback=2)
        if duplicates or invalid:
            r.fail("identities", "a memory scenario sends new people only (no duplicates/invalid)")
    timeline = r.boolean(root.get("timeline", True), "timeline")
    campaign = root.get("campaign", CAMPAIGN)
    if campaign not in CAMPAIGNS:
        r.fail("campaign", f"{show(campaign)} is not one of {', '.join(CAMPAIGNS)}")
        campaign = CAMPAIGN
    if r.issues:
        raise ConfigError(r.issues)
    return Scenario(
        name=name,
        description=description,
        client=client,
        concurrency=concurrency,
        rate=rate,
        max_in_flight=max_in_flight,
        duration_s=duration_s,
        batch=batch,
        workers=workers,
        store=store,
        partners=partners,
        channels=channels,
        duplicates=duplicates,
        invalid=invalid,
        seed=seed,
        bodies=bodies if isinstance(bodies, int) else None,
        identities=identities if isinstance(identities, int) else None,
        timeline=timeline,
        campaign=str(campaign),
    )


def load_scenario(name_or_path: str) -> Scenario:
    """A scenario by name (``bench/scenarios/<name>.yaml``) or by path."""
    path = Path(name_or_path)
    if not path.suffix:
        path = SCENARIO_DIR / f"{name_or_path}.yaml"
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        stems = sorted(p.stem for p in SCENARIO_DIR.glob("*.yaml"))
        known = ", ".join(stem for stem in stems if stem != "gateway")
        raise SystemExit(f"scenario {name_or_path!r}: {exc.strerror} (known: {known})") from None
    try:
        data = load_yaml(text)
    except yaml.YAMLError as exc:  # syntax, and a key repeated in one mapping
        raise SystemExit(f"{path}: {exc}") from None
    try:
        return parse_scenario(data, path.stem)
    except ConfigError as exc:
        raise SystemExit(f"{path}:\n{exc}") from None
