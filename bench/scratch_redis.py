"""A redis-server of the bench's own on a unix socket, for the in-process cost benches
(``bench.decide_cost``, ``bench.sale_cost``): nothing persisted, eviction refused, pinned to
CPU 1 when ``taskset`` exists (the measuring process keeps CPU 0), stopped on exit."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import redis


@contextlib.contextmanager
def scratch_redis(
    prefix: str, wrapper: Sequence[str] = (), server: str = "redis-server"
) -> Iterator[tuple[Path, redis.Redis]]:
    """The server's socket and a client to it, once it answers ``PING`` (within 5 s, 60 s
    under a ``wrapper``: the command the server runs under, valgrind for one). ``server``:
    the redis-server binary (another version's, say)."""
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        sock = Path(tmp) / "redis.sock"
        pin = ["taskset", "-c", "1"] if shutil.which("taskset") else []
        process = subprocess.Popen(
            [
                *pin,
                *wrapper,
                *(server, "--port", "0", "--unixsocket", str(sock), "--save", ""),
                *("--appendonly", "no", "--maxmemory-policy", "noeviction"),
            ],
            stdout=subprocess.DEVNULL,
            # valgrind's own report goes to stderr.
            stderr=subprocess.DEVNULL if wrapper else None,
        )
        try:
            client = redis.Redis(unix_socket_path=str(sock))
            for _ in range(600 if wrapper else 50):
                try:
                    client.ping()
                    break
                except redis.ConnectionError:
                    time.sleep(0.1)
            yield sock, client
        finally:
            process.terminate()
            process.wait(timeout=120 if wrapper else 10)
