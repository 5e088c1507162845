"""No personal data anywhere the running gateway writes: its stderr log, its /metrics page
and every Redis key name.

The in-process version (tests/web/test_privacy.py) checks what the app writes through the
logging module; this one runs the real ``leadgate serve`` process, so it also catches what
only the process does: aiohttp's own loggers, the access log, start-up and shutdown lines,
the supervisor. The canaries and the search (every spelling a canary could take) are shared
with the in-process test. The accepted canaries are then delivered by a real ``leadgate worker``
to a real CRM receiver (which must get them: that is what delivery is for), and the worker's
log, its /metrics and the Redis key names after delivery are searched too.
"""

from __future__ import annotations

import signal
import urllib.parse
from pathlib import Path

import redis
from http_support import request
from network_support import KEYS, WORKER_ENV, CrmReceiver, batch, network, post, write_config
from processes import GatewayLauncher, GatewayProcess, wait_for
from web.test_privacy import BAD_CANARY, CANARY, leaks


def test_no_canary_in_the_logs_metrics_or_redis_keys_of_gateway_and_delivery(
    gateways: GatewayLauncher, tmp_path: Path, redis_url: str
) -> None:
    with CrmReceiver() as crm:
        config = write_config(tmp_path / "leadgate.yaml", network(crm.url, buyers=True))
        server = gateways.start(config, redis_url=redis_url, workers=2)
        worker = gateways.start_worker(config, redis_url=redis_url, env=WORKER_ENV)
        run_canaries(server, worker, crm, redis_url)


def run_canaries(
    server: GatewayProcess, worker: GatewayProcess, crm: CrmReceiver, redis_url: str
) -> None:
    alpha = {"Authorization": f"Bearer {KEYS['p-alpha']}"}
    lead = {**CANARY, "campaign": "acme-main", "ref": "canary-1"}
    form = {"Content-Type": "application/x-www-form-urlencoded"}

    decided = [
        post(server, "p-alpha", lead),
        post(server, "p-beta", lead),  # a duplicate
        post(server, "p-alpha", {**lead, "campaign": "nova-summer"}),  # campaign inactive
        request(
            "POST",
            f"{server.url}/v1/leads",
            body={**lead, "campaign": "nova-main"},
            headers={**alpha, "Idempotency-Key": str(CANARY["email"])},
        ),
        request(
            "GET",
            f"{server.url}/v1/leads?"
            + urllib.parse.urlencode(
                {**{k: str(v) for k, v in lead.items()}, "api_key": KEYS["p-beta"]}
            ),
        ),
        batch(server, "p-alpha", [lead, {**BAD_CANARY, "campaign": "acme-main"}]),
        # Sold to buyers, with a key: acme already has the canary (its advertiser-wide
        # dedup), so it goes down the waterfall to nova.
        request(
            "POST",
            f"{server.url}/v1/leads",
            body={**lead, "campaign": "sold-main"},
            headers={**alpha, "Idempotency-Key": f"sold-{CANARY['email']}"},
        ),
    ]
    for reply in decided:
        assert reply.status == 200, reply
    bad = {**BAD_CANARY, "campaign": "acme-main"}
    refused = [
        post(server, "p-alpha", bad),
        request(
            "GET",
            f"{server.url}/v1/leads?" + urllib.parse.urlencode({k: str(v) for k, v in bad.items()}),
            headers=alpha,
        ),
        request(
            "POST",
            f"{server.url}/v1/leads",
            raw=urllib.parse.urlencode(bad).encode(),
            headers={**alpha, **form},
        ),
        request(
            "POST",
            f"{server.url}/v1/leads",
            body=lead,
            headers={"X-Api-Key": str(CANARY["email"])},
        ),
        request("GET", f"{server.url}/v1/leads/{CANARY['email']}"),
    ]
    for reply in refused:
        assert 400 <= reply.status < 500, reply

    assert decided[-1].body["sold_to"] == ["nova"]
    # One lead accepted for acme (delivered), one for nova and one sold to nova (refused by
    # its CRM: dead letters).
    expected = ["/acme", "/nova", "/nova"]
    wait_for(lambda: sorted(crm.paths()) == expected, 15, "both CRMs reached")
    assert sorted(crm.paths()) == expected
    assert all(leaks([body.decode()]) for _, body in crm.received), "the CRM gets the lead"
    wait_for(lambda: "dead letter" in worker.messages(), 10, "the dead letter logged")

    metrics = server.metrics() + worker.metrics()
    with redis.Redis.from_url(redis_url) as client:
        key_names = [key.decode() for key in client.scan_iter(count=1000)]
    for process in (server, worker):
        process.send_signal(signal.SIGTERM)
        assert process.wait_exit(15) == 0
    logs = server.log_text().splitlines() + worker.log_text().splitlines()

    # The search must have had something to search.
    assert sum(1 for r in server.log_records() if r.get("msg") == "decision") == 7
    sold = [r for r in server.log_records() if r.get("campaign") == "sold-main"]
    assert [r.get("offers") for r in sold] == [["acme:buyer.duplicate", "nova:sold"]]
    assert "dead letter" in worker.messages()
    assert 'leadgate_leads_total{campaign="acme-main",channel="email"' in metrics
    assert 'leadgate_delivery_attempts_total{advertiser="acme",outcome="delivered"} 1.0' in metrics
    # Neither process's page has prometheus-client's _created series (docs/observability.md).
    assert "_created" not in metrics
    assert any(":seen:" in key for key in key_names)
    assert leaks(logs) == []
    assert leaks([metrics]) == []
    assert leaks(key_names) == []
