"""``fast_e164`` against ``phonenumbers.parse``: the same E.164 answer for every spelling it
takes, and ``None`` (the parse path, its errors) for everything else.

The reference is ``parsed_e164`` (the ``parse`` + ``is_valid_number`` path ``normalize_phone``
had alone); ``normalize_phone`` must give the same string or raise the same exception type with
the same message, over hypothesis-drawn spellings in every region with metadata.
"""

from __future__ import annotations

import phonenumbers
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from phonenumbers import PhoneNumberFormat, PhoneNumberType
from phonenumbers.phonemetadata import PhoneMetadata

from gateway.leads.phone import (
    MAX_PHONE_CHARS,
    fast_e164,
    is_valid_national,
    normalize_phone,
    parsed_e164,
)

REGIONS = sorted(phonenumbers.SUPPORTED_REGIONS)
#: Defaults the callers never pass but parse reads differently: no region, the non-geographic
#: "region", an unknown one, lower case.
ODD_REGIONS: list[str | None] = [None, "001", "ZZ", "fr"]
TYPES = [
    PhoneNumberType.FIXED_LINE,
    PhoneNumberType.MOBILE,
    PhoneNumberType.TOLL_FREE,
    PhoneNumberType.PREMIUM_RATE,
    PhoneNumberType.SHARED_COST,
    PhoneNumberType.VOIP,
    PhoneNumberType.PERSONAL_NUMBER,
    PhoneNumberType.PAGER,
    PhoneNumberType.UAN,
    PhoneNumberType.VOICEMAIL,
]

Outcome = tuple[str, str]


def outcome(normalize: object, raw: str, region: str | None) -> Outcome:
    """``("ok", e164)`` or ``(exception type name, message)``."""
    assert callable(normalize)
    try:
        return ("ok", normalize(raw, region))
    except ValueError as exc:
        return (type(exc).__name__, str(exc))


def reference(raw: str, region: str | None) -> str:
    """``normalize_phone`` as it was: strip, the length limit, then ``parse``."""
    text = raw.strip()
    if len(text) > MAX_PHONE_CHARS:
        raise ValueError(f"not a valid phone number: longer than {MAX_PHONE_CHARS} characters")
    return parsed_e164(text, region)


def assert_agrees(raw: str, region: str | None) -> Outcome:
    expected = outcome(reference, raw, region)
    assert outcome(normalize_phone, raw, region) == expected, (raw, region)
    text = raw.strip()
    if len(text) <= MAX_PHONE_CHARS:  # normalize_phone's own limit comes first
        fast = fast_e164(text, region)
        assert fast is None or expected == ("ok", fast), (raw, region, fast)
    return expected


def _examples() -> list[phonenumbers.PhoneNumber]:
    numbers = []
    for region in REGIONS:
        for kind in TYPES:
            number = phonenumbers.example_number_for_type(region, kind)
            if number is not None:
                numbers.append(number)
    for code in phonenumbers.COUNTRY_CODES_FOR_NON_GEO_REGIONS:
        number = phonenumbers.example_number_for_non_geo_entity(code)
        if number is not None:
            numbers.append(number)
    return numbers


EXAMPLES = _examples()


def spellings(number: phonenumbers.PhoneNumber) -> list[str]:
    """How people write ``number``: E.164, international, national, dialled from abroad."""
    e164 = phonenumbers.format_number(number, PhoneNumberFormat.E164)
    national = phonenumbers.format_number(number, PhoneNumberFormat.NATIONAL)
    international = phonenumbers.format_number(number, PhoneNumberFormat.INTERNATIONAL)
    return [
        e164,
        international,
        national,
        "00" + e164[1:],
        "011 " + international[1:],
        phonenumbers.format_out_of_country_calling_number(number, "FR"),
        phonenumbers.format_out_of_country_calling_number(number, "US"),
        phonenumbers.national_significant_number(number),
        e164[1:],  # the spreadsheet's dropped +
        "+" + str(number.country_code) + " (0)" + phonenumbers.national_significant_number(number),
    ]


