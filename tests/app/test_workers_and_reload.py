"""``leadgate serve --workers N`` and config reload on the real processes.

Several workers share one port (SO_REUSEPORT) and one prometheus-client multiprocess
directory: whichever worker answers ``/metrics`` reports the totals of all of them. SIGTERM to
the supervisor drains every worker (requests waiting on a paused Redis still get their
decision) and exits 0. SIGHUP, or a changed file when polling, reloads the config without
dropping in-flight requests; a broken file is refused and the old config keeps serving.
"""

from __future__ import annotations

import copy
import os
import signal
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from http_support import Reply, request
from network_support import key_hash, network, post, write_config
from processes import GatewayLauncher, GatewayProcess, wait_for
from prom_support import sample
from support import RedisServer

PAUSE_MS = 1500


def lead(n: int, campaign: str = "acme-main", tag: str = "w") -> dict[str, object]:
    return {"campaign": campaign, "email": f"{tag}{n}.person@example.com"}


def accepted_total(text: str) -> float:
    return sum(
        sample(
            text,
            "leadgate_leads_total",
            partner=partner,
            campaign="acme-main",
            channel=channel,
            decision="accepted",
        )
        for partner, channel in (("p-alpha", "email"), ("p-beta", "coreg"))
    )


def with_gamma(data: dict[str, object]) -> dict[str, object]:
    """The network plus partner ``p-gamma`` (key ``obs-gamma-key``) on acme-main."""
    changed = copy.deepcopy(data)
    partners = changed["partners"]
    assert isinstance(partners, list)
    partners.append(
        {
            "id": "p-gamma",
            "api_keys": [key_hash("obs-gamma-key")],
            "channels": ["email"],
            "campaigns": ["acme-main"],
        }
    )
    return changed


def post_as_gamma(server: GatewayProcess, n: int) -> Reply:
    return request(
        "POST",
        f"{server.url}/v1/leads",
        body=lead(n, tag="gamma"),
        headers={"Authorization": "Bearer obs-gamma-key"},
    )


def pause(redis: RedisServer, pause_ms: int) -> None:
    with redis.client() as client:
        client.client_pause(pause_ms, all=True)


def test_two_workers_report_the_totals_of_both(
    gateways: GatewayLauncher, tmp_path: Path, redis_url: str
) -> None:
    config = write_config(tmp_path / "leadgate.yaml", network())
    server = gateways.start(config, redis_url=redis_url, workers=2)
    posts = 40
    for n in range(posts):
        partner = "p-alpha" if n % 2 else "p-beta"
        reply = post(server, partner, lead(n))
        assert reply.status == 200, reply
        assert reply.body["decision"] == "accepted", reply.body
    decided_by = {r["pid"] for r in server.log_records() if r.get("msg") == "decision"}
    assert len(decided_by) == 2, "both workers must have decided leads"
    # Each scrape is answered by either worker: every answer has the total of both.
    for _ in range(8):
        text = server.metrics()
        assert accepted_total(text) == posts
        assert (
            sample(
                text,
                "leadgate_http_requests_total",
                route="/v1/leads",
                method="POST",
                status="200",
            )
            == posts
        )
    server.send_signal(signal.SIGTERM)
    assert server.wait_exit(15) == 0
    assert server.messages().count("stopped") == 3  # two workers, then the supervisor


def test_sigterm_drains_every_worker_then_exits_0(
    gateways: GatewayLauncher, tmp_path: Path, spare_redis: Callable[[], RedisServer]
) -> None:
    redis = spare_redis()
    redis.start()
    config = write_config(tmp_path / "leadgate.yaml", network())
    server = gateways.start(config, redis_url=redis.url, workers=2)
    assert post(server, "p-alpha", lead(0, tag="warm")).status == 200
    in_flight = 8
    pause(redis, PAUSE_MS)
    with ThreadPoolExecutor(in_flight) as pool:
        futures = [pool.submit(post, server, "p-alpha", lead(n, tag="drain")) for n in range(8)]
        time.sleep(0.4)  # the posts are sent and wait on the paused store
        server.send_signal(signal.SIGTERM)
        replies = [f.result(timeout=15) for f in futures]
    assert [r.status for r in replies] == [200] * in_flight
    assert {r.body["decision"] for r in replies} == {"accepted"}
    assert server.wait_exit(15) == 0
    messages = server.messages()
    assert messages.count("draining") == 2
    last_draining = max(i for i, m in enumerate(messages) if m == "draining")
    decided_after_drain = [m for m in messages[last_draining:] if m == "decision"]
    assert decided_after_drain, "in-flight leads were decided after the drain began"


