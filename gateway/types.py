"""Identifiers that must never be mixed up, and the small value types shared by every domain."""

from __future__ import annotations

from typing import NewType

PartnerId = NewType("PartnerId", str)
CampaignId = NewType("CampaignId", str)
AdvertiserId = NewType("AdvertiserId", str)
ChannelId = NewType("ChannelId", str)
LeadId = NewType("LeadId", str)
#: Keyed BLAKE2b of one normalized identity value, as `<key id>.<url-safe base64>`
#: (``k1.bq4Cq5W0a3Jz2Xw8Lw1aNg``). The only form in which an identity is ever remembered.
Fingerprint = NewType("Fingerprint", str)


class FingerprintKey:
    """A secret key for fingerprints, with the short id that versions it (``k1``, ``2026a``).

    The secret never appears in ``repr`` or ``str``; rotating keys means a new id, so
    fingerprints made with different keys can never be confused.
    """

    __slots__ = ("id", "scheme", "secret")

    def __init__(self, id: str, secret: bytes, scheme: str = "raw") -> None:
        self.id = id
        self.secret = secret
        #: ``raw``: the key hashes the normalized value itself (the first scheme); ``sha256``:
        #: it hashes the value's SHA-256 digest, so a publisher's hashed identifier can be
        #: fingerprinted too (``leads.fingerprint``).
        self.scheme = scheme

    def __repr__(self) -> str:
        return (
            f"FingerprintKey(id={self.id!r}, scheme={self.scheme!r}, "
            f"secret=<{len(self.secret)} bytes>)"
        )

    __str__ = __repr__