def test_the_fast_path_takes_the_common_spellings() -> None:
    # The bench's spellings (bench/generate.py respell_phone) and the usual shapes elsewhere:
    # without these the agreement below would hold with a fast path that never answers.
    for raw, region, e164 in [
        ("06 12 34 56 78", "FR", "+33612345678"),
        ("0612345678", "FR", "+33612345678"),
        ("+33 6 12 34 56 78", "FR", "+33612345678"),
        ("0033612345678", "FR", "+33612345678"),
        ("+33612345678", "FR", "+33612345678"),
        ("+33612345678", None, "+33612345678"),
        ("(+33) 6-12-34-56-78", "FR", "+33612345678"),
        ("+33 (0)6 12 34 56 78", "FR", "+33612345678"),
        ("06.12.34.56.78", "FR", "+33612345678"),
        ("0470 12 34 56", "BE", "+32470123456"),
        ("(415) 555-0100", "US", "+14155550100"),
        ("011 33 6 12 34 56 78", "US", "+33612345678"),
        # Italian fixed lines keep their 0; so do Côte d'Ivoire's numbers, two 0s at times.
        ("+39 06 1234 5678", "FR", "+390612345678"),
        ("06 1234 5678", "IT", "+390612345678"),
        ("+225 01 23 45 67 89", None, "+2250123456789"),
        ("+225 07 12 34 56 78", "CI", "+2250712345678"),
    ]:
        assert fast_e164(raw, region) == e164, raw
        assert assert_agrees(raw, region) == ("ok", e164)


@pytest.mark.parametrize("number", EXAMPLES, ids=lambda n: f"+{n.country_code}")
def test_every_regions_example_numbers_agree(number: phonenumbers.PhoneNumber) -> None:
    home = phonenumbers.region_code_for_number(number)
    for raw in spellings(number):
        for region in (home, "FR", "US", "IT", None):
            assert_agrees(raw, region)


# Text around and inside the digits: the separators of each spelling are drawn from one of these.
_SEPARATOR_SETS = [
    [""],
    [" "],
    ["."],
    ["-"],
    ["", " "],
    ["", " ", ".", "-", "(", ")"],
    ["", "/", "\t", "\u00a0", "\u2013", "\u3000", "[", "~"],
]
_PREFIXES = ["tel:", "Tel: ", "phone ", "(", "'", "=", "*", "#", "x", "é", "+", "\ufeff"]
_SUFFIXES = [" ext. 12", ";ext=34", " x 5", " #", "#12", ",,7", ")", ".", " abc", "\u200b", "/"]
_LEADS = ["", "", "+", "+", "00", "0", "011", "+0", "++", "+ ", "(+", "0 0", "000", "+00"]
#: Zero of the digit scripts parse reads: fullwidth, Arabic-Indic, Persian, Devanagari.
_DIGIT_ZEROS = [0xFF10, 0x0660, 0x06F0, 0x0966]


def _unicode_digits(text: str, zero: int) -> str:
    return "".join(chr(zero + int(ch)) if ch.isascii() and ch.isdigit() else ch for ch in text)


@st.composite
def number_cores(draw: st.DrawFn) -> str:
    """Digits the metadata knows (a region's example with a new tail, in some spelling) or
    digits of any length after an international, trunk or junk prefix."""
    if draw(st.booleans()):
        number = draw(st.sampled_from(EXAMPLES))
        nsn = phonenumbers.national_significant_number(number)
        cut = draw(st.integers(0, len(nsn)))
        tail = draw(st.text("0123456789", min_size=0, max_size=len(nsn) - cut + 2))
        core = f"+{number.country_code}{nsn[:cut]}{tail}"
        try:
            parsed = phonenumbers.parse(core)
        except phonenumbers.NumberParseException:
            return core
        return draw(st.sampled_from(spellings(parsed)))
    digits = draw(st.text("0123456789", min_size=0, max_size=20))
    return draw(st.sampled_from(_LEADS)) + digits


