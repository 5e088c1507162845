from __future__ import annotations

import base64
import hashlib
import re

import phonenumbers
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from gateway.leads.email import normalize_email
from gateway.leads.fingerprint import Fingerprinter
from gateway.leads.phone import normalize_phone
from gateway.types import FingerprintKey

K1 = FingerprintKey("k1", b"\x01" * 32)
K2 = FingerprintKey("k2", b"\x02" * 32)
FORMAT = re.compile(r"k1\.[A-Za-z0-9_-]{22}")
FINGERPRINTER = Fingerprinter([K1])


def test_format_and_algorithm_are_keyed_blake2b_with_the_kind_as_person() -> None:
    value = "jeandupont@gmail.com"
    digest = hashlib.blake2b(
        value.encode(), key=K1.secret, digest_size=16, person=b"email"
    ).digest()
    expected = "k1." + base64.urlsafe_b64encode(digest).decode().rstrip("=")
    fingerprint = FINGERPRINTER.fingerprint("email", value)
    assert fingerprint == expected
    assert FORMAT.fullmatch(fingerprint)
    assert len(fingerprint) == 25


def test_is_deterministic_across_instances() -> None:
    again = Fingerprinter([FingerprintKey("k1", b"\x01" * 32)])
    assert again.fingerprint("phone", "+33612345678") == FINGERPRINTER.fingerprint(
        "phone", "+33612345678"
    )


def test_lookups_find_people_remembered_under_a_previous_key() -> None:
    before_rotation = Fingerprinter([K1])
    during_rotation = Fingerprinter([K2, K1])
    remembered = before_rotation.fingerprint("email", "jean@orange.fr")
    lookups = during_rotation.lookups("email", "jean@orange.fr")
    assert lookups == (during_rotation.fingerprint("email", "jean@orange.fr"), remembered)
    assert lookups[0].startswith("k2.")


S2 = FingerprintKey("s2", b"\x03" * 32, "sha256")
S3 = FingerprintKey("s3", b"\x04" * 32, "sha256")


def test_a_sha256_key_fingerprints_the_values_sha256() -> None:
    value = "jeandupont@gmail.com"
    sha = hashlib.sha256(value.encode()).digest()
    digest = hashlib.blake2b(sha, key=S2.secret, digest_size=16, person=b"email").digest()
    expected = "s2." + base64.urlsafe_b64encode(digest).decode().rstrip("=")
    hashed = Fingerprinter([S2])
    assert hashed.fingerprint("email", value) == expected
    assert hashed.lookups("email", value) == (expected,)
    # The publisher's hash of the same identity: the same fingerprint.
    assert hashed.digest_lookups("email", sha) == (expected,)
    # Same secret, other scheme: another fingerprint (a scheme change is a rotation).
    raw = Fingerprinter([FingerprintKey("s2", S2.secret)])
    assert raw.fingerprint("email", value) != expected
    assert hashed.digest_ready
    assert not raw.digest_ready


def test_digest_lookups_use_only_sha256_keys_in_their_order() -> None:
    value = "+33612345678"
    sha = hashlib.sha256(value.encode()).digest()
    mixed = Fingerprinter([S2, K1, S3])
    full = mixed.lookups("phone", value)
    assert [f.split(".")[0] for f in full] == ["s2", "k1", "s3"]
    assert mixed.digest_lookups("phone", sha) == (full[0], full[2])
    # Rotating from a raw key: the current sha256 key first, the raw key unreachable by hash.
    assert Fingerprinter([K1]).digest_lookups("phone", sha) == ()
    with pytest.raises(ValueError, match="32 bytes"):
        mixed.digest_lookups("phone", sha[:16])


def test_refuses_an_unknown_scheme() -> None:
    with pytest.raises(ValueError, match="scheme"):
        Fingerprinter([FingerprintKey("x1", b"\x01" * 32, "md5")])


def test_kinds_beyond_email_and_phone_are_primed_on_first_use() -> None:
    assert FINGERPRINTER.fingerprint("siret", "12345678901234") != FINGERPRINTER.fingerprint(
        "email", "12345678901234"
    )


