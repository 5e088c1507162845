"""Phone numbers: one E.164 spelling (``+33612345678``) for every way a number is typed.

``06 12 34 56 78``, ``+33 6 12 34 56 78``, ``0033612345678``, ``(+33) 6-12-34-56-78`` and the
spreadsheet's ``612345678`` are one number; libphonenumber's metadata knows each region's
trunk and international prefixes and which ranges are assigned, which no regex of ours would.
"""

from __future__ import annotations

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberFormat, ValidationResult

from gateway.errors import MissingCountryCode

# phonenumbers recompiles (through ``re``'s own cache) each metadata pattern it matches: ~30%
# of ``is_valid_number``. Its own cache of the compiled patterns changes no answer.
_enable_pattern_cache = getattr(phonenumbers, "enable_pattern_cache", None)
if _enable_pattern_cache is not None:
    _enable_pattern_cache()

#: Longer input is not a phone number anyone typed (libphonenumber itself stops at 250).
MAX_PHONE_CHARS = 40

_PARSE_REASONS = {
    NumberParseException.INVALID_COUNTRY_CODE: "unknown country code",
    NumberParseException.NOT_A_NUMBER: "not a phone number",
    NumberParseException.TOO_SHORT_AFTER_IDD: "too short",
    NumberParseException.TOO_SHORT_NSN: "too short",
    NumberParseException.TOO_LONG: "too long",
}

_LENGTH_REASONS = {
    ValidationResult.INVALID_COUNTRY_CODE: "unknown country code",
    ValidationResult.TOO_SHORT: "too short",
    ValidationResult.TOO_LONG: "too long",
    ValidationResult.INVALID_LENGTH: "wrong number of digits",
}


def normalize_phone(raw: str, default_region: str | None) -> str:
    """``raw`` as E.164, reading national numbers in ``default_region`` (ISO alpha-2).

    The number must be valid, not merely possible: an unassigned range is refused.
    Raises ``ValueError("not a valid phone number: <why>")`` (``MissingCountryCode`` when
    the number needs a region and none was given); the reason never quotes the number.
    """
    text = raw.strip()
    if len(text) > MAX_PHONE_CHARS:
        raise ValueError(f"not a valid phone number: longer than {MAX_PHONE_CHARS} characters")
    try:
        number = phonenumbers.parse(text, default_region)
    except NumberParseException as exc:
        if exc.error_type == NumberParseException.INVALID_COUNTRY_CODE and not text.startswith(
            ("+", "(+")
        ):
            raise MissingCountryCode(
                "not a valid phone number: no country code (+CC) and no default region"
            ) from None
        reason = _PARSE_REASONS.get(exc.error_type, "not a phone number")
        raise ValueError(f"not a valid phone number: {reason}") from None
    if not phonenumbers.is_valid_number(number):
        length = phonenumbers.is_possible_number_with_reason(number)
        # parse() always sets the country code; the stubs allow None for hand-built numbers.
        region = phonenumbers.region_code_for_country_code(number.country_code or 0)
        unassigned = (
            f"not a number in use in {region}"
            if region.isalpha() and region != "ZZ"
            else "not assigned"
        )
        reason = _LENGTH_REASONS.get(length, unassigned)
        raise ValueError(f"not a valid phone number: {reason}")
    return phonenumbers.format_number(number, PhoneNumberFormat.E164)
