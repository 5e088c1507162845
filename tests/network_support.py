"""The test network of the observability tests (and of the plan's): two partners, two
advertisers, three campaigns with something for every metric; the CRMs it delivers to; the
posts of its partners.
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from http_support import Listening, Reply, request

#: API keys of the test network's partners.
KEYS = {"p-alpha": "obs-alpha-key", "p-beta": "obs-beta-key"}


def key_hash(api_key: str) -> str:
    return "sha256:" + hashlib.sha256(api_key.encode()).hexdigest()


def network(crm_url: str | None = None, *, buyers: bool = False) -> dict[str, Any]:
    """A small network with something for every metric.

    - ``acme-main`` (acme): advertiser-wide dedup, a day cap of 1000 and 30 per partner per hour;
      it takes pings (held 60 s).
    - ``nova-main`` (nova): campaign dedup, a per-channel day cap of 2.
    - ``nova-summer`` (nova): a peak campaign that ended (leads rejected ``campaign.inactive``).
    ``p-alpha`` (email) posts everywhere; ``p-beta`` (coreg) to acme-main and nova-main.
    With ``crm_url`` (a ``CrmReceiver``), leads are delivered as signed webhooks to
    ``<crm_url>/acme`` (answered 200) and ``<crm_url>/nova`` (answered 422: dead letters).
    With ``buyers``: ``sold-main``, sold exclusively to acme (at most 2 a day, price 10) then
    nova (price 7), naming its buyers; p-alpha posts to it.
    """
    data: dict[str, Any] = {
        "channels": [{"id": "email"}, {"id": "coreg"}],
        "advertisers": [{"id": "acme"}, {"id": "nova"}],
        "campaigns": [
            {
                "id": "acme-main",
                "advertiser": "acme",
                "kind": "always_on",
                "timezone": "Europe/Paris",
                "required": ["email"],
                "ping_ttl_s": 60,
                "dedup": [{"scope": "advertiser", "window": "30d"}],
                "caps": [
                    {"subject": "campaign", "window": "day", "limit": 1000},
                    {"subject": "partner", "window": "1h", "limit": 30},
                ],
            },
            {
                "id": "nova-main",
                "advertiser": "nova",
                "kind": "always_on",
                "timezone": "Europe/Paris",
                "required": ["email"],
                "dedup": [{"scope": "campaign", "window": "30d"}],
                "caps": [{"subject": "channel", "window": "day", "limit": 2}],
            },
            {
                "id": "nova-summer",
                "advertiser": "nova",
                "kind": "peak",
                "timezone": "Europe/Paris",
                "start": "2020-06-01",
                "end": "2020-08-31",
                "required": ["email"],
            },
        ],
        "partners": [
            {
                "id": "p-alpha",
                "api_keys": [key_hash(KEYS["p-alpha"])],
                "channels": ["email"],
                "campaigns": ["acme-main", "nova-main", "nova-summer"],
            },
            {
                "id": "p-beta",
                "api_keys": [key_hash(KEYS["p-beta"])],
                "channels": ["coreg"],
                "campaigns": ["acme-main", "nova-main"],
            },
        ],
    }
    if buyers:
        data["campaigns"].append(
            {
                "id": "sold-main",
                "kind": "always_on",
                "timezone": "Europe/Paris",
                "required": ["email"],
                "show_buyers": True,
                "payout": 3,
                "buyers": [
                    {
                        "advertiser": "acme",
                        "price": 10,
                        "caps": [{"subject": "buyer", "window": "day", "limit": 2}],
                    },
                    {"advertiser": "nova", "price": 7},
                ],
            }
        )
        data["partners"][0]["campaigns"].append("sold-main")
    if crm_url is not None:
        data["delivery"] = {
            "retry_schedule": ["0s", 0.2],
            "request_timeout": 2,
            "allow_networks": ["127.0.0.0/8"],
        }
        for advertiser in data["advertisers"]:
            advertiser["delivery"] = {
                "adapter": "webhook",
                "url": f"{crm_url}/{advertiser['id']}",
                "secret_env": "OBS_CRM_SECRET",
            }
    return data


#: The webhook signing secret the test CRMs' endpoints are configured with.
CRM_SECRET = "whsec_" + base64.b64encode(b"observability-crm-secret-0123456").decode()
#: What a ``leadgate worker`` of the network needs in its environment to sign its webhooks.
WORKER_ENV = {"OBS_CRM_SECRET": CRM_SECRET}


class CrmReceiver:
    """A real HTTP server on loopback standing in for the advertisers' CRMs: ``/acme`` takes
    every lead (200), ``/nova`` refuses every lead (422). It keeps the bodies it received."""

    def __init__(self) -> None:
        received: list[tuple[str, bytes]] = []
        self.received = received

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                received.append((self.path, body))
                status = 422 if self.path.startswith("/nova") else 200
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def paths(self) -> list[str]:
        return [path for path, _ in list(self.received)]

    def __enter__(self) -> CrmReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def write_config(path: Path, data: Mapping[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(dict(data), sort_keys=False), encoding="utf-8")
    return path


def post(
    gateway: Listening, partner: str, lead: Mapping[str, object], *, path: str = "/v1/leads"
) -> Reply:
    """POST ``lead`` to ``path`` (``/v1/leads``; a check, a ping) with ``partner``'s API key."""
    headers = {"Authorization": f"Bearer {KEYS[partner]}"}
    return request("POST", f"{gateway.url}{path}", body=dict(lead), headers=headers)


def batch(gateway: Listening, partner: str, leads: Sequence[object]) -> Reply:
    """POST ``leads`` to ``/v1/leads/batch`` with ``partner``'s API key."""
    headers = {"Authorization": f"Bearer {KEYS[partner]}"}
    return request(
        "POST", f"{gateway.url}/v1/leads/batch", body={"leads": list(leads)}, headers=headers
    )
