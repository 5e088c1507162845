"""The test launcher's answer to a port taken between ``free_port`` and the gateway's bind
(tests run in 4 processes, each starting servers on ports it found free): the gateway is
started again on other ports, and only a port the test chose itself fails the test."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import processes
import pytest
from processes import GatewayLauncher
from support import free_port


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port something else listens on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


def test_a_port_taken_meanwhile_gets_the_gateway_started_again_elsewhere(
    gateways: GatewayLauncher, taken_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The first port "found free" is the taken one, as when another test's server took it.
    answers = iter([taken_port])
    monkeypatch.setattr(processes, "free_port", lambda: next(answers, None) or free_port())

    gateway = gateways.start()

    assert gateway.port != taken_port
    assert len(gateways.started) == 2
    assert "address already in use" in gateways.started[0].log_text()


def test_a_port_the_test_chose_fails_it_when_taken(
    gateways: GatewayLauncher, taken_port: int
) -> None:
    with pytest.raises(pytest.fail.Exception, match="address already in use"):
        gateways.start(port=taken_port)
    assert len(gateways.started) == 1
