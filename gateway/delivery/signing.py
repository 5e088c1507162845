"""Standard Webhooks signatures (https://www.standardwebhooks.com): what a CRM checks to trust
that a lead comes from this gateway, unchanged, and recently.

The signed content is ``<webhook-id>.<webhook-timestamp>.<body>``; the signature is
``v1,<base64 HMAC-SHA256>`` under the secret's key (the bytes after ``whsec_``, base64-decoded).
During a secret rotation every configured key signs and the signatures go space-separated in
one ``webhook-signature`` header, so a CRM that knows either secret accepts the request.

The ``webhook-id`` is the lead id, identical on every retry and replay, so a CRM drops repeats;
the timestamp and signature are fresh on each attempt, so a CRM's replay window (5 minutes in
the reference libraries) never refuses a late retry.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Sequence


def signature(keys: Sequence[bytes], msg_id: str, timestamp_s: int, body: bytes) -> str:
    """The ``webhook-signature`` value: one ``v1,<base64>`` per key, space-separated."""
    signed = f"{msg_id}.{timestamp_s}.".encode() + body
    return " ".join(
        "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode("ascii")
        for key in keys
    )


def webhook_headers(
    keys: Sequence[bytes], msg_id: str, timestamp_s: int, body: bytes
) -> dict[str, str]:
    """The three Standard Webhooks headers for one request."""
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp_s),
        "webhook-signature": signature(keys, msg_id, timestamp_s, body),
    }


class Signer:
    """The same signatures as ``signature``/``webhook_headers``, for one endpoint's keys: each
    key's HMAC state is prepared once and copied per message (a sender signs every request)."""

    __slots__ = ("_macs",)

    def __init__(self, keys: Sequence[bytes]) -> None:
        self._macs = tuple(hmac.new(key, digestmod=hashlib.sha256) for key in keys)

    def __bool__(self) -> bool:
        return bool(self._macs)

    def signature(self, msg_id: str, timestamp_s: int, body: bytes) -> str:
        signed = f"{msg_id}.{timestamp_s}.".encode() + body
        parts = []
        for prepared in self._macs:
            mac = prepared.copy()
            mac.update(signed)
            parts.append("v1," + binascii.b2a_base64(mac.digest(), newline=False).decode("ascii"))
        return " ".join(parts)

    def headers(self, msg_id: str, timestamp_s: int, body: bytes) -> dict[str, str]:
        """The three Standard Webhooks headers for one request."""
        return {
            "webhook-id": msg_id,
            "webhook-timestamp": str(timestamp_s),
            "webhook-signature": self.signature(msg_id, timestamp_s, body),
        }
