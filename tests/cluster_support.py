"""A real Redis Cluster for the tests: 3 primaries and 3 replicas on loopback TCP ports.

``RedisCluster`` starts six ``redis-server`` processes in cluster mode (in-memory only,
``noeviction``), joins them with ``redis-cli --cluster create``, and waits until every node
agrees the cluster is whole. Tests use it to run the gateway against ``redis+cluster://``
and to fail a primary over to its replica. Like ``support.RedisServer`` it never touches a
Redis it did not start; every wait is bounded and its failure message carries what the nodes
(or ``redis-cli``) said.
"""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from redis.crc import key_slot
from support import redis_server_binary, wait_for_ping

HOST = "127.0.0.1"
SLOTS = 16384
PRIMARIES = 3
REPLICAS_PER_PRIMARY = 1
NODES = PRIMARIES * (1 + REPLICAS_PER_PRIMARY)
#: How long ``redis-cli --cluster create`` may take, and then the cluster to settle.
CREATE_TIMEOUT_S = 60.0
SETTLE_TIMEOUT_S = 30.0
#: A manual failover the replica did not complete in this time (the primary was slow to
#: pause its clients on a loaded machine) is asked for again, within ``SETTLE_TIMEOUT_S``.
FAILOVER_RETRY_S = 8.0
NODE_TIMEOUT_MS = 2000
#: Twice the failover auth timeout (``2 * max(2 * node timeout, 2 s)``), with a margin.
VOTES_KEPT_S = 2 * max(2 * NODE_TIMEOUT_MS, 2000) / 1000 + 0.5
START_TIMEOUT_S = 10.0
WAIT_REPLICA_MS = 5000
STOP_TIMEOUT_S = 10.0

Address = tuple[str, int]


class ClusterNotReady(AssertionError):
    """The cluster did not reach the expected state in time; the message says what it was."""


@dataclasses.dataclass(frozen=True, slots=True)
class NodeView:
    """One line of ``CLUSTER NODES``: a node as some member of the cluster sees it."""

    node_id: str
    address: Address
    flags: frozenset[str]
    primary_id: str  # "-" for a primary
    slots: tuple[tuple[int, int], ...]

    @property
    def is_primary(self) -> bool:
        return "master" in self.flags

    @property
    def failing(self) -> bool:
        return bool(self.flags & {"fail", "fail?", "handshake", "noaddr"})


def parse_cluster_nodes(text: str) -> list[NodeView]:
    """Parse the raw ``CLUSTER NODES`` reply (one node per line)."""
    views = []
    for line in text.strip().splitlines():
        fields = line.split()
        host, _, port = fields[1].split("@", 1)[0].rpartition(":")
        slots = []
        for spec in fields[8:]:
            if spec.startswith("["):  # a slot being migrated or imported
                continue
            first, _, last = spec.partition("-")
            slots.append((int(first), int(last or first)))
        views.append(
            NodeView(
                node_id=fields[0],
                address=(host, int(port)),
                flags=frozenset(fields[2].split(",")),
                primary_id=fields[3],
                slots=tuple(sorted(slots)),
            )
        )
    return views


def _free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports nothing listens on; all probes are held open together so
    the kernel never hands out the same port twice (redis needs each client port and its
    cluster bus port, set explicitly since ``port + 10000`` may not exist)."""
    with contextlib.ExitStack() as held:
        ports = []
        for _ in range(count):
            probe = held.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            probe.bind((HOST, 0))
            ports.append(int(probe.getsockname()[1]))
    return ports


def _client(address: Address) -> redis.Redis:
    """A plain synchronous client to one node, with short timeouts (the caller closes it)."""
    host, port = address
    return redis.Redis(
        host=host, port=port, decode_responses=True, socket_timeout=2, socket_connect_timeout=2
    )


def _command(address: Address, *args: str | int) -> str:
    """One command's raw string reply from one node (no redis-py parsing of cluster replies)."""
    with _client(address) as client:
        return str(client.execute_command(*args))


def _replication(address: Address) -> dict[str, str]:
    """``INFO replication`` of one node (``role``, ``master_link_status`` …) as strings."""
    with _client(address) as client:
        return {name: str(value) for name, value in client.info("replication").items()}


def _fields(text: str) -> dict[str, str]:
    """``CLUSTER INFO`` / ``INFO`` text as a mapping of its ``name:value`` lines."""
    found = {}
    for line in text.splitlines():
        name, sep, value = line.strip().partition(":")
        if sep:
            found[name] = value
    return found


