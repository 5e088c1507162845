"""A tiny stand-in CRM for the local stack (deploy/compose.yaml) and `make image-test`.

It takes the leads leadgate's worker delivers (`adapter: webhook`), checks each one's Standard
Webhooks signature against the secret in ``CRM_WEBHOOK_SECRET`` (``whsec_<base64>``), prints a
line per lead so they visibly arrive (``docker compose logs -f crm``), and lists what it got
at ``GET /leads`` (JSON). A lead whose signature does not verify is answered 401, which the
worker retries: a wrong secret shows as leads that never arrive.

The Python standard library only: it runs in the leadgate image (its Python) or on any host.
Not a CRM to use for anything real: it keeps what it receives in memory, unbounded but for
``CRM_MAX_LEADS``.

    CRM_WEBHOOK_SECRET=whsec_... python crm_receiver.py [--host 0.0.0.0] [--port 8099]
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import os
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

#: Standard Webhooks: a timestamp further than this from now is refused (replays).
TOLERANCE_S = 300
MAX_BODY_BYTES = 1 << 20


def verify(secret: str, headers: dict[str, str], body: bytes, now_s: float) -> bool:
    """True when one of ``webhook-signature``'s ``v1,`` signatures is the HMAC-SHA256, keyed
    with the secret, of ``<webhook-id>.<webhook-timestamp>.<body>``, and the timestamp is
    within ``TOLERANCE_S`` of ``now_s``."""
    msg_id = headers.get("webhook-id", "")
    stamp = headers.get("webhook-timestamp", "")
    if not msg_id or not stamp.isdigit() or abs(now_s - int(stamp)) > TOLERANCE_S:
        return False
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{msg_id}.{stamp}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    given = [s.partition(",")[2] for s in headers.get("webhook-signature", "").split()]
    return any(hmac.compare_digest(expected, g) for g in given if g)


class Leads:
    """What arrived, in order; one entry per distinct webhook-id (repeats are counted)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.lock = threading.Lock()
        self.items: list[dict[str, Any]] = []
        self.seen: set[str] = set()
        self.repeats = 0

    def add(self, webhook_id: str, path: str, lead: Any) -> bool:
        with self.lock:
            if webhook_id in self.seen:
                self.repeats += 1
                return False
            self.seen.add(webhook_id)
            self.items.append({"webhook_id": webhook_id, "path": path, "lead": lead})
            del self.items[: max(0, len(self.items) - self.limit)]
            return True

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {"received": list(self.items), "repeats": self.repeats}


def make_handler(secret: str, leads: Leads) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "leadgate-demo-crm"

        def _answer(self, status: int, payload: Any) -> None:
            body = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            if self.path == "/leads":
                self._answer(200, leads.snapshot())
            elif self.path == "/healthz":
                self._answer(200, {"status": "ok"})
            else:
                self._answer(404, {"error": "not found"})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY_BYTES:
                self._answer(413, {"error": "too large"})
                return
            body = self.rfile.read(length)
            headers = {k.lower(): v for k, v in self.headers.items()}
            if not verify(secret, headers, body, time.time()):
                print(f"crm: REFUSED {self.path}: bad or missing signature", flush=True)
                self._answer(401, {"error": "bad signature"})
                return
            try:
                lead = json.loads(body)
            except ValueError:
                self._answer(400, {"error": "not JSON"})
                return
            webhook_id = headers["webhook-id"]
            if leads.add(webhook_id, self.path, lead):
                # The webhook adapter's body: {"type", "timestamp", "data": {the lead}}.
                data = lead.get("data") if isinstance(lead, dict) else None
                who = data.get("email", "?") if isinstance(data, dict) else "?"
                print(f"crm: lead {webhook_id} for {self.path}: {who}", flush=True)
            self._answer(200, {"status": "ok", "id": webhook_id})

        def log_message(self, format: str, *args: Any) -> None:
            """The lead lines above say what matters; no access log."""

    return Handler


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="0.0.0.0")  # noqa: S104 (a container listens on all)
    parser.add_argument("--port", type=int, default=8099)
    args = parser.parse_args(argv)
    secret = os.environ.get("CRM_WEBHOOK_SECRET", "")
    if not secret.startswith("whsec_"):
        print("crm: CRM_WEBHOOK_SECRET must be set to whsec_<base64>", file=sys.stderr)
        return 2
    leads = Leads(int(os.environ.get("CRM_MAX_LEADS", "10000")))
    server = ThreadingHTTPServer((args.host, args.port), make_handler(secret, leads))
    # SIGTERM (docker stop) ends serve_forever from another thread, then the process exits 0.
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    print(f"crm: listening on {args.host}:{args.port}", flush=True)
    server.serve_forever(poll_interval=0.2)
    server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
