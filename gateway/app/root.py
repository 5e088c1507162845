"""``App``: the composition root. Every entry point gets its parts from one.

An ``App`` is built from ``Settings`` (the environment and the config file, read once) and owns
every part of a running leadgate, each opened on first use and closed, in reverse order, by
``aclose`` (``async with App(settings) as app``):

=================  ==========================================================================
part               what it is
=================  ==========================================================================
``store``          Redis (``LEADGATE_REDIS_URL``, checked at start) or the embedded store
``queue``          the delivery queue: Redis streams, or the embedded store's
``observer``       metrics and the decision log
``ledger``         the partner quality ledger (flushed at close)
``fingerprinter``  keyed hashes of identities, every configured key
``intake``         decides leads (the config's compiled plan inside)
``feedback_desk``  records advertisers' verdicts
``endpoints``      which buyers' CRM endpoints are disabled (distributed campaigns)
``reloader``       reads the config file again (``adopt`` puts it in service)
``eraser``         forgets a person everywhere
``admin_api``      what the admin routes act on (with ``LEADGATE_ADMIN_TOKEN``)
``worker``         the delivery worker (``delivery_worker``)
=================  ==========================================================================

Which parts a process opens depends on what it does: ``leadgate serve`` opens the store and
serves (``app.server``); ``leadgate worker`` opens only the queue (``app.worker``); ``leadgate
erase`` the store and the queue; ``leadgate deliveries`` the queue. Nothing else in the package
builds a store, a queue or a worker.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable, Mapping
from types import TracebackType

from gateway.app.heap import settle_heap
from gateway.app.reload import ConfigReloader
from gateway.app.settings import Settings, fingerprint_keys
from gateway.config.model import Config
from gateway.decision.engine import DecisionEngine
from gateway.decision.intake import Intake
from gateway.decision.waterfall import Waterfall
from gateway.delivery.endpoint_watch import EndpointWatch
from gateway.delivery.memqueue import MemoryQueue
from gateway.delivery.model import DeliveryEvents
from gateway.delivery.queue import RedisQueue
from gateway.delivery.queue_base import Queue
from gateway.delivery.transport import Transport
from gateway.delivery.worker import Worker
from gateway.errors import ConfigError, ConfigIssue, StoreError
from gateway.leads.fingerprint import Fingerprinter
from gateway.observe.metrics import Observer
from gateway.privacy.erasure import Eraser
from gateway.quality.feedback import FeedbackDesk
from gateway.quality.ledger import QualityLedger
from gateway.storage.base import Store
from gateway.storage.memory import MemoryStore
from gateway.storage.redis import RedisStore
from gateway.types import AdvertiserId
from gateway.web.admin import Admin

LOG = logging.getLogger("leadgate")

Clock = Callable[[], float]


class App:
    """One running leadgate, assembled from ``settings``.

    ``environ``: where endpoint secrets are read (default ``os.environ``); ``store`` and
    ``queue``: used instead of opening them (tests; the app does not close them); ``observer``: the
    metrics to record into (the bench passes one that records nothing); ``clock``: epoch
    seconds.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        environ: Mapping[str, str] | None = None,
        store: Store | None = None,
        queue: Queue | None = None,
        observer: Observer | None = None,
        clock: Clock = time.time,
    ) -> None:
        self.settings = settings
        self.environ: Mapping[str, str] = os.environ if environ is None else environ
        self.clock = clock
        self._observer = observer
        self._config = settings.config
        self._store = store
        #: The embedded store, when this process opened one: its queue lives in it.
        self._memory: MemoryStore | None = None
        self._fingerprinter: Fingerprinter | None = None
        self._queue = queue
        self._ledger: QualityLedger | None = None
        self._intake: Intake | None = None
        self._feedback_desk: FeedbackDesk | None = None
        self._reloader: ConfigReloader | None = None
        self._endpoints: EndpointWatch | None = None
        #: What ``aclose`` undoes, newest first.
        self._resources = contextlib.AsyncExitStack()

    async def __aenter__(self) -> App:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close what was opened, newest first: the ledger's last counts reach the store
        before the store closes."""
        await self._resources.aclose()

    @property
    def observer(self) -> Observer:
        """The metrics (merged across ``serve --workers N``) and the decision log."""
        if self._observer is None:
            self._observer = Observer(
                self.settings.config, multiprocess_dir=self.settings.metrics_dir
            )
        return self._observer

    # --- configuration ----------------------------------------------------------------------

    @property
    def config(self) -> Config:
        """The configuration served now (a reload replaces it)."""
        return self._config

    def adopt(self, config: Config) -> None:
        """Serve ``config`` from now on (a reload): the intake's plan, the metrics' label
        sets, the heap settled again."""
        self._config = config
        if self._intake is not None:
            self._intake.replace_config(config)
        self.observer.reloaded(config)
        settle_heap(config)

    @property
    def reloader(self) -> ConfigReloader:
        if self._reloader is None:
            self._reloader = ConfigReloader(
                self.settings.config_path,
                current=lambda: self._config,
                adopt=self.adopt,
                refused=lambda: self.observer.reloaded(None),
            )
        return self._reloader

    # --- the store and what lives on it -----------------------------------------------------

    @property
    def embedded(self) -> bool:
        """True without ``LEADGATE_REDIS_URL``: one process's memory holds everything."""
        return not self.settings.environment.redis_url

    async def open_store(self) -> Store:
        """The store, opened once: Redis when ``LEADGATE_REDIS_URL`` is set, else embedded.

        A Redis that cannot be reached is not fatal: the gateway starts, answers 503 and
        ``/readyz`` says unavailable until Redis answers; scripts load on first use. A Redis
        that answers with settings that put decisions at risk (``maxmemory-policy`` other
        than ``noeviction``) is refused unless ``LEADGATE_REDIS_ALLOW_EVICTION`` is set: here
        with a ``ConfigError``; later (a Redis replaced behind the gateway) every decision
        answers 503 until it is fixed.
        """
        if self._store is not None:
            return self._store
        url = self.settings.environment.redis_url
        if not url:
            self._store = self._memory = MemoryStore()
            return self._store
        store = RedisStore(
            url,
            allow_eviction=self.settings.allow_eviction,
            on_round_trip=self.observer.redis_round_trip,
        )
        self._resources.push_async_callback(store.close)
        try:
            # The settings first: a refused Redis is not one to load scripts on.
            problems = await store.server_checks()
            refuse_version(store.too_old)
            if not problems or self.settings.allow_eviction:
                await store.load_scripts()
                await store.connect_all()
        except StoreError as unreachable:
            LOG.error("redis unreachable at start; serving 503 until it answers: %s", unreachable)
            problems = []
        refuse_settings(problems, allow_eviction=self.settings.allow_eviction)
        self._store = store
        return store

    @property
    def store(self) -> Store:
        """The store ``open_store`` opened."""
        if self._store is None:
            raise RuntimeError("App.open_store() first")
        return self._store

    @property
    def fingerprinter(self) -> Fingerprinter:
        """Every configured fingerprint key (``LEADGATE_FINGERPRINT_KEY``); raises
        ``ConfigError`` on Redis without one."""
        if self._fingerprinter is None:
            self._fingerprinter = Fingerprinter(fingerprint_keys(self.settings))
        return self._fingerprinter

    @property
    def ledger(self) -> QualityLedger:
        """The partner quality ledger over the store; its last counts are flushed at close
        (``run_ledger`` flushes every few seconds meanwhile)."""
        if self._ledger is None:
            ledger = QualityLedger(self.store)
            self._resources.push_async_callback(ledger.close)
            self._ledger = ledger
        return self._ledger

    @property
    def intake(self) -> Intake:
        if self._intake is None:
            self._intake = Intake(
                self._config,
                DecisionEngine(self.store, self.settings.failpoints),
                self.fingerprinter,
                recorders=(self.observer, self.ledger),
                clock=self.clock,
                waterfall=Waterfall(self.store, self.settings.failpoints),
                endpoints=self.endpoints,
                pings=self.store,
            )
        return self._intake

    @property
    def endpoints(self) -> EndpointWatch:
        """Which buyers' endpoints are disabled, refreshed in the background while asked; it
        opens the delivery queue only when the configuration sells to buyers."""
        if self._endpoints is None:
            watch = EndpointWatch(self.open_queue, self._buyers)
            self._resources.push_async_callback(watch.close)
            self._endpoints = watch
        return self._endpoints

    def _buyers(self) -> list[AdvertiserId]:
        return list(
            dict.fromkeys(
                b.advertiser
                for c in self._config.campaigns.values()
                if c.distribution is not None
                for b in c.distribution.buyers
            )
        )

    @property
    def feedback_desk(self) -> FeedbackDesk:
        if self._feedback_desk is None:
            self._feedback_desk = FeedbackDesk(
                lambda: self._config, self.store, self.observer.feedback, self.ledger, self.clock
            )
        return self._feedback_desk

    def admin_api(self) -> Admin | None:
        """What the admin routes act on, behind ``LEADGATE_ADMIN_TOKEN``; None without a
        token (the routes then do not exist). Opens the delivery queue."""
        token = self.settings.environment.admin_token
        if not token:
            return None
        return Admin(
            config=lambda: self._config,
            store=self.store,
            queue=self.open_queue(),
            fingerprinter=self.fingerprinter,
            ledger=self.ledger,
            token=token,
            reloader=self.reloader if self.settings.config_path else None,
            clock=self.clock,
        )

    def eraser(self, queue: Queue | None) -> Eraser:
        """Forgets people in the store and, when given, in the delivery queue."""
        return Eraser(self._config, self.fingerprinter, self.store, queue, clock=self.clock)

    # --- delivery ---------------------------------------------------------------------------

    def open_queue(self) -> Queue:
        """The delivery queue, opened once: Redis streams when ``LEADGATE_REDIS_URL`` is set,
        else the embedded store's (so ``open_store`` first). Raises ``ConfigError`` for a
        process without Redis that has no embedded store of its own to read (a separate
        ``leadgate worker``)."""
        if self._queue is not None:
            return self._queue
        retention_s = self._config.delivery.dead_letter_retention_s
        url = self.settings.environment.redis_url
        queue: Queue
        if url:
            queue = RedisQueue(url, dead_letter_retention_s=retention_s)
        elif self._memory is not None:
            queue = MemoryQueue(self._memory, dead_letter_retention_s=retention_s)
        else:
            raise ConfigError(
                [
                    ConfigIssue(
                        "LEADGATE_REDIS_URL",
                        "a separate worker process needs Redis (the embedded store lives in "
                        "the gateway's memory: run the worker in-process with `leadgate "
                        "serve` instead)",
                    )
                ]
            )
        self._resources.push_async_callback(queue.close)
        self._queue = queue
        return queue

    def delivery_worker(
        self, events: DeliveryEvents | None = None, *, consumer: str | None = None
    ) -> Worker:
        """A delivery worker over ``open_queue()`` (the caller starts and stops it; ``stop``
        closes its transport, the app closes the queue). ``events``: its metrics (default:
        the observer's). Raises ``ConfigError`` when an endpoint's secret is missing."""
        events = events if events is not None else self.observer.delivery
        transport = Transport(self._config, self.environ, events)
        return Worker(
            self._config,
            self.open_queue(),
            transport,
            events,
            consumer=consumer,
            on_close=transport.close,
        )


def refuse_version(too_old: str | None) -> None:
    """``ConfigError`` for a Redis older than the scripts need (``storage.redis.
    version_problem``), whatever the settings: nothing would work on it."""
    if too_old is not None:
        raise ConfigError([ConfigIssue("LEADGATE_REDIS_URL", too_old)])


def refuse_settings(problems: list[str], *, allow_eviction: bool) -> None:
    """Each of a Redis's settings problems (``policy_problem``) logged, and ``ConfigError``
    for them unless ``LEADGATE_REDIS_ALLOW_EVICTION`` starts anyway: the gateway's start and
    the delivery worker's."""
    for problem in problems:
        LOG.error(problem)
    if problems and not allow_eviction:
        raise ConfigError(
            [ConfigIssue("LEADGATE_REDIS_URL", p) for p in problems]
            + [ConfigIssue("", "set LEADGATE_REDIS_ALLOW_EVICTION=true to start anyway")]
        )
