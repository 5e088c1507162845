"""Assemble a running gateway from the environment and the config file (start-up only)."""

from __future__ import annotations

import asyncio
import gc
import logging
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import phonenumbers

from gateway.config.environment import Environment, unknown_variables
from gateway.config.load import load_config
from gateway.config.model import Config
from gateway.decision.engine import DecisionEngine
from gateway.decision.intake import Intake
from gateway.errors import ConfigError, ConfigIssue, StoreError
from gateway.failpoints import Failpoints
from gateway.leads.fingerprint import Fingerprinter
from gateway.observe.logs import configure_logging
from gateway.observe.metrics import Observer
from gateway.storage.base import Store
from gateway.storage.memory import MemoryStore
from gateway.storage.redis import RedisStore
from gateway.types import FingerprintKey

LOG = logging.getLogger("leadgate")


@dataclass(frozen=True, slots=True)
class Settings:
    environment: Environment
    config: Config
    allow_eviction: bool
    failpoints: Failpoints
    #: The file the config was read from (what a reload reads again).
    config_path: str = ""
    #: prometheus-client's multiprocess directory (``PROMETHEUS_MULTIPROC_DIR``), set by
    #: ``leadgate serve --workers N`` for its children: /metrics then merges every process.
    metrics_dir: str | None = None


def load_settings(environ: Mapping[str, str], config_path: str | None) -> Settings:
    env = Environment.from_environ(environ)
    path = config_path or env.config_path
    if not path:
        raise ConfigError([ConfigIssue("LEADGATE_CONFIG", "no config file: pass --config FILE")])
    allow = environ.get("LEADGATE_REDIS_ALLOW_EVICTION", "").lower() in ("1", "true", "yes")
    return Settings(
        env,
        load_config(path),
        allow,
        Failpoints.from_environ(environ),
        config_path=str(path),
        metrics_dir=environ.get("PROMETHEUS_MULTIPROC_DIR") or None,
    )


def start_logging(settings: Settings, environ: Mapping[str, str]) -> None:
    """Logging at the configured level, then a warning naming each ``LEADGATE_*`` variable
    leadgate does not know: a misspelt ``LEADGATE_REDIS_URL`` would otherwise select the
    embedded store without a word. Names only: values may be secrets."""
    configure_logging(settings.environment.log_level)
    unknown = unknown_variables(environ)
    if unknown:
        LOG.warning(
            "unknown LEADGATE_* variables ignored (misspelt?)",
            extra={"fields": {"variables": unknown}},
        )


def fingerprint_keys(settings: Settings) -> tuple[FingerprintKey, ...]:
    keys = settings.environment.fingerprint_keys
    if keys:
        return keys
    if settings.environment.redis_url:
        raise ConfigError(
            [
                ConfigIssue(
                    "LEADGATE_FINGERPRINT_KEY",
                    "required with Redis: fingerprints must survive restarts (format id:secret)",
                )
            ]
        )
    # The embedded store forgets everything at exit, so a key that dies with it is right.
    LOG.warning("no LEADGATE_FINGERPRINT_KEY: using an ephemeral key (embedded store only)")
    return (FingerprintKey("eph", secrets.token_bytes(32)),)


