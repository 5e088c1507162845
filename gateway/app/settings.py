"""What a process starts from: the environment and the config file, read once at start-up."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping
from dataclasses import dataclass

from gateway.config.environment import Environment, referenced_variables, unknown_variables
from gateway.config.load import load_config
from gateway.config.model import Config
from gateway.errors import ConfigError, ConfigIssue
from gateway.failpoints import Failpoints
from gateway.observe.logs import configure_logging
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

    @classmethod
    def of(
        cls,
        config: Config,
        environment: Environment | None = None,
        *,
        config_path: str = "",
        failpoints: Failpoints | None = None,
    ) -> Settings:
        """Settings for a config built in code (tests, the bench): nothing read from the
        process environment, eviction refused."""
        return cls(
            environment or Environment(),
            config,
            False,
            failpoints or Failpoints(),
            config_path=config_path,
        )


def load_settings(environ: Mapping[str, str], config_path: str | None) -> Settings:
    """The environment and the config file (``config_path`` or ``LEADGATE_CONFIG``). Raises
    ``ConfigError`` listing every problem of either."""
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
    embedded store without a word. The names the config gives its secrets (``secret_env``)
    are known. Names only: values may be secrets."""
    configure_logging(settings.environment.log_level)
    unknown = unknown_variables(environ, referenced_variables(settings.config))
    if unknown:
        LOG.warning(
            "unknown LEADGATE_* variables ignored (misspelt?)",
            extra={"fields": {"variables": unknown}},
        )


def fingerprint_keys(settings: Settings) -> tuple[FingerprintKey, ...]:
    """The configured fingerprint keys; on the embedded store without one, an ephemeral key
    (the store forgets everything at exit, so a key that dies with it is right). Raises
    ``ConfigError`` on Redis without one: fingerprints must survive restarts."""
    keys = settings.environment.fingerprint_keys
    if keys:
        return keys
    if settings.environment.redis_url:
        raise ConfigError(
            [
                ConfigIssue(
                    "LEADGATE_FINGERPRINT_KEY",
                    "required with Redis: fingerprints must survive restarts "
                    "(format id:sha256:secret)",
                )
            ]
        )
    LOG.warning("no LEADGATE_FINGERPRINT_KEY: using an ephemeral key (embedded store only)")
    return (FingerprintKey("eph", secrets.token_bytes(32), "sha256"),)
