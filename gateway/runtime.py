"""Assemble a running gateway from the environment and the config file (start-up only)."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping
from dataclasses import dataclass

from gateway.config.environment import Environment
from gateway.config.load import load_config
from gateway.config.model import Config
from gateway.decision.engine import DecisionEngine
from gateway.errors import ConfigError, ConfigIssue, StoreError
from gateway.failpoints import Failpoints
from gateway.intake import Intake
from gateway.leads.fingerprint import Fingerprinter
from gateway.observe import Observer
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


def load_settings(environ: Mapping[str, str], config_path: str | None) -> Settings:
    env = Environment.from_environ(environ)
    path = config_path or env.config_path
    if not path:
        raise ConfigError([ConfigIssue("LEADGATE_CONFIG", "no config file: pass --config FILE")])
    allow = environ.get("LEADGATE_REDIS_ALLOW_EVICTION", "").lower() in ("1", "true", "yes")
    return Settings(env, load_config(path), allow, Failpoints.from_environ(environ))


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


async def build_intake(settings: Settings) -> Intake:
    """The store (Redis when LEADGATE_REDIS_URL is set, else embedded), checked, and the intake.

    A Redis that cannot be reached at start is not fatal: the gateway starts, answers 503 and
    ``/readyz`` says unavailable until Redis answers; scripts load on first use. A Redis that
    answers with settings that put decisions at risk is refused (unless allowed explicitly):
    at start the process exits; later, the store answers 503 until the settings are fixed.
    """
    url = settings.environment.redis_url
    store: Store
    if url:
        redis_store = RedisStore(url, allow_eviction=settings.allow_eviction)
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
        Observer(config),
    )
