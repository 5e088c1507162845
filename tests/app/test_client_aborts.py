"""A client that hangs up is not a server error, on the real process.

Publishers' HTTP clients time out and close connections mid-upload: each such post used to
count as ``status="500"`` with an error-level "unhandled error" log, enough to fire the 5xx
alert. They are counted as ``499`` (the client closed the request; no answer was sent) and
logged at info, without anything from the request.
"""

from __future__ import annotations

import asyncio

from processes import GatewayLauncher, GatewayProcess, wait_until
from prom_support import sample

ABORTS = 20
#: How long the gateway may take to notice the hang-ups (never an upper bound on speed).
WAIT_S = 20.0


def http_status(gateway: GatewayProcess, status: str) -> float:
    return sample(
        gateway.metrics(),
        "leadgate_http_requests_total",
        route="/v1/leads",
        method="POST",
        status=status,
    )


async def abort_mid_body(port: int) -> None:
    """A post whose client closes the connection after a tenth of the body it announced."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        b"POST /v1/leads HTTP/1.1\r\nHost: gateway\r\nAuthorization: Bearer demo-mailfox-key\r\n"
        b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
        b'{"campaign": "acme-always-on", "email": "aborted@example.fr"'
    )
    await writer.drain()
    await asyncio.sleep(0.05)
    writer.transport.abort()  # a reset, as a client's timeout does
    del reader


async def test_aborted_posts_are_499_at_info_never_500(gateways: GatewayLauncher) -> None:
    gateway = await gateways.astart()
    for _ in range(ABORTS):
        await abort_mid_body(gateway.port)

    async def counted() -> bool:
        return http_status(gateway, "499") >= ABORTS

    await wait_until(counted, WAIT_S)
    assert http_status(gateway, "499") == ABORTS
    assert http_status(gateway, "500") == 0
    records = gateway.log_records()
    # Nothing at error level once serving (the example config's CRM secrets are not set in
    # the test: that start-up error is not about requests).
    serving = next(i for i, r in enumerate(records) if r.get("msg") == "serving")
    assert [r for r in records[serving:] if r.get("level") in ("error", "critical")] == []
    aborted = [
        r for r in records if r.get("msg") == "client closed the connection before its answer"
    ]
    assert len(aborted) == ABORTS
    assert all(r["level"] == "info" and r["route"] == "/v1/leads" for r in aborted)
    assert "aborted@example.fr" not in gateway.log_text()
