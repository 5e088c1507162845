"""Redis Cluster: the auto-pipeline of ``storage.pipeline``, one per primary, routed by slot.

``LEADGATE_REDIS_URL=redis+cluster://host:port`` (or ``rediss+cluster://``) names any node of
a cluster. The slot map is read from it (``CLUSTER SLOTS``); each command goes to the primary
that owns its first key's slot, and every script's keys share one slot by construction (the
hash tags of ``storage.keys``), so a decision is still one atomic script on one node.

Redirections are followed, and only those: ``MOVED`` (the slot moved: the map is read again
and the command sent to the owner the redirection named), ``ASK`` (a slot being migrated:
``ASKING`` and the command to the target, once), ``TRYAGAIN`` and ``CLUSTERDOWN`` (a failover
or migration in progress).
Each of these means the command did not run, so sending it again is safe. A transport error is
never retried here, as on a single Redis (``storage.pipeline``): the reply of a script that ran
may be what was lost. It fails the call with ``StoreUnavailable`` and the next call reads the
slot map again, which is how a failover is picked up.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from redis.crc import key_slot
from redis.exceptions import AskError, ClusterDownError, MovedError, ResponseError, TryAgainError

from gateway.errors import StoreUnavailable
from gateway.storage.base import Command
from gateway.storage.deadline import request_deadline
from gateway.storage.pipeline import AutoPipeline, ConnectCheck, RoundTripHook, connection_factory

SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}
SLOTS = 16384
#: Redirections followed for one command before giving up (a slot map that keeps changing).
_MAX_REDIRECTS = 5
#: Waits between attempts while the cluster elects a new primary (``TRYAGAIN``/``CLUSTERDOWN``).
_SETTLE_S = (0.05, 0.1, 0.2, 0.4, 0.8)
#: Commands without a key: sent to any primary (``broadcast`` sends to all).
_KEYLESS = frozenset({"PING", "SCRIPT", "CONFIG", "INFO", "CLUSTER", "ASKING", "TIME"})

Node = tuple[str, int]


def is_cluster_url(url: str) -> bool:
    return urlsplit(url).scheme in SCHEMES


def node_url(url: str, node: Node) -> str:
    """The plain ``redis://`` (or ``rediss://``) URL of one node: the cluster URL's scheme,
    credentials and options with the node's address."""
    parts = urlsplit(url)
    scheme = SCHEMES.get(parts.scheme, parts.scheme)
    credentials = parts.netloc.rpartition("@")[0]
    host = f"[{node[0]}]" if ":" in node[0] else node[0]
    netloc = f"{credentials}@{host}:{node[1]}" if credentials else f"{host}:{node[1]}"
    return urlunsplit((scheme, netloc, parts.path, parts.query, ""))


def command_slot(command: Command) -> int | None:
    """The slot a command's first key hashes to; ``None`` for a keyless command."""
    name = str(command[0]).upper()
    if name in ("EVAL", "EVALSHA"):
        key = command[3] if int(command[2]) > 0 else None
    elif name in _KEYLESS or len(command) < 2:
        key = None
    else:
        key = command[1]
    if key is None:
        return None
    return int(key_slot(key if isinstance(key, bytes) else str(key).encode()))


