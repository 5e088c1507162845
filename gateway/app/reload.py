"""``ConfigReloader``: the config file read again into a running process (SIGHUP, the admin
API, a changed file)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from gateway.config.load import load_config
from gateway.config.model import Config
from gateway.errors import ConfigError

LOG = logging.getLogger("leadgate")


class ConfigReloader:
    """Reloads the config file: on SIGHUP, through the admin API, and when the file's content
    changes (``watch``). A file that does not load is refused with its issues in the log and
    the running config keeps serving.

    What a reload can change: partners and their keys, channels, advertisers, campaigns,
    dedup, caps, rules, server limits. What it cannot: everything read from the environment
    (store URL, fingerprint keys, listen address), and the delivery settings of a worker
    already running; those need a restart.

    ``current``: the config served now; ``adopt``: puts a new one in service (the app's);
    ``refused``: told about a file that did not load (metrics).
    """

    def __init__(
        self,
        path: str,
        *,
        current: Callable[[], Config],
        adopt: Callable[[Config], None],
        refused: Callable[[], None] = lambda: None,
    ) -> None:
        self.path = path
        self._current = current
        self._adopt = adopt
        self._refused = refused
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
                self._refused()
                LOG.error(
                    "config reload refused; the running config keeps serving",
                    extra={"fields": {"trigger": trigger, "path": self.path, "issues": issues}},
                )
            return None
        self.refusal = ()
        current = self._current()
        if config.checksum == current.checksum:
            if trigger in ("signal", "api"):
                LOG.info("config unchanged", extra={"fields": {"checksum": config.checksum}})
            return None
        self._adopt(config)
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

    async def watch(self, interval_s: float) -> None:
        """Poll every ``interval_s`` (until cancelled); a changed checksum is reloaded."""
        while True:
            await asyncio.sleep(interval_s)
            await self.reload(trigger="poll")
