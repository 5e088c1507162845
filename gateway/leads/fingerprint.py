"""Fingerprints: the only form in which leadgate remembers an identity.

A fingerprint is keyed BLAKE2b-128 of the normalized value, written ``<key id>.<22 chars of
unpadded url-safe base64>`` (``k1.bq4Cq5W0a3Jz2Xw8Lw1aNg``, 25 characters for a 2-character id).

Why keyed: a plain hash of an email is a public function, so anyone holding a Redis dump could
hash a list of known addresses and confirm which people were sent to which advertiser. Keyed
BLAKE2b is a PRF (as HMAC-SHA256 would be, at half the cost and in one pass): without the secret
key, a fingerprint says nothing about the value, not even whether a guess is right.

Why the key id: it versions the fingerprint. Rotating the secret means a new id; fingerprints
made under different keys never compare equal by accident, and during a rotation ``lookups``
also yields the fingerprints under previous keys, so a person remembered under the old key is
still a duplicate until the old windows expire.

Why ``kind`` in BLAKE2b's ``person`` parameter: domain separation. The string ``"+33612345678"``
as an email identity and as a phone identity give unrelated fingerprints.

Two schemes, chosen per key (``FingerprintKey.scheme``): ``raw`` keys hash the normalized value
(the first scheme); ``sha256`` keys hash the value's SHA-256 digest instead. A publisher who
sends only ``sha256(identity)`` (a pre-ping check, a ping: docs/api.md) can then be
fingerprinted exactly as a full post is (``digest_lookups``), and a person seen either way is
found the other way. The digest is not a secret (anyone can hash a guessed address), so it is
the keyed BLAKE2b over it that protects the person, as over the value under ``raw``. A key's
scheme is part of its id's meaning: switching scheme is a key rotation (docs/privacy.md).
"""

from __future__ import annotations

import binascii
import hashlib
import re
from collections.abc import Sequence

from gateway.types import Fingerprint, FingerprintKey

DIGEST_BYTES = 16
#: BLAKE2b's limits for ``key`` and ``person``.
MAX_KEY_BYTES = 64
MAX_KIND_BYTES = 16
#: Shorter secrets are refused: 128 bits is the strength the digest size promises.
MIN_SECRET_BYTES = 16
#: 16 bytes of base64 without the ``==`` padding.
_B64_CHARS = 22
#: Key ids end up in every fingerprint and in Redis keys: short, and never the ``.`` separator.
_KEY_ID = re.compile(r"[A-Za-z0-9_-]{1,16}")
_PRECOMPUTED_KINDS = ("email", "phone")
#: ``FingerprintKey.scheme``: what a key hashes (the module docstring).
SCHEMES = ("raw", "sha256")
#: Standard base64 to its url-safe alphabet (what ``base64.urlsafe_b64encode`` does, inlined).
_URLSAFE = bytes.maketrans(b"+/", b"-_")


