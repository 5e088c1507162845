"""The ports of ``spare_redis``'s servers (``support.spare_port``): a server down for part of an
outage test leaves its port unbound, and nothing else the tests start may take it meanwhile.
Every other test server's port (``free_port``) and every outgoing connection's local port
come from the kernel's ephemeral range, so spare ports are below it, in a block per
pytest-xdist worker, and a port found taken is passed over."""

from __future__ import annotations

import socket
from collections.abc import Callable

import pytest
import support
from support import SPARE_PORTS_PER_WORKER, RedisServer, free_port, spare_port


def test_spare_ports_are_below_the_ephemeral_range_and_each_its_own() -> None:
    low = support._ephemeral_low()
    ports = [spare_port() for _ in range(5)]
    assert all(port < low for port in ports)
    assert len(set(ports)) == 5
    # Nothing the other test servers are given can be one of them.
    assert all(free_port() >= low for _ in range(20))


def test_each_xdist_worker_has_a_block_of_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    blocks = []
    for worker in ("gw0", "gw1", "gw3"):
        monkeypatch.setenv("PYTEST_XDIST_WORKER", worker)
        monkeypatch.setattr(support, "_spare_ports", None)
        port = spare_port()
        blocks.append((port - 20_000) // SPARE_PORTS_PER_WORKER)
    assert blocks == [0, 1, 3]


def test_a_port_in_use_is_passed_over(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(support, "_spare_ports", None)
    first = spare_port()
    monkeypatch.setattr(support, "_spare_ports", None)  # the same block, from its start
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", first))
        holder.listen()
        assert spare_port() != first


def test_a_spare_redis_restarts_on_its_port(spare_redis: Callable[[], RedisServer]) -> None:
    server = spare_redis()
    assert server.port is not None
    assert server.port < support._ephemeral_low()
    server.start()
    with server.client() as client:
        client.set("k", "v")
    server.kill()
    server.start()  # the same port, an empty server
    with server.client() as client:
        assert client.get("k") is None
