"""Fixtures shared by every test: our own redis-server processes, both decision stores, and
the real gateway processes (``gateways``) with an HTTP client for them (``http``).

The tests never talk to a Redis they did not start (one may already run on 127.0.0.1:6379):
the session server listens on a unix socket in a temporary directory, TCP disabled.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio
from cluster_support import RedisCluster
from http_support import REQUEST_TIMEOUT_S
from processes import GatewayLauncher
from support import RedisServer, StoreView, redis_server_binary, spare_port

from gateway.decision.engine import DecisionEngine
from gateway.storage.base import Store
from gateway.storage.memory import MemoryStore
from gateway.storage.redis import RedisStore

#: sun_path is 108 bytes on Linux (104 on macOS), the terminating NUL included.
MAX_UNIX_SOCKET_PATH = 100


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One in-memory redis-server for the whole run, on a unix socket in a temporary dir."""
    redis_server_binary()  # fail (not skip) with the install hint when it is missing
    workdir = tmp_path_factory.mktemp("redis")
    with contextlib.ExitStack() as cleanup:
        socket_dir = workdir
        if len(str(workdir / "redis.sock")) > MAX_UNIX_SOCKET_PATH:  # a long --basetemp
            socket_dir = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="lg-")))
        server = RedisServer(workdir, unix_socket=socket_dir / "redis.sock")
        server.start()
        cleanup.callback(server.stop)
        yield server


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The session server's URL, emptied (and back to ``noeviction``) before each test."""
    with redis_server.client() as client:
        client.flushall()
        client.script_flush()
        client.config_set("maxmemory-policy", "noeviction")
    return redis_server.url


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    """A real Redis Cluster (3 primaries, 3 replicas on loopback TCP ports) for the whole run,
    started on first use only."""
    redis_server_binary()  # fail (not skip) with the install hint when it is missing
    cluster = RedisCluster(tmp_path_factory.mktemp("redis-cluster"))
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def cluster_url(redis_cluster: RedisCluster) -> str:
    """The cluster's seed URL (``redis+cluster://``), every primary emptied before the test."""
    redis_cluster.flush()
    return redis_cluster.url


@pytest.fixture
def spare_redis(tmp_path: Path) -> Iterator[Callable[[], RedisServer]]:
    """Make extra redis-servers on TCP ports of their own (``spare_port``; not started yet) for
    outage tests: each can be started, killed and started again on its port, which no other
    server of the tests takes while it is down. All are stopped after the test."""
    made: list[RedisServer] = []

    def make() -> RedisServer:
        server = RedisServer(tmp_path / f"spare{len(made)}", port=spare_port())
        made.append(server)
        return server

    yield make
    for server in made:
        server.stop()


@pytest_asyncio.fixture(params=["embedded", "redis"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[Store]:
    """Each contract test runs on the embedded store and on a real, emptied Redis."""
    made: Store
    if request.param == "embedded":
        made = MemoryStore()
    else:
        made = RedisStore(request.getfixturevalue("redis_url"))
    try:
        yield made
    finally:
        await made.close()


@pytest.fixture
def engine(store: Store) -> DecisionEngine:
    return DecisionEngine(store)


@pytest.fixture
def view(store: Store, request: pytest.FixtureRequest) -> StoreView:
    """Read back what ``store`` holds (its delivery streams, its key names)."""
    url = request.getfixturevalue("redis_url") if isinstance(store, RedisStore) else None
    return StoreView(store, url)


@pytest.fixture
def gateways(tmp_path: Path) -> Iterator[GatewayLauncher]:
    """Starts ``leadgate serve`` and ``leadgate worker`` processes; all killed after the test."""
    launcher = GatewayLauncher(tmp_path)
    try:
        yield launcher
    finally:
        launcher.close()


@pytest_asyncio.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """A client for 127.0.0.1 only; every exchange is bounded by ``REQUEST_TIMEOUT_S``."""
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        yield session
