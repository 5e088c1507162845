"""How many connections a serving process may hold: derived from its open-file limit.

Every connection is a file descriptor, and a process that runs out of them can neither
accept a client nor read its config file for a reload. So the public listener's bound
(``server.max_connections``) stays below the open-file limit by a reserve for everything else
a serving process opens:

=====================  =====  ===============================================================
what                   fds    why
=====================  =====  ===============================================================
base                   64     stdio, the listening sockets, the event loop, a reload's file
                              and rule-pack reads, the multiprocess metrics files, DNS
Redis                  32     the store's auto-pipeline and the delivery queue (a cluster:
                              a few per primary)
ops listeners          64     the admin and metrics listeners' own bound (``OPS_CONNECTIONS``
                              each)
refusals               64     refused connections lingering while the 503 is read
in-process worker      2 x N  ``delivery.worker_concurrency`` CRM connections and their
                              kept-alive spares, with ``--with-worker``
=====================  =====  ===============================================================

At start the soft limit is raised to the hard limit (safe: asyncio and uvloop use epoll, not
``select``), so ``ulimit -n`` is what an operator sets. The derived bound is capped at
``MAX_DERIVED_CONNECTIONS`` (memory: each connection holds a few tens of KiB).
"""

from __future__ import annotations

import logging
import resource

from gateway.config.model import ServerSettings
from gateway.web.connections import REFUSAL_MAX_LINGERING, Limits

LOG = logging.getLogger("leadgate")
#: The admin and metrics listeners' bound each (scrapers and operators, not partners).
OPS_CONNECTIONS = 32
RESERVED_FDS = 64 + 32 + 2 * OPS_CONNECTIONS + REFUSAL_MAX_LINGERING
MAX_DERIVED_CONNECTIONS = 10_000
#: The bound never goes below this, however low the limit (the process would not be useful).
MIN_CONNECTIONS = 16
#: The highest soft limit set at start when the hard limit is unlimited.
_UNLIMITED_SOFT = 1 << 20


def raise_open_file_limit() -> int:
    """Raise the soft ``RLIMIT_NOFILE`` to the hard one; the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = _UNLIMITED_SOFT if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as refused:
            LOG.warning("could not raise the open-file limit: %s", refused)
    return _UNLIMITED_SOFT if soft == resource.RLIM_INFINITY else soft


def connection_bound(configured: int | None, soft_limit: int, worker_concurrency: int) -> int:
    """The public listener's bound: ``configured`` (``server.max_connections``) or derived from
    ``soft_limit``, never more than the limit leaves after the reserve (a configured value
    above it is lowered, with a warning). ``worker_concurrency``: of an in-process worker, 0
    without one."""
    room = soft_limit - RESERVED_FDS - 2 * worker_concurrency
    allowed = max(MIN_CONNECTIONS, room)
    if configured is None:
        return min(allowed, MAX_DERIVED_CONNECTIONS)
    if configured > allowed:
        LOG.warning(
            "server.max_connections lowered to what the open-file limit leaves",
            extra={
                "fields": {
                    "configured": configured,
                    "used": allowed,
                    "open_file_limit": soft_limit,
                }
            },
        )
        return allowed
    return configured


def listener_limits(server: ServerSettings, max_connections: int) -> Limits:
    """A listener's deadlines (``server:``) and its bound on open connections."""
    return Limits(
        head_timeout_s=server.head_timeout_s,
        keepalive_timeout_s=server.keepalive_timeout_s,
        max_connections=max_connections,
    )