class ClusterPipeline:
    """``AutoPipeline``'s contract (``execute``, ``round_trips``, ``close``) over a cluster,
    plus ``broadcast`` to every primary (script loading, settings checks)."""

    def __init__(
        self,
        url: str,
        socket_timeout_s: float,
        *,
        decode_responses: bool,
        connections: int = 2,
        on_round_trip: RoundTripHook | None = None,
        on_connect: ConnectCheck | None = None,
    ) -> None:
        parts = urlsplit(url)
        if parts.hostname is None:
            raise ValueError("a cluster URL names one of its nodes: redis+cluster://host:port")
        self._url = url
        self._seeds: list[Node] = [(parts.hostname, parts.port or 6379)]
        self._timeout_s = socket_timeout_s
        self._decode = decode_responses
        self._connections = connections
        self._on_round_trip = on_round_trip
        self._on_connect = on_connect
        self._nodes: dict[Node, AutoPipeline] = {}
        self._slots: list[Node] = []
        self._refreshing: asyncio.Task[None] | None = None
        self._retired_round_trips = 0

    @property
    def round_trips(self) -> int:
        return self._retired_round_trips + sum(p.round_trips for p in self._nodes.values())

    def _pipe(self, node: Node) -> AutoPipeline:
        pipe = self._nodes.get(node)
        if pipe is None:
            pipe = self._nodes[node] = AutoPipeline(
                connection_factory(node_url(self._url, node), self._timeout_s,
                                   decode_responses=self._decode),
                connections=self._connections,
                on_round_trip=self._on_round_trip,
                timeout_s=self._timeout_s,
                on_connect=self._on_connect,
            )  # fmt: skip
        return pipe

    # --- the slot map ------------------------------------------------------------------------

    async def refresh(self) -> None:
        """Read the slot map again (callers that arrive meanwhile wait for the same read)."""
        if self._refreshing is None or self._refreshing.done():
            self._refreshing = asyncio.get_running_loop().create_task(self._read_slots())
        await asyncio.shield(self._refreshing)

    async def _read_slots(self) -> None:
        candidates = list(dict.fromkeys([*self._primaries(), *self._seeds, *self._nodes]))
        last: Exception | None = None
        for node in candidates:
            try:
                (reply,) = await self._pipe(node).execute([("CLUSTER", "SLOTS")])
            except StoreUnavailable as error:
                last = error
                continue
            if isinstance(reply, ResponseError):
                last = reply
                continue
            table: list[Node | None] = [None] * SLOTS
            for entry in reply:
                start, end, primary = int(entry[0]), int(entry[1]), entry[2]
                host = primary[0].decode() if isinstance(primary[0], bytes) else str(primary[0])
                owner = (host or node[0], int(primary[1]))
                for slot in range(start, end + 1):
                    table[slot] = owner
            if any(owner is None for owner in table):
                last = ClusterDownError("the cluster does not cover every slot")
                continue
            self._slots = [owner for owner in table if owner is not None]
            self._seeds = list(dict.fromkeys([*self._primaries(), *self._seeds]))
            return
        self._slots = []
        raise StoreUnavailable(f"redis cluster: no node answered CLUSTER SLOTS ({last})")

    def _primaries(self) -> list[Node]:
        return list(dict.fromkeys(self._slots))

    # --- commands --------------------------------------------------------------------------

    async def execute(self, commands: Sequence[Command]) -> list[Any]:
        """One result per command, in order (a ``ResponseError`` in place of a refusal), each
        sent to its slot's primary; the per-node batches go out concurrently."""
        if not self._slots:
            await self.refresh()
        results: list[Any] = [None] * len(commands)
        asking: dict[int, Node] = {}
        todo = list(range(len(commands)))
        for attempt in range(_MAX_REDIRECTS + 1):
            groups: dict[Node, list[int]] = {}
            for i in todo:
                slot = command_slot(commands[i])
                node = asking.get(i) or (self._slots[slot] if slot is not None else self._slots[0])
                groups.setdefault(node, []).append(i)
            try:
                replies = await asyncio.gather(
                    *(self._send(node, [commands[i] for i in ids], [i in asking for i in ids])
                      for node, ids in groups.items())
                )  # fmt: skip
            except StoreUnavailable:
                self._slots = []  # a node went away (a failover?): read the map next time
                raise
            again: list[int] = []
            moved = settle = False
            asking = {}
            #: slot -> the node a MOVED named: trusted over a map read from a node that may
            #: not have heard of a failover yet (a map that still names the old primary
            #: would send the command back to it, redirect after redirect).
            owners: dict[int, Node] = {}
            for ids, answers in zip(groups.values(), replies, strict=True):
                for i, answer in zip(ids, answers, strict=True):
                    results[i] = answer
                    if isinstance(answer, MovedError):
                        moved = True
                        owners[answer.slot_id] = (answer.host, int(answer.port))
                        again.append(i)
                    elif isinstance(answer, AskError):
                        asking[i] = (answer.host, int(answer.port))
                        again.append(i)
                    elif isinstance(answer, TryAgainError | ClusterDownError):
                        settle = True
                        again.append(i)
            if not again or attempt == _MAX_REDIRECTS:
                return results
            if settle:
                pause_s = _SETTLE_S[min(attempt, len(_SETTLE_S) - 1)]
                deadline = request_deadline()
                if deadline is not None and asyncio.get_running_loop().time() + pause_s > deadline:
                    # TRYAGAIN and CLUSTERDOWN mean the command did not run: a 503 that says so,
                    # within the request's deadline, rather than a wait past it.
                    raise StoreUnavailable(
                        "redis cluster: still failing over at the request's deadline",
                        deadline_s=deadline,
                    )
                await asyncio.sleep(pause_s)
            if moved or settle:
                await self.refresh()
            if self._slots:
                for slot, owner in owners.items():
                    self._slots[slot] = owner
            todo = again
        return results

    async def _send(self, node: Node, commands: list[Command], asking: list[bool]) -> list[Any]:
        if not any(asking):
            return await self._pipe(node).execute(commands)
        # ASKING holds for the next command on the same connection: each pair goes as one
        # unit, which the auto-pipeline writes contiguously.
        pipe = self._pipe(node)
        sent = await asyncio.gather(
            *(pipe.execute([("ASKING",), c]) if ask else pipe.execute([c])
              for c, ask in zip(commands, asking, strict=True))
        )  # fmt: skip
        return [answers[-1] for answers in sent]

    async def connect_all(self) -> None:
        """``AutoPipeline.connect_all`` on every primary's pipeline."""
        if not self._slots:
            await self.refresh()
        await asyncio.gather(*(self._pipe(n).connect_all() for n in self._primaries()))

    async def broadcast(self, commands: Sequence[Command]) -> list[list[Any]]:
        """``commands`` on every primary; each primary's results."""
        if not self._slots:
            await self.refresh()
        primaries = self._primaries()
        return list(await asyncio.gather(*(self._pipe(n).execute(commands) for n in primaries)))

    async def close(self) -> None:
        if self._refreshing is not None:
            self._refreshing.cancel()
        for pipe in self._nodes.values():
            self._retired_round_trips += pipe.round_trips
            await pipe.close()
        self._nodes = {}


def open_pipeline(
    url: str,
    socket_timeout_s: float,
    *,
    decode_responses: bool,
    connections: int = 4,
    on_round_trip: RoundTripHook | None = None,
    on_connect: ConnectCheck | None = None,
) -> AutoPipeline | ClusterPipeline:
    """The auto-pipeline for ``url``: over one Redis, or over the cluster it names.
    ``on_connect`` runs on every new connection (each node's) before anything else."""
    if is_cluster_url(url):
        return ClusterPipeline(
            url,
            socket_timeout_s,
            decode_responses=decode_responses,
            connections=max(1, connections // 2),
            on_round_trip=on_round_trip,
            on_connect=on_connect,
        )
    return AutoPipeline(
        connection_factory(url, socket_timeout_s, decode_responses=decode_responses),
        connections=connections,
        on_round_trip=on_round_trip,
        timeout_s=socket_timeout_s,
        on_connect=on_connect,
    )