class _Node:
    """One ``redis-server`` process in cluster mode with its own working directory."""

    def __init__(self, workdir: Path, port: int, bus_port: int) -> None:
        self.workdir = workdir
        self.address: Address = (HOST, port)
        self.bus_port = bus_port
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def log(self) -> Path:
        return self.workdir / "redis.log"

    def argv(self) -> list[str]:
        return [
            redis_server_binary(),
            "--port", str(self.address[1]),
            "--bind", HOST,
            "--protected-mode", "no",
            "--cluster-enabled", "yes",
            "--cluster-config-file", str(self.workdir / "nodes.conf"),
            "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
            "--cluster-port", str(self.bus_port),
            "--appendonly", "no",
            # A new replica's first sync starts at once, not after the default 5 s wait for
            # more replicas to share one RDB transfer.
            "--repl-diskless-sync-delay", "0",
            "--save", "",
            "--maxmemory-policy", "noeviction",
            "--dir", str(self.workdir),
            "--daemonize", "no",
            "--loglevel", "notice",
            "--logfile", str(self.log),
        ]  # fmt: skip

    def start(self) -> subprocess.Popen[bytes]:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            self.argv(), stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
        )
        return self.process

    def stop(self) -> None:
        """SIGTERM, then SIGKILL when the process has not exited after ``STOP_TIMEOUT_S``."""
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def log_tail(self, lines: int = 15) -> str:
        if not self.log.exists():
            return "(no redis.log)"
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def _node_problems(info: dict[str, str], views: list[NodeView]) -> list[str]:
    """What one node's ``CLUSTER INFO`` and ``CLUSTER NODES`` say is not yet whole."""
    found = [
        f"{name}:{info.get(name)}"
        for name, want in (
            ("cluster_state", "ok"),
            ("cluster_slots_ok", str(SLOTS)),
            ("cluster_known_nodes", str(NODES)),
        )
        if info.get(name) != want
    ]
    failing = [v.address for v in views if v.failing]
    if failing:
        found.append(f"sees failing nodes {failing}")
    primaries = [v for v in views if v.is_primary]
    served = sum(last - first + 1 for v in primaries for first, last in v.slots)
    if len(primaries) != PRIMARIES or not all(v.slots for v in primaries) or served != SLOTS:
        found.append(f"{len(primaries)} primaries serving {served} slots")
    return found


def _topology(views: list[NodeView]) -> frozenset[tuple[Address, Address | None]]:
    """Each node with its primary (``None`` for a primary): what all members must agree on."""
    by_id = {v.node_id: v.address for v in views}
    return frozenset((v.address, by_id.get(v.primary_id)) for v in views)


def _describe(topology: frozenset[tuple[Address, Address | None]]) -> str:
    return ", ".join(
        f"{node[1]}" + (f"->{primary[1]}" if primary else "(primary)")
        for node, primary in sorted(topology, key=lambda pair: (pair[1] or pair[0], pair[0]))
    )