@pytest.mark.parametrize(
    ("keys", "reason"),
    [
        ([], "at least one"),
        ([K1, FingerprintKey("k1", b"\x03" * 32)], "unique"),
        ([FingerprintKey("k.1", b"\x03" * 32)], "letters, digits"),
        ([FingerprintKey("", b"\x03" * 32)], "letters, digits"),
        ([FingerprintKey("k3", b"short")], "too short"),
    ],
)
def test_refuses_bad_keys(keys: list[FingerprintKey], reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        Fingerprinter(keys)


@pytest.mark.parametrize("kind", ["", "a-kind-longer-than-16-bytes"])
def test_refuses_kinds_that_cannot_be_a_blake2b_person(kind: str) -> None:
    with pytest.raises(ValueError, match="1-16 bytes"):
        FINGERPRINTER.fingerprint(kind, "x")


def test_repr_shows_no_secret() -> None:
    secret = FingerprintKey("k9", b"s3cr3t-s3cr3t-s3cr3t")
    assert "s3cr3t" not in repr(Fingerprinter([secret]))


# --- every spelling of one person gives one fingerprint --------------------------------------


def _random_case(draw: st.DrawFn, text: str) -> str:
    flips = draw(st.lists(st.booleans(), min_size=len(text), max_size=len(text)))
    return "".join(ch.upper() if flip else ch for ch, flip in zip(text, flips, strict=True))


@st.composite
def gmail_spellings(draw: st.DrawFn) -> tuple[str, str]:
    """(the mailbox's canonical identity, one way a person or a form may have written it)."""
    core = draw(st.text("abcdefghijklmnopqrstuvwxyz0123456789", min_size=3, max_size=20))
    # Dots between any two characters, never two in a row nor at an end (invalid syntax).
    dots = draw(st.sets(st.integers(1, len(core) - 1)))
    local = "".join(("." if i in dots else "") + ch for i, ch in enumerate(core))
    if tag := draw(st.none() | st.text("abcdefghijklmnopqrstuvwxyz0123456789-.", max_size=10)):
        assume(".." not in tag and not tag.endswith("."))
        local += "+" + tag
    domain = draw(st.sampled_from(["gmail.com", "googlemail.com"]))
    space = st.sampled_from(["", " ", "\t", "  \n"])
    spelling = draw(space) + _random_case(draw, local) + "@" + _random_case(draw, domain)
    return f"{core}@gmail.com", spelling + draw(space)


@settings(max_examples=100, deadline=None)
@given(gmail_spellings())
def test_every_spelling_of_an_address_has_one_fingerprint(case: tuple[str, str]) -> None:
    canonical, spelling = case
    assert FINGERPRINTER.fingerprint(
        "email", normalize_email(spelling).identity
    ) == FINGERPRINTER.fingerprint("email", canonical)


@settings(max_examples=50, deadline=None)
@given(
    st.sampled_from(["jean.dupont@orange.fr", "jean@münchen.de", "a.b@outlook.com"]),
    st.data(),
)
def test_domain_case_never_changes_the_fingerprint(address: str, data: st.DataObject) -> None:
    local, _, domain = address.partition("@")
    upper = "".join(ch.upper() if data.draw(st.booleans()) else ch for ch in domain)
    assert FINGERPRINTER.fingerprint(
        "email", normalize_email(f" {local}@{upper}\t").identity
    ) == FINGERPRINTER.fingerprint("email", normalize_email(address).identity)


_REGIONS = ["FR", "BE", "CH", "DE", "GB", "ES", "IT", "US", "MA", "RE"]


@st.composite
def phone_spellings(draw: st.DrawFn) -> tuple[str, str, str]:
    """(E.164, one spelling of the number, the default region to read it in)."""
    region = draw(st.sampled_from(_REGIONS))
    example = phonenumbers.example_number_for_type(region, phonenumbers.PhoneNumberType.MOBILE)
    assert example is not None
    national = phonenumbers.national_significant_number(example)
    tail = draw(st.text("0123456789", min_size=4, max_size=4))
    number = phonenumbers.parse(f"+{example.country_code}{national[:-4]}{tail}")
    assume(phonenumbers.is_valid_number(number))
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    nsn = phonenumbers.national_significant_number(number)
    cc = str(number.country_code)
    formats = [
        (phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL), region),
        (phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL), "FR"),
        (e164, draw(st.sampled_from(_REGIONS))),
        (f"00{cc}{nsn}", "FR"),  # 00 is the international prefix in France
        (f"00 {cc} {nsn}", "DE"),
        (f"(+{cc}) {nsn}", draw(st.sampled_from(_REGIONS))),
    ]
    spelling, default_region = draw(st.sampled_from(formats))
    separator = draw(st.sampled_from([" ", ".", "-", ""]))
    spelling = spelling.replace(" ", separator)
    padding = st.sampled_from(["", " ", "\t"])
    return e164, draw(padding) + spelling + draw(padding), default_region


@settings(max_examples=100, deadline=None)
@given(phone_spellings())
def test_every_spelling_of_a_number_has_one_fingerprint(case: tuple[str, str, str]) -> None:
    e164, spelling, region = case
    assert FINGERPRINTER.fingerprint(
        "phone", normalize_phone(spelling, region)
    ) == FINGERPRINTER.fingerprint("phone", e164)


_VALUES = st.text(min_size=1, max_size=40)


@settings(max_examples=100, deadline=None)
@given(_VALUES, st.binary(min_size=16, max_size=64), st.binary(min_size=16, max_size=64))
def test_different_keys_give_different_fingerprints(
    value: str, secret_a: bytes, secret_b: bytes
) -> None:
    assume(secret_a != secret_b)
    a = Fingerprinter([FingerprintKey("k1", secret_a)]).fingerprint("email", value)
    b = Fingerprinter([FingerprintKey("k1", secret_b)]).fingerprint("email", value)
    assert a != b


@settings(max_examples=100, deadline=None)
@given(_VALUES)
def test_email_and_phone_kinds_never_collide(value: str) -> None:
    assert FINGERPRINTER.fingerprint("email", value) != FINGERPRINTER.fingerprint("phone", value)


@settings(max_examples=100, deadline=None)
@given(_VALUES, _VALUES)
def test_different_values_give_different_fingerprints(a: str, b: str) -> None:
    assume(a != b)
    assert FINGERPRINTER.fingerprint("email", a) != FINGERPRINTER.fingerprint("email", b)