async def build_intake(settings: Settings, observer: Observer | None = None) -> Intake:
    """The store (Redis when LEADGATE_REDIS_URL is set, else embedded), checked, and the intake.

    A Redis that cannot be reached at start is not fatal: the gateway starts, answers 503 and
    ``/readyz`` says unavailable until Redis answers; scripts load on first use. A Redis that
    answers with settings that put decisions at risk is refused (unless allowed explicitly):
    at start the process exits; later, the store answers 503 until the settings are fixed.

    ``observer``: the metrics to record into (default: a new one, merged across processes
    when ``settings.metrics_dir`` is set); the benchmark passes one that records nothing.
    """
    url = settings.environment.redis_url
    if observer is None:
        observer = Observer(settings.config, multiprocess_dir=settings.metrics_dir)
    store: Store
    if url:
        redis_store = RedisStore(
            url, allow_eviction=settings.allow_eviction, on_round_trip=observer.redis_round_trip
        )
        try:
            await redis_store.load_scripts()
            problems = await redis_store.server_checks()
        except StoreError as unreachable:
            LOG.error("redis unreachable at start; serving 503 until it answers: %s", unreachable)
            problems = []
        for problem in problems:
            LOG.error(problem)
        if problems and not settings.allow_eviction:
            await redis_store.close()
            raise ConfigError(
                [ConfigIssue("LEADGATE_REDIS_URL", p) for p in problems]
                + [ConfigIssue("", "set LEADGATE_REDIS_ALLOW_EVICTION=true to start anyway")]
            )
        store = redis_store
    else:
        store = MemoryStore()
    config = settings.config
    return Intake(
        config,
        DecisionEngine(store, settings.failpoints),
        Fingerprinter(fingerprint_keys(settings)),
        observer,
    )


def settle_heap(config: Config | None = None) -> None:
    """Freeze what start-up built, once it is built: the config, the rule packs, the libraries
    and their tables (tens of thousands of long-lived objects). ``gc.freeze`` takes them out of
    the collector's sight; otherwise every full collection walks all of them again, 20-30 ms
    on a 2-vCPU VM during which every request in flight waits (BENCHMARKS.md, "Garbage
    collection"). What requests create later is collected as before.

    Called again after a config reload: what was frozen is thawed and collected once (the
    replaced config's objects, if they hold cycles, are freed then), and what lives is frozen
    again.

    ``config``: its campaigns' phone regions are loaded first (libphonenumber reads a region's
    metadata on first use), so the first leads do not pay for it and the tables are frozen too.
    """
    if config is not None:
        for region in sorted({c.phone_region for c in config.campaigns.values()}):
            phonenumbers.PhoneMetadata.metadata_for_region(region)
    gc.unfreeze()
    gc.collect()
    gc.freeze()


class ConfigReloader:
    """Reloads the config file into a running intake: on SIGHUP, and when the file's content
    changes (``watch``). A file that does not load is refused with its issues in the log and
    the running config keeps serving.

    What a reload can change: partners and their keys, channels, advertisers, campaigns,
    dedup, caps, rules, server limits. What it cannot: everything read from the environment
    (store URL, fingerprint keys, listen address), which needs a restart.
    """

    def __init__(self, intake: Intake, path: str) -> None:
        self.intake = intake
        self.path = path
        #: Issues of the last refused load, so a broken file is reported once, not per poll.
        self.refusal: tuple[str, ...] = ()

    async def reload(self, *, trigger: str) -> Config | None:
        """Load the file and serve it if it is valid and different. The new config, or None
        when nothing changed or the file was refused."""
        try:
            config = await asyncio.to_thread(load_config, self.path)
        except ConfigError as error:
            issues = tuple(str(issue) for issue in error.issues)
            if trigger in ("signal", "api") or issues != self.refusal:
                self.refusal = issues
                self.intake.observer.reloaded(None)
                LOG.error(
                    "config reload refused; the running config keeps serving",
                    extra={"fields": {"trigger": trigger, "path": self.path, "issues": issues}},
                )
            return None
        self.refusal = ()
        current = self.intake.config
        if config.checksum == current.checksum:
            if trigger in ("signal", "api"):
                LOG.info("config unchanged", extra={"fields": {"checksum": config.checksum}})
            return None
        self.intake.replace_config(config)
        self.intake.observer.reloaded(config)
        LOG.info(
            "config reloaded",
            extra={
                "fields": {
                    "trigger": trigger,
                    "checksum": config.checksum,
                    "previous_checksum": current.checksum,
                    "partners": len(config.partners),
                    "campaigns": len(config.campaigns),
                }
            },
        )
        return config

    async def watch(self, interval_s: float, on_reload: Callable[[Config], None]) -> None:
        """Poll every ``interval_s`` (until cancelled); a changed checksum is reloaded."""
        while True:
            await asyncio.sleep(interval_s)
            config = await self.reload(trigger="poll")
            if config is not None:
                on_reload(config)