class RedisCluster:
    """Six cluster-mode ``redis-server`` processes under ``workdir``: 3 primaries, 3 replicas.

    ``start()`` returns once every node reports ``cluster_state:ok`` with all 16384 slots
    assigned, sees the same three primaries, and every replica's link to its primary is up.
    ``stop()`` ends every process and may be called any number of times.
    """

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        ports = _free_ports(2 * NODES)
        self._nodes = [
            _Node(workdir / f"node{i}", ports[i], ports[NODES + i]) for i in range(NODES)
        ]
        #: When each node last won an election here (monotonic s), see ``_let_votes_expire``.
        self._promoted_at: dict[Address, float] = {}
        #: The last ``redis-cli --cluster create`` output, for failure messages.
        self.create_output = ""

    # -- life cycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Start the six servers, create the cluster and wait until it is whole."""
        try:
            for node in self._nodes:
                node.start()
            for node in self._nodes:
                assert node.process is not None
                wait_for_ping(f"redis://{HOST}:{node.address[1]}", node.process, START_TIMEOUT_S)
            self._create()
            self.wait_settled(SETTLE_TIMEOUT_S, "after redis-cli --cluster create")
        except BaseException:
            print(self._logs())
            self.stop()
            raise

    def _create(self) -> None:
        cli = shutil.which("redis-cli")
        if cli is None:
            pytest.fail("redis-cli is not on PATH: run ./.ci/install-redis", pytrace=False)
        argv = [
            cli,
            "--cluster", "create",
            *(f"{host}:{port}" for host, port in self.addresses),
            "--cluster-replicas", str(REPLICAS_PER_PRIMARY),
            "--cluster-yes",
        ]  # fmt: skip
        try:
            done = subprocess.run(
                argv,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=CREATE_TIMEOUT_S,
                check=False,
            )
        except subprocess.TimeoutExpired as timed_out:
            output = (timed_out.stdout or b"") + (timed_out.stderr or b"")
            self.create_output = output.decode(errors="replace")
            raise ClusterNotReady(
                f"redis-cli --cluster create did not finish within {CREATE_TIMEOUT_S}s:\n"
                f"{self.create_output}"
            ) from None
        self.create_output = (done.stdout + done.stderr).decode(errors="replace")
        if done.returncode != 0 or "[OK] All 16384 slots covered" not in self.create_output:
            raise ClusterNotReady(
                f"redis-cli --cluster create exited with {done.returncode}:\n{self.create_output}"
            )

    def stop(self) -> None:
        """End every server (SIGTERM, then SIGKILL); idempotent."""
        for node in self._nodes:
            node.stop()

    @property
    def running(self) -> bool:
        return all(n.process is not None and n.process.poll() is None for n in self._nodes)

    # -- topology -----------------------------------------------------------------------------

    @property
    def addresses(self) -> list[Address]:
        """Every node's address, in start order (primaries and replicas alike)."""
        return [node.address for node in self._nodes]

    @property
    def url(self) -> str:
        """The seed URL the gateway is given: the primary that serves slot 0."""
        host, port = self.primaries()[0]
        return f"redis+cluster://{host}:{port}"

    def nodes(self) -> list[NodeView]:
        """``CLUSTER NODES`` as the first node that answers sees it."""
        errors = []
        for address in self.addresses:
            try:
                return parse_cluster_nodes(_command(address, "CLUSTER", "NODES"))
            except (redis.RedisError, OSError) as error:
                errors.append(f"{address}: {error!r}")
        raise ClusterNotReady("no node answered CLUSTER NODES: " + "; ".join(errors))

    def primaries(self) -> list[Address]:
        """The primaries serving slots, ordered by their first slot (slot 0's first)."""
        serving = [v for v in self.nodes() if v.is_primary and v.slots and not v.failing]
        return [v.address for v in sorted(serving, key=lambda v: v.slots[0])]

    def replicas(self) -> list[Address]:
        """The replicas, ordered as their primaries in ``primaries()``."""
        views = self.nodes()
        order = {v.node_id: v.slots[0][0] for v in views if v.is_primary and v.slots}
        found = [v for v in views if "slave" in v.flags and not v.failing]
        return [v.address for v in sorted(found, key=lambda v: order.get(v.primary_id, SLOTS))]

    def replicas_of(self, primary: Address) -> list[Address]:
        views = self.nodes()
        ids = [v.node_id for v in views if v.address == primary and v.is_primary]
        if not ids:
            raise ValueError(f"{primary} is not a primary of this cluster")
        return [v.address for v in views if "slave" in v.flags and v.primary_id == ids[0]]

    def primary_for(self, key: str) -> Address:
        """The primary that serves ``key``'s hash slot (where a cluster client sends it)."""
        slot = key_slot(key.encode())
        for view in self.nodes():
            if view.is_primary and any(first <= slot <= last for first, last in view.slots):
                return view.address
        raise ClusterNotReady(f"no primary serves slot {slot}")

    def command(self, address: Address, *args: str | int) -> str:
        """One command's raw reply from one node, as text (``CLUSTER NODES``, ``WAIT`` …)."""
        return _command(address, *args)

    def role(self, address: Address) -> str:
        """``master`` or ``slave``, as the node itself reports it (``ROLE``)."""
        with _client(address) as client:
            reply = client.execute_command("ROLE")
        return str(reply[0])

    # -- settling ---------------------------------------------------------------------------

    def problems(self) -> list[str]:
        """What keeps the cluster from being whole right now (empty: it is whole): every node
        ok with all slots served, and every node's ``CLUSTER NODES`` the same 3 primaries with
        one linked-up replica each, so a client sees the same map wherever it asks."""
        found: list[str] = []
        maps: dict[Address, frozenset[tuple[Address, Address | None]]] = {}
        for address in self.addresses:
            try:
                info = _fields(_command(address, "CLUSTER", "INFO"))
                views = parse_cluster_nodes(_command(address, "CLUSTER", "NODES"))
                replication = _replication(address)
            except (redis.RedisError, OSError) as error:
                found.append(f"{address}: {error!r}")
                continue
            found += [f"{address}: {problem}" for problem in _node_problems(info, views)]
            if replication.get("role") == "slave" and replication.get("master_link_status") != "up":
                found.append(
                    f"{address}: master_link_status:{replication.get('master_link_status')}"
                )
            maps[address] = _topology(views)
        if len(set(maps.values())) > 1:
            found += [f"{address} sees {_describe(seen)}" for address, seen in maps.items()]
        return found

    def wait_settled(self, timeout_s: float, when: str) -> None:
        """Block until ``problems()`` is empty; fail with the last problems seen."""
        self._wait(timeout_s, when, self.problems)

    def _wait(self, timeout_s: float, when: str, problems: Callable[[], list[str]]) -> None:
        deadline = time.monotonic() + timeout_s
        last: list[str] = []
        while time.monotonic() < deadline:
            dead = [
                n.address for n in self._nodes if n.process is None or n.process.poll() is not None
            ]
            if dead:
                raise ClusterNotReady(f"{when}: redis-server exited at {dead}\n{self._logs()}")
            last = problems()
            if not last:
                return
            time.sleep(0.1)
        raise ClusterNotReady(
            f"cluster not ok within {timeout_s}s {when}:\n  "
            + "\n  ".join(last)
            + f"\nredis-cli --cluster create said:\n{self.create_output}\n{self._logs()}"
        )

    def _logs(self) -> str:
        return "\n".join(f"--- {n.address} redis.log:\n{n.log_tail()}" for n in self._nodes)

    # -- operations for tests ------------------------------------------------------------------

    def failover(self, primary: Address) -> Address:
        """Promote a replica of ``primary`` with ``CLUSTER FAILOVER`` (the coordinated manual
        failover: no acknowledged write is lost) and wait until it reports ``master`` and the
        cluster is whole again, the old primary now its replica. Returns the promoted node."""
        candidates = self.replicas_of(primary)
        if not candidates:
            raise ClusterNotReady(f"{primary} has no replica to fail over to")
        replica = candidates[0]
        self._let_votes_expire(replica)
        deadline = time.monotonic() + SETTLE_TIMEOUT_S

        def demoted() -> list[str]:
            left = self.problems()
            if self.role(primary) != "slave" or (primary, replica) not in _topology(self.nodes()):
                left.append(f"{primary} is not yet a replica of {replica}")
            return left

        while True:
            if self.role(replica) != "master":
                _command(replica, "CLUSTER", "FAILOVER")
            left_s = deadline - time.monotonic()
            try:
                self._wait(min(FAILOVER_RETRY_S, left_s), f"after failing {primary} over", demoted)
            except ClusterNotReady:
                # A manual failover that timed out (the primary did not pause its clients in
                # time) is asked for again; only the last attempt's failure is reported.
                if not self.running or left_s <= FAILOVER_RETRY_S:
                    raise
                continue
            self._promoted_at[replica] = time.monotonic()
            return replica

    def _let_votes_expire(self, replica: Address) -> None:
        """Redis 7.0 keeps a replica's last election (its votes) for twice the failover auth
        timeout; asked to fail over again within it, the replica takes those stale votes, wins
        at once under an old epoch and is demoted straight back. Wait that time out."""
        promoted_at = self._promoted_at.get(replica)
        if promoted_at is not None:
            time.sleep(max(0.0, promoted_at + VOTES_KEPT_S - time.monotonic()))

    def flush(self) -> None:
        """Empty every primary and its replica and forget every node's loaded scripts, so each
        test starts from nothing and also exercises the client's ``NOSCRIPT`` path. Waits for
        the cluster to be whole first (a previous test may just have failed a node over)."""
        self.wait_settled(SETTLE_TIMEOUT_S, "before emptying it")
        for address in self.primaries():
            with _client(address) as client:
                client.flushall()
                # Until the replica has it too: a test that fails over next finds it empty.
                client.execute_command("WAIT", REPLICAS_PER_PRIMARY, WAIT_REPLICA_MS)
        for address in self.addresses:
            with _client(address) as client:
                client.script_flush()

    def keys_everywhere(self) -> list[str]:
        """Every key on every primary (``SCAN``), sorted; for tests to check what was written."""
        found: list[str] = []
        for address in self.primaries():
            with _client(address) as client:
                found += [str(key) for key in client.scan_iter(count=1000)]
        return sorted(found)

    def keys_by_primary(self) -> dict[Address, list[str]]:
        """The keys of each primary (``SCAN``), sorted: where the cluster put what."""
        placed: dict[Address, list[str]] = {}
        for address in self.primaries():
            with _client(address) as client:
                placed[address] = sorted(str(key) for key in client.scan_iter(count=1000))
        return placed

    @contextlib.contextmanager
    def client(self, address: Address) -> Iterator[redis.Redis]:
        """A plain client to one node (not cluster-aware: it follows no MOVED)."""
        with _client(address) as client:
            yield client