def _sometimes(draw: st.DrawFn, options: list[str], one_in: int) -> str:
    return draw(st.sampled_from(options)) if draw(st.integers(1, one_in)) == 1 else ""


@st.composite
def raw_phones(draw: st.DrawFn) -> str:
    """A number's core respaced, and now and then in another script, with a letter, text
    before or after, an extension, surrounding white space."""
    core = draw(number_cores())
    separators = draw(st.sampled_from(_SEPARATOR_SETS))
    text = "".join(draw(st.sampled_from(separators)) + ch for ch in core)
    if draw(st.integers(1, 6)) == 1:
        text = _unicode_digits(text, draw(st.sampled_from(_DIGIT_ZEROS)))
    if draw(st.integers(1, 10)) == 1:  # a letter anywhere: vanity numbers, typos
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(st.sampled_from("aAoOlIxXeE")) + text[at:]
    spaces = _sometimes(draw, [" ", "\t", "\n ", "\u00a0"], 4)
    return spaces + _sometimes(draw, _PREFIXES, 5) + text + _sometimes(draw, _SUFFIXES, 5) + spaces


_DEFAULT_REGIONS = st.one_of(
    st.sampled_from(["FR", "FR", "BE", "CH", "IT", "US", "GB", "DE", "CI", "GA", "AR", "BR"]),
    st.sampled_from(REGIONS),
    st.sampled_from(ODD_REGIONS),
)


@settings(max_examples=4000, deadline=None)
@given(raw_phones(), _DEFAULT_REGIONS)
@example("0612345678", "FR")
@example("+39 06 1234 5678", "IT")
@example("+3906", "IT")
@example("+800 1234 5678", "001")
@example("+800 1234 5678", None)
@example("00 0", "FR")
@example("00", "FR")
@example("+0", None)
@example("+999 123 456", "FR")
@example("33612345678", "FR")
@example("0000000000", "CI")
def test_normalize_phone_agrees_with_parse(raw: str, region: str | None) -> None:
    assert_agrees(raw, region)


@st.composite
def likely_valid_spellings(draw: st.DrawFn) -> tuple[str, str | None]:
    """A region's example number with new last digits (its length kept: mostly valid), in one
    of its usual spellings, cleanly spaced; read in its own region, France or any."""
    number = draw(st.sampled_from(EXAMPLES))
    nsn = phonenumbers.national_significant_number(number)
    kept = len(nsn) - draw(st.integers(0, min(4, len(nsn))))
    tail = draw(st.text("0123456789", min_size=len(nsn) - kept, max_size=len(nsn) - kept))
    parsed = phonenumbers.parse(f"+{number.country_code}{nsn[:kept]}{tail}")
    core = draw(st.sampled_from(spellings(parsed)))
    separators = draw(st.sampled_from(_SEPARATOR_SETS[:6]))
    raw = "".join(draw(st.sampled_from(separators)) + ch for ch in core)
    home = phonenumbers.region_code_for_number(parsed)
    return raw, draw(st.sampled_from([home, home, "FR", None, *REGIONS]))


@settings(max_examples=3000, deadline=None)
@given(likely_valid_spellings())
def test_valid_numbers_agree_in_their_usual_spellings(case: tuple[str, str | None]) -> None:
    assert_agrees(*case)


@settings(max_examples=2000, deadline=None)
@given(
    st.sampled_from(REGIONS),
    st.sampled_from(["", "+", "00", "0", "011", "+0"]),
    st.text("0123456789", min_size=1, max_size=18),
    st.sampled_from(["", " ", ".", "-"]),
)
def test_plain_digit_strings_agree_in_every_region(
    region: str, lead: str, digits: str, separator: str
) -> None:
    pairs = [digits[i : i + 2] for i in range(0, len(digits), 2)]
    assert_agrees(lead + separator.join(pairs), region)