class Fingerprinter:
    """Fingerprints identity values under ``keys[0]``; ``lookups`` also under the older keys.

    ``keys``: the current key first, then the previous keys still being rotated out. Raises
    ``ValueError`` for no key, a duplicated or malformed key id, or a secret shorter than 16
    bytes. Secrets longer than 64 bytes are truncated to 64 (BLAKE2b's key size).

    Values must already be normalized (``NormalizedEmail.identity``, E.164): the fingerprinter
    hashes the exact UTF-8 bytes it is given.
    """

    __slots__ = ("_hashers", "_keys", "digest_ready", "key_ids")

    def __init__(self, keys: Sequence[FingerprintKey]) -> None:
        if not keys:
            raise ValueError("at least one fingerprint key is required")
        ids = [key.id for key in keys]
        if len(set(ids)) != len(ids):
            raise ValueError("fingerprint key ids must be unique")
        for key in keys:
            if not _KEY_ID.fullmatch(key.id):
                raise ValueError(
                    f"fingerprint key id {key.id!r} must be 1-16 letters, digits, '_' or '-'"
                )
            if len(key.secret) < MIN_SECRET_BYTES:
                raise ValueError(
                    f"fingerprint key {key.id!r} is too short (at least {MIN_SECRET_BYTES} bytes)"
                )
            if key.scheme not in SCHEMES:
                raise ValueError(f"fingerprint key {key.id!r}: scheme must be one of {SCHEMES}")
        self.key_ids: tuple[str, ...] = tuple(ids)
        #: Whether the current key fingerprints SHA-256 digests: only then can a hashed
        #: identifier be checked against what new leads leave behind.
        self.digest_ready = keys[0].scheme == "sha256"
        self._keys: tuple[tuple[str, bytes, bool], ...] = tuple(
            (f"{key.id}.", key.secret[:MAX_KEY_BYTES], key.scheme == "sha256") for key in keys
        )
        # Keying BLAKE2b costs one compression of a padded key block; doing it once per
        # (key, kind) and copying the primed state makes a fingerprint about twice as cheap.
        self._hashers: dict[str, tuple[tuple[str, hashlib.blake2b, bool], ...]] = {}
        for kind in _PRECOMPUTED_KINDS:
            self._prime(kind)

    def fingerprint(self, kind: str, value: str) -> Fingerprint:
        """The fingerprint of ``value`` as an identity of ``kind`` under the current key."""
        prefix, hasher, digested = (self._hashers.get(kind) or self._prime(kind))[0]
        return _encode(prefix, hasher, _input(value, digested))

    def lookups(self, kind: str, value: str) -> tuple[Fingerprint, ...]:
        """The fingerprints to look up for ``value``: the current key's first, then each previous
        key's, so dedup finds a person remembered before a key rotation."""
        hashers = self._hashers.get(kind) or self._prime(kind)
        if len(hashers) == 1:
            prefix, hasher, digested = hashers[0]
            return (_encode(prefix, hasher, _input(value, digested)),)
        raw = value.encode()
        digest = hashlib.sha256(raw).digest() if any(h[2] for h in hashers) else b""
        return tuple(
            _encode(prefix, hasher, digest if digested else raw)
            for prefix, hasher, digested in hashers
        )

    def digest_lookups(self, kind: str, digest: bytes) -> tuple[Fingerprint, ...]:
        """The fingerprints to look up for an identity known only by ``digest``, the SHA-256 of
        its normalized value: one per ``sha256`` key, the current key's first. Empty when no
        key is a ``sha256`` key; a person remembered only under a ``raw`` key is not found."""
        if len(digest) != hashlib.sha256().digest_size:
            raise ValueError("a SHA-256 digest is 32 bytes")
        hashers = self._hashers.get(kind) or self._prime(kind)
        return tuple(
            _encode(prefix, hasher, digest) for prefix, hasher, digested in hashers if digested
        )

    def _prime(self, kind: str) -> tuple[tuple[str, hashlib.blake2b, bool], ...]:
        person = kind.encode()
        if not person or len(person) > MAX_KIND_BYTES:
            # Truncating would let two kinds share a prefix and lose the domain separation.
            raise ValueError(f"identity kind {kind!r} must be 1-{MAX_KIND_BYTES} bytes")
        primed = tuple(
            (
                prefix,
                hashlib.blake2b(key=secret, digest_size=DIGEST_BYTES, person=person),
                digested,
            )
            for prefix, secret, digested in self._keys
        )
        self._hashers[kind] = primed
        return primed

    def __repr__(self) -> str:
        return f"Fingerprinter(key_ids={self.key_ids!r})"


def b64url(data: bytes) -> str:
    """``data`` in URL-safe base64, padding kept (``base64.urlsafe_b64encode`` without its
    wrappers: fingerprints and dedup marks are encoded for every identity of every lead)."""
    return binascii.b2a_base64(data, newline=False).translate(_URLSAFE).decode("ascii")


def _input(value: str, digested: bool) -> bytes:
    """What a key hashes of ``value``: its UTF-8 bytes (``raw``) or their SHA-256 (``sha256``)."""
    raw = value.encode()
    return hashlib.sha256(raw).digest() if digested else raw


def _encode(prefix: str, primed: hashlib.blake2b, data: bytes) -> Fingerprint:
    hasher = primed.copy()
    hasher.update(data)
    return Fingerprint(prefix + b64url(hasher.digest())[:_B64_CHARS])