def test_sighup_reloads_without_dropping_in_flight_requests(
    gateways: GatewayLauncher, tmp_path: Path, spare_redis: Callable[[], RedisServer]
) -> None:
    redis = spare_redis()
    redis.start()
    path = write_config(tmp_path / "leadgate.yaml", network())
    server = gateways.start(path, redis_url=redis.url, args=["--reload-poll-s", "0"])
    assert post_as_gamma(server, 0).status == 401

    # A broken edit is refused: the old config keeps serving.
    path.write_text("partners: [unclosed\n", encoding="utf-8")
    server.send_signal(signal.SIGHUP)
    wait_for(
        lambda: "config reload refused; the running config keeps serving" in server.messages(),
        10,
        "refusal logged",
    )
    refusal = next(r for r in server.log_records() if r["msg"].startswith("config reload refused"))
    assert refusal["level"] == "error"
    assert any("YAML syntax error" in issue for issue in refusal["issues"])
    assert post(server, "p-alpha", lead(1)).status == 200
    assert post_as_gamma(server, 1).status == 401

    # A valid edit, while requests wait on a paused store: they finish, the new partner works.
    write_config(path, with_gamma(network()))
    pause(redis, PAUSE_MS)
    with ThreadPoolExecutor(6) as pool:
        futures = [pool.submit(post, server, "p-beta", lead(n, tag="inflight")) for n in range(6)]
        time.sleep(0.3)
        server.send_signal(signal.SIGHUP)
        wait_for(lambda: "config reloaded" in server.messages(), 10, "reload logged")
        replies = [f.result(timeout=15) for f in futures]
    assert [r.status for r in replies] == [200] * 6
    assert {r.body["decision"] for r in replies} == {"accepted"}
    gamma = post_as_gamma(server, 2)
    assert gamma.status == 200, gamma
    assert gamma.body["decision"] == "accepted"

    text = server.metrics()
    assert sample(text, "leadgate_config_reloads_total", result="failure") == 1
    assert sample(text, "leadgate_config_reloads_total", result="success") == 1
    reloaded = next(r for r in server.log_records() if r["msg"] == "config reloaded")
    assert sample(text, "leadgate_config_info", checksum=reloaded["checksum"]) == 1
    assert sample(text, "leadgate_config_info", checksum=reloaded["previous_checksum"]) == 0
    # The new partner's series exist from the reload on.
    assert (
        sample(
            text,
            "leadgate_leads_total",
            partner="p-gamma",
            campaign="acme-main",
            channel="email",
            decision="accepted",
        )
        == 1
    )
    server.send_signal(signal.SIGTERM)
    assert server.wait_exit(15) == 0


def test_a_changed_file_is_picked_up_by_polling_and_a_broken_one_reported_once(
    gateways: GatewayLauncher, tmp_path: Path, redis_url: str
) -> None:
    path = write_config(tmp_path / "leadgate.yaml", network())
    server = gateways.start(path, redis_url=redis_url, args=["--reload-poll-s", "0.2"])
    assert post_as_gamma(server, 0).status == 401
    write_config(path, with_gamma(network()))
    wait_for(lambda: post_as_gamma(server, 1).status == 200, 10, "new partner accepted")

    path.write_text("channels: {", encoding="utf-8")
    wait_for(
        lambda: any(m.startswith("config reload refused") for m in server.messages()),
        10,
        "refusal logged",
    )
    time.sleep(1.0)  # five more polls of the same broken file
    refusals = [m for m in server.messages() if m.startswith("config reload refused")]
    assert len(refusals) == 1
    text = server.metrics()
    assert sample(text, "leadgate_config_reloads_total", result="failure") == 1
    assert sample(text, "leadgate_config_reloads_total", result="success") == 1
    assert post_as_gamma(server, 2).status == 200  # the last good config still serves


def test_sighup_to_the_supervisor_reloads_every_worker(
    gateways: GatewayLauncher, tmp_path: Path, redis_url: str
) -> None:
    path = write_config(tmp_path / "leadgate.yaml", network())
    server = gateways.start(path, redis_url=redis_url, workers=2, args=["--reload-poll-s", "0"])
    write_config(path, with_gamma(network()))
    server.send_signal(signal.SIGHUP)
    wait_for(lambda: server.messages().count("config reloaded") == 2, 10, "both workers reloaded")
    # New connections land on either worker: every one of them knows the new partner.
    for n in range(10):
        assert post_as_gamma(server, n).status == 200
    assert sample(server.metrics(), "leadgate_config_reloads_total", result="success") == 2
    assert post(server, "p-alpha", lead(99)).status == 200


def test_a_worker_killed_is_replaced_and_its_counts_are_kept(
    gateways: GatewayLauncher, tmp_path: Path, redis_url: str
) -> None:
    config = write_config(tmp_path / "leadgate.yaml", network())
    server = gateways.start(config, redis_url=redis_url, workers=2)
    for n in range(10):
        assert post(server, "p-alpha", lead(n, tag="before")).status == 200
    workers = [r["worker_pid"] for r in server.log_records() if r["msg"] == "worker started"]
    assert len(workers) == 2
    os.kill(workers[0], signal.SIGKILL)
    wait_for(lambda: server.messages().count("serving") == 3, 15, "a replacement worker serving")
    exited = next(r for r in server.log_records() if r["msg"] == "worker exited unexpectedly")
    assert exited["worker_pid"] == workers[0]
    for n in range(10):
        assert post(server, "p-beta", lead(n, tag="after")).status == 200
    # The dead worker's counts stay in the totals.
    assert accepted_total(server.metrics()) == 20
    server.send_signal(signal.SIGTERM)
    assert server.wait_exit(15) == 0