def test_a_phonenumbers_without_the_private_steps_only_loses_the_fast_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The fast path reuses two private functions of phonenumbers: a release without them
    must send every number through ``parse``, never fail a lead."""
    from gateway.leads import phone

    monkeypatch.setattr(phone, "FAST_PATH", False)
    assert fast_e164("06 12 34 56 78", "FR") is None
    assert normalize_phone("06 12 34 56 78", "FR") == "+33612345678"


#: The country codes of one region: those ``is_valid_national`` answers for.
SINGLE_REGION_CODES = sorted(
    code for code, regions in phonenumbers.COUNTRY_CODE_TO_REGION_CODE.items() if len(regions) == 1
)


def _assert_validity_agrees(code: int, nsn: str) -> None:
    """``is_valid_national`` against ``phonenumbers.is_valid_number`` of the same number."""
    if not nsn or nsn[0] == "0":  # the fast path never asks (italian leading zeros)
        return
    (region,) = phonenumbers.COUNTRY_CODE_TO_REGION_CODE[code]
    metadata = PhoneMetadata.metadata_for_region_or_calling_code(code, region)
    assert metadata is not None
    number = phonenumbers.PhoneNumber(country_code=code, national_number=int(nsn))
    assert is_valid_national(nsn, metadata) == phonenumbers.is_valid_number(number), (code, nsn)


def test_validity_agrees_on_every_example_number_and_its_neighbours() -> None:
    """Every region's example number of every type, and numbers one digit off, shorter and
    longer: valid and invalid numbers of every type, in every single-region code."""
    checked = valid = 0
    for number in EXAMPLES:
        code = number.country_code
        assert code is not None
        if code not in SINGLE_REGION_CODES:
            continue
        nsn = phonenumbers.national_significant_number(number)
        variants = {nsn, nsn[:-1], nsn + "0", nsn + "9", nsn[1:]}
        for i in range(len(nsn)):
            for digit in "0159":
                variants.add(nsn[:i] + digit + nsn[i + 1 :])
        for variant in variants:
            _assert_validity_agrees(code, variant)
            checked += 1
        valid += 1
    assert valid > 800, valid
    assert checked > 25_000, checked


@settings(max_examples=3000, deadline=None)
@given(st.sampled_from(SINGLE_REGION_CODES), st.text("0123456789", min_size=1, max_size=17))
@example(33, "612345678")
@example(33, "112345678")
def test_validity_agrees_on_digit_strings(code: int, nsn: str) -> None:
    _assert_validity_agrees(code, nsn)


@settings(max_examples=300)
@given(
    code=st.sampled_from(sorted(phonenumbers.COUNTRY_CODE_TO_REGION_CODE)),
    digits=st.text("0123456789", max_size=MAX_PHONE_CHARS),
)
def test_what_the_fast_path_keeps_of_a_length_is_what_phonenumbers_answers(
    code: int, digits: str
) -> None:
    """The fast path decides whether ``parse`` keeps a national prefix by the stripped
    number's length alone (``_Compiled.prefix_kept``, worked out once a region): phonenumbers'
    ``_test_number_length`` must answer by the length alone, for any digits."""
    from phonenumbers import phonenumberutil

    from gateway.leads import phone

    region = phonenumbers.COUNTRY_CODE_TO_REGION_CODE[code][0]
    metadata = PhoneMetadata.metadata_for_region_or_calling_code(code, region)
    if metadata is None:
        return
    answer = phonenumberutil._test_number_length(digits, metadata)
    assert (len(digits) in phone._compiled(metadata).prefix_kept) == (
        answer in phone._PREFIX_KEPT_IF
    )


def test_a_prepared_region_is_compiled_before_its_first_number() -> None:
    """``prepare_region`` (start-up) compiles what the fast path tests of a region, so its
    first lead compiles nothing; a region libphonenumber does not know is left alone."""
    from gateway.leads import phone

    metadata = PhoneMetadata.metadata_for_region("BE", None)
    assert metadata is not None
    phone._COMPILED.pop((metadata.id, metadata.country_code), None)
    phone.prepare_region("BE")
    assert (metadata.id, metadata.country_code) in phone._COMPILED
    phone.prepare_region("ZZ")
    assert normalize_phone("0470 12 34 56", "BE") == "+32470123456"
