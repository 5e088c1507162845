from __future__ import annotations

import phonenumbers
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from gateway.errors import MissingCountryCode
from gateway.leads.phone import normalize_phone


@pytest.mark.parametrize(
    ("raw", "region", "e164"),
    [
        ("06 12 34 56 78", "FR", "+33612345678"),
        ("0612345678", "FR", "+33612345678"),
        ("06.12.34.56.78", "FR", "+33612345678"),
        ("06-12-34-56-78", "FR", "+33612345678"),
        ("+33 6 12 34 56 78", "FR", "+33612345678"),
        ("+33612345678", "US", "+33612345678"),
        ("0033612345678", "FR", "+33612345678"),
        ("0033 6 12 34 56 78", "BE", "+33612345678"),
        ("(+33) 6-12-34-56-78", "FR", "+33612345678"),
        ("+33 (0)6 12 34 56 78", "FR", "+33612345678"),
        ("  06 12 34 56 78\t", "FR", "+33612345678"),
        # Spreadsheets drop the leading zero, or the plus.
        ("612345678", "FR", "+33612345678"),
        ("33612345678", "FR", "+33612345678"),
        ("01 23 45 67 89", "FR", "+33123456789"),
        ("0470 12 34 56", "BE", "+32470123456"),
        ("079 123 45 67", "CH", "+41791234567"),
        ("+44 7400 123456", "FR", "+447400123456"),
        ("(415) 555-0100", "US", "+14155550100"),
        ("011 33 6 12 34 56 78", "US", "+33612345678"),
        ("tel:+33612345678", "FR", "+33612345678"),
    ],
)
def test_normalizes_to_e164(raw: str, region: str, e164: str) -> None:
    assert normalize_phone(raw, region) == e164


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("", "not a phone number"),
        ("abc", "not a phone number"),
        ("0612", "too short"),
        ("06 12 34 56 78 90 12", "too long"),
        ("+999 123 456", "unknown country code"),
        ("07 12 34 56 78", "not a number in use in FR"),
        ("+1 200 555 0100", "not a number in use in US"),
        ("06" * 30, "longer than 40 characters"),
    ],
)
def test_refuses_invalid_numbers_without_quoting_them(raw: str, reason: str) -> None:
    with pytest.raises(ValueError, match=r"^not a valid phone number: ") as info:
        normalize_phone(raw, "FR")
    assert reason in str(info.value)
    digits = "".join(ch for ch in raw if ch.isdigit())
    if len(digits) >= 4:
        assert digits not in str(info.value)


def test_national_number_without_region_needs_a_country_code() -> None:
    with pytest.raises(MissingCountryCode):
        normalize_phone("06 12 34 56 78", None)
    assert normalize_phone("+33 6 12 34 56 78", None) == "+33612345678"


_REGIONS = ["FR", "BE", "CH", "DE", "GB", "ES", "IT", "US", "CA", "MA", "SN", "RE"]


@st.composite
def valid_numbers(draw: st.DrawFn) -> phonenumbers.PhoneNumber:
    """Real-looking valid numbers: a region's example mobile number with new last digits."""
    region = draw(st.sampled_from(_REGIONS))
    example = phonenumbers.example_number_for_type(region, phonenumbers.PhoneNumberType.MOBILE)
    assert example is not None
    national = phonenumbers.national_significant_number(example)
    tail = draw(st.text("0123456789", min_size=4, max_size=4))
    number = phonenumbers.parse("+" + str(example.country_code) + national[:-4] + tail)
    assume(phonenumbers.is_valid_number(number))
    return number


@settings(max_examples=80, deadline=None)
@given(valid_numbers(), st.sampled_from(_REGIONS))
def test_normalization_is_idempotent(number: phonenumbers.PhoneNumber, region: str) -> None:
    once = normalize_phone(
        phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL), region
    )
    assert normalize_phone(once, region) == once
    assert normalize_phone(once, "FR") == once
