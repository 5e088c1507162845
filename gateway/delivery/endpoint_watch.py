"""Which buyers' CRM endpoints are disabled, as a serving process sees them.

A CRM that answered 410 is disabled in the queue for every worker (``Queue.disable``) until
ops re-enable it. A distributed campaign then passes its leads to the next buyer
(``buyer.disabled``) instead of selling them into a queue nobody reads. The decision path must
not pay a store call for this: ``EndpointWatch.disabled`` answers from a view this process
refreshes in the background, at most every ``every_s`` seconds, while it is being asked. A
sale made in the seconds before the view catches up waits in the buyer's queue and is
delivered once the endpoint is enabled again: it is not lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable

from gateway.delivery.queue_base import Queue
from gateway.errors import ConfigError, StoreError
from gateway.types import AdvertiserId

LOG = logging.getLogger("leadgate.delivery")
#: How old the view may get while decisions ask it.
REFRESH_EVERY_S = 5.0


class EndpointWatch:
    """``queue``: opens the delivery queue on first use; ``advertisers``: the buyers to
    watch (the configuration served now)."""

    def __init__(
        self,
        queue: Callable[[], Queue],
        advertisers: Callable[[], Iterable[AdvertiserId]],
        *,
        every_s: float = REFRESH_EVERY_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._queue = queue
        self._advertisers = advertisers
        self._every_s = every_s
        self._clock = clock
        self._disabled: frozenset[AdvertiserId] = frozenset()
        self._checked_at = -float("inf")
        self._task: asyncio.Task[None] | None = None
        self._failing = False

    def disabled_now(self) -> frozenset[AdvertiserId]:
        """The advertisers whose endpoints were disabled at the last look; starts a new look
        in the background when that one is older than ``every_s``."""
        if self._task is None and self._clock() - self._checked_at >= self._every_s:
            self._checked_at = self._clock()
            self._task = asyncio.get_running_loop().create_task(self._refresh())
            self._task.add_done_callback(self._done)
        return self._disabled

    def _done(self, task: asyncio.Task[None]) -> None:
        self._task = None

    async def refresh(self) -> frozenset[AdvertiserId]:
        """Look now (tests, start-up); the advertisers seen disabled."""
        self._checked_at = self._clock()
        await self._refresh()
        return self._disabled

    async def _refresh(self) -> None:
        try:
            queue = self._queue()
            disabled = [a for a in self._advertisers() if await queue.disabled(a)]
        except (StoreError, ConfigError) as error:
            if not self._failing:
                self._failing = True
                LOG.warning("disabled endpoints not read; keeping the last view: %s", error)
            return
        if self._failing:
            self._failing = False
            LOG.info("disabled endpoints read again")
        self._disabled = frozenset(disabled)

    async def close(self) -> None:
        task = self._task
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
