"""Phone numbers: one E.164 spelling (``+33612345678``) for every way a number is typed.

``06 12 34 56 78``, ``+33 6 12 34 56 78``, ``0033612345678``, ``(+33) 6-12-34-56-78`` and the
spreadsheet's ``612345678`` are one number; libphonenumber's metadata knows each region's
trunk and international prefixes and which ranges are assigned, which no regex of ours would.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Final, NamedTuple

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberFormat, ValidationResult
from phonenumbers import phonenumberutil as _util
from phonenumbers.phonemetadata import PhoneMetadata, PhoneNumberDesc

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
    return fast_e164(text, default_region) or parsed_e164(text, default_region)


def parsed_e164(text: str, default_region: str | None) -> str:
    """``normalize_phone`` of a stripped ``text`` through ``phonenumbers.parse``: every spelling,
    every error; what ``fast_e164`` must agree with."""
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


#: What people put between digits, and ``parse`` ignores; anything else goes to ``parse``.
_SEPARATORS: Final = str.maketrans("", "", " .-()")
#: ``parse`` keeps a national prefix it could strip when the rest would be of these lengths.
_PREFIX_KEPT_IF: Final = frozenset(
    {
        ValidationResult.TOO_SHORT,
        ValidationResult.IS_POSSIBLE_LOCAL_ONLY,
        ValidationResult.INVALID_LENGTH,
    }
)
_IDD_PATTERNS: dict[str, re.Pattern[str]] = {}
#: The metadata the fast path has read, by region and by country code (libphonenumber keeps
#: each region's once loaded; these save its three look-up calls a number).
_BY_REGION: dict[str, PhoneMetadata] = {}
_BY_CODE: dict[int, PhoneMetadata] = {}


#: The metadata steps of ``parse`` the fast path reuses: private functions of phonenumbers
#: (in its type stubs). A release without them turns the fast path off, never a lead into a
#: 500: every number then goes through ``parse``.
_STRIP_NATIONAL_PREFIX = getattr(_util, "_maybe_strip_national_prefix_carrier_code", None)
_TEST_LENGTH = getattr(_util, "_test_number_length", None)
_MAX_NSN = getattr(_util, "_MAX_LENGTH_FOR_NSN", None)
FAST_PATH = None not in (_STRIP_NATIONAL_PREFIX, _TEST_LENGTH, _MAX_NSN)


def fast_e164(text: str, default_region: str | None) -> str | None:
    """The E.164 spelling of a valid ``text`` as ``parsed_e164`` gives it, without ``parse``'s
    text handling (~10 µs of regular expressions a number), or ``None`` when unsure.

    Only ASCII digits and ``_SEPARATORS``, with at most one leading ``+``, are read here: for
    those, ``parse`` is exactly the steps below (its extension, ``tel:`` URI, letter and
    viability patterns cannot match them). The metadata steps (national prefix, possible
    lengths, validity) are phonenumbers' own functions. ``None`` (``parse`` decides, and says
    why) for anything else, an invalid number, and the rarer branches of ``parse``: a ``+0``,
    an unknown code after ``+``, a national number that begins with the region's own country
    code (the spreadsheet's dropped ``+``). tests/leads/test_phone_fast.py holds it to that.
    """
    # parse reads a +CC number with the region's metadata when the region is the code's own:
    # for "001" (non-geographic codes) that is none, and it strips no national prefix.
    if not FAST_PATH or (
        default_region is not None and default_region not in _util.SUPPORTED_REGIONS
    ):
        return None
    compact = text.translate(_SEPARATORS)
    if compact[:1] == "+":
        return _international(compact[1:])
    digits = compact
    if not (len(digits) >= 3 and digits.isascii() and digits.isdigit()):
        return None
    if default_region is None:
        return None  # MissingCountryCode, said by parse
    metadata = _BY_REGION.get(default_region)
    if metadata is None:
        metadata = PhoneMetadata.metadata_for_region(default_region, None)
        if metadata is None:
            return None
        _BY_REGION[default_region] = metadata
    if metadata.country_code is None:
        return None
    idd = metadata.international_prefix
    if idd is not None:
        pattern = _IDD_PATTERNS.get(idd)
        if pattern is None:
            pattern = _IDD_PATTERNS.setdefault(idd, re.compile(idd))
        match = pattern.match(digits)
        if match:  # parse keeps the IDD before a 0: _international refuses that too
            return _international(digits[match.end() :])
    if digits.startswith(str(metadata.country_code)):
        return None
    return _valid_e164(metadata.country_code, digits, metadata)


def _international(digits: str) -> str | None:
    """``fast_e164`` of the digits after ``+`` or an international prefix."""
    if not (len(digits) >= 3 and digits.isascii() and digits.isdigit()) or digits[0] == "0":
        return None
    for size in (1, 2, 3):
        country_code = int(digits[:size])
        if country_code in _util.COUNTRY_CODE_TO_REGION_CODE:
            metadata = _BY_CODE.get(country_code)
            if metadata is None:
                metadata = PhoneMetadata.metadata_for_region_or_calling_code(
                    country_code, _util.region_code_for_country_code(country_code)
                )
                if metadata is None:
                    return None
                _BY_CODE[country_code] = metadata
            return _valid_e164(country_code, digits[size:], metadata)
    return None


def _valid_e164(country_code: int, national: str, metadata: PhoneMetadata) -> str | None:
    """``+<country_code><national>`` if valid, ``national`` read as ``parse`` reads it."""
    if len(national) < 2:
        return None
    compiled = _COMPILED.get((metadata.id, metadata.country_code)) or _compiled(metadata)
    _, stripped, _ = _STRIP_NATIONAL_PREFIX(national, metadata)  # type: ignore[misc]
    size = len(stripped)
    if (
        size not in compiled.prefix_kept
        if size < _KNOWN_LENGTHS
        else _TEST_LENGTH(stripped, metadata) not in _PREFIX_KEPT_IF  # type: ignore[misc]
    ):
        national = stripped
    if not 2 <= len(national) <= _MAX_NSN:  # type: ignore[operator]
        return None
    if national[0] != "0" and len(_util.COUNTRY_CODE_TO_REGION_CODE[country_code]) == 1:
        # national is then the number's national significant number, and metadata its only
        # region's (is_valid_number's own choice for a code of one region).
        return f"+{country_code}{national}" if _valid_national(national, compiled) else None
    number = phonenumbers.PhoneNumber(country_code=country_code, national_number=int(national))
    if national[0] == "0":
        # parse's "italian leading zeros": the leading zeros are part of the number (Italy's
        # fixed lines, Gabon, Côte d'Ivoire), counted as parse counts them, to the last digit.
        number.italian_leading_zero = True
        zeros = min(len(national) - len(national.lstrip("0")), len(national) - 1)
        if zeros != 1:
            number.number_of_leading_zeros = zeros
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, PhoneNumberFormat.E164)


#: A number description as ``is_valid_national`` tests it: its possible lengths (empty: any)
#: and its pattern's ``fullmatch`` (``None``: an empty description, matched by nothing).
_Desc = tuple[frozenset[int], Callable[[str], object] | None]
#: The number types ``is_valid_national`` tries after the general description, most likely
#: first (a valid number matches the general one and at least one type).
_TYPES: Final = (
    "mobile", "fixed_line", "premium_rate", "toll_free", "shared_cost", "voip",
    "personal_number", "pager", "uan", "voicemail",
)  # fmt: skip
#: ``_Compiled.prefix_kept`` knows the lengths below this (a number is at most
#: ``MAX_PHONE_CHARS``); ``_test_number_length`` is asked of longer ones.
_KNOWN_LENGTHS: Final = 64


class _Compiled(NamedTuple):
    """What the fast path tests of one region's metadata, worked out once (``_compiled``)."""

    #: The general description, then the types' (``is_valid_national``).
    general: _Desc
    types: tuple[_Desc, ...]
    #: The lengths (below ``_KNOWN_LENGTHS``) at which ``parse`` keeps a national prefix it
    #: could strip: ``_test_number_length`` of a number of that length is in
    #: ``_PREFIX_KEPT_IF`` (its answer depends on the length alone).
    prefix_kept: frozenset[int]


#: (region or "001", country code) -> its ``_Compiled`` (metadata, not personal data; bounded
#: by libphonenumber's regions).
_COMPILED: dict[tuple[str | None, int | None], _Compiled] = {}


def _desc(desc: PhoneNumberDesc | None) -> _Desc:
    """``_is_number_matching_desc(nsn, desc)`` is ``(not lengths or len(nsn) in lengths) and
    match is not None and match(nsn)``: its pattern's ``match`` then ``fullmatch`` are one
    ``fullmatch``, compiled once here instead of looked up in phonenumbers' cache each time."""
    if desc is None:
        return frozenset(), None
    pattern = desc.national_number_pattern
    match = re.compile(pattern).fullmatch if pattern else None
    return frozenset(desc.possible_length or ()), match


def _compiled(metadata: PhoneMetadata) -> _Compiled:
    types = _TYPES[1:] if metadata.same_mobile_and_fixed_line_pattern else _TYPES
    compiled = _Compiled(
        _desc(metadata.general_desc),
        tuple(_desc(getattr(metadata, name)) for name in types),
        frozenset(
            size
            for size in range(_KNOWN_LENGTHS)
            if _TEST_LENGTH is not None  # (no fast path without it: never asked then)
            and _TEST_LENGTH("0" * size, metadata) in _PREFIX_KEPT_IF
        ),
    )
    _COMPILED[(metadata.id, metadata.country_code)] = compiled
    return compiled


def prepare_region(region: str) -> None:
    """Load ``region``'s metadata (libphonenumber reads a region's tables on first use) and
    compile what the fast path tests of it, before the first lead of that region needs them
    (``app.heap.settle_heap``: then frozen with the rest of start-up)."""
    metadata = PhoneMetadata.metadata_for_region(region, None)
    if metadata is not None and FAST_PATH:
        _compiled(metadata)


def is_valid_national(nsn: str, metadata: PhoneMetadata) -> bool:
    """``phonenumbers.is_valid_number`` of the national significant number ``nsn`` in the
    region of ``metadata``, the only region of its country code: the same test, its number
    types tried most likely first (mobile, fixed line) instead of in phonenumbers' order
    (premium rate, toll free, ... eight types before the fixed line): a valid number matches
    the general description and at least one type, and which one does not matter here.
    phonenumbers tries mobile only when its pattern is not the fixed line's (and then answers
    by the fixed line's description alone, lengths included): so does this. Each
    description is phonenumbers' ``_is_number_matching_desc`` without its five calls
    (``_desc``). tests/leads/test_phone_fast.py holds it to ``is_valid_number`` over every
    region's example numbers and hypothesis digits."""
    return _valid_national(
        nsn, _COMPILED.get((metadata.id, metadata.country_code)) or _compiled(metadata)
    )


def _valid_national(nsn: str, compiled: _Compiled) -> bool:
    """``is_valid_national`` with the region's descriptions already at hand."""
    (lengths, match), types = compiled.general, compiled.types
    size = len(nsn)
    if match is None or (lengths and size not in lengths) or match(nsn) is None:
        return False
    for lengths, match in types:
        if match is not None and (not lengths or size in lengths) and match(nsn) is not None:
            return True
    return False
