"""A mark's bucket, bucket name, field and legacy bucket are what the layout has always made
of a fingerprint (the marks already in Redis are found by them): ``keys.seen_mark`` against
the layout's definition, written out here as the docs state it."""

from __future__ import annotations

import xxhash
from hypothesis import given
from hypothesis import strategies as st

from gateway.leads.fingerprint import b64url
from gateway.storage import keys
from gateway.types import Fingerprint


def _defined(fingerprint: str) -> tuple[str, int, str, str, int]:
    digest = xxhash.xxh3_128_digest(fingerprint.encode())
    bucket = int.from_bytes(digest[:2], "big") % keys.SEEN_BUCKETS
    return (
        fingerprint.partition(".")[0],
        bucket,
        b64url(digest[2:11]),
        f"{bucket:04x}",
        bucket % keys.LEGACY_SEEN_BUCKETS,
    )


def test_the_bucket_is_two_bytes_of_the_digest() -> None:
    # What seen_mark relies on to read the bucket and its name straight from the digest.
    assert keys.SEEN_BUCKETS == 1 << 16


@given(
    key_id=st.text(alphabet="abcdefghij0123456789", min_size=1, max_size=4),
    body=st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_",
                 min_size=1, max_size=32),
)  # fmt: skip
def test_a_mark_is_what_the_layout_defines(key_id: str, body: str) -> None:
    fingerprint = f"{key_id}.{body}"
    assert tuple(keys.seen_mark(Fingerprint(fingerprint))) == _defined(fingerprint)


def test_known_marks() -> None:
    for n in range(5000):
        fingerprint = f"k1.person-{n}"
        assert tuple(keys.seen_mark(Fingerprint(fingerprint))) == _defined(fingerprint)
