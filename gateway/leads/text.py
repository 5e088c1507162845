"""Free-text and small structured fields: names, postal codes, countries, birth dates.

Every function takes what a publisher sent and returns the one spelling leadgate keeps, or
raises ``ValueError`` with a reason that never quotes the value (names are personal data).
"""

from __future__ import annotations

import re
import unicodedata
from datetime import date

import phonenumbers

MAX_NAME_CHARS = 100
MAX_POSTAL_CODE_CHARS = 16

# C0/C1 controls except tab, LF and CR (which are whitespace to us), lone surrogates (only
# reachable through lax decoders) and the bidi embedding/override/isolate controls that make a
# name display as something else in a CRM or a log viewer. Raw strings: `re` reads the escapes
# (mypyc, setup.py, cannot compile a literal lone surrogate).
_FORBIDDEN = re.compile(
    r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff]"
)
# The same for values that must stay on one line verbatim (ids, sub ids).
_FORBIDDEN_INLINE = re.compile(r"[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


#: ``has_control_chars(text)`` and ``has_control_chars(text, allow_whitespace=False)`` without
#: their call, for the fields of every lead: the first forbidden character's match, or None.
control_char = _FORBIDDEN.search
inline_control_char = _FORBIDDEN_INLINE.search


def has_control_chars(text: str, *, allow_whitespace: bool = True) -> bool:
    """Whether ``text`` holds characters no lead field may carry (see ``_FORBIDDEN``).

    ``allow_whitespace=False`` also refuses tab, LF and CR (for values kept verbatim).
    """
    return (control_char if allow_whitespace else inline_control_char)(text) is not None


def clean_line(raw: str, *, max_chars: int) -> str:
    """One line of human text: NFC, trimmed, inner whitespace runs collapsed to one space.

    Raises ``ValueError`` for control characters and for more than ``max_chars`` characters
    (counted after cleaning, so ``"  Jean  "`` is 4).
    """
    if control_char(raw) is not None:
        raise ValueError("contains control characters")
    text = " ".join(unicodedata.normalize("NFC", raw).split())
    if not text:
        raise ValueError("is empty")
    if len(text) > max_chars:
        raise ValueError(f"too long (at most {max_chars} characters)")
    return text


def normalize_name(raw: str) -> str:
    """A first or last name, cleaned by ``clean_line``; at most 100 characters."""
    return clean_line(raw, max_chars=MAX_NAME_CHARS)


# Countries whose postal codes are all-digit and checked here: the length, and whether the code
# can be told apart from a number with its leading zeros eaten by a spreadsheet. Monaco uses
# French codes (980xx). Other countries are only tidied: their formats vary too much (UK,
# Canada, the Netherlands) to refuse a lead on a guess.
_NUMERIC_POSTAL_CODES = {"FR": re.compile(r"(?!00)\d{5}"), "MC": re.compile(r"980\d\d")}
_NUMERIC_POSTAL_DIGITS = {"FR": 5, "MC": 5}


def normalize_postal_code(raw: str | int, country: str | None) -> str:
    """Trimmed, upper-case, single spaces; checked for the countries in ``_NUMERIC_POSTAL_CODES``.

    A JSON number for a French code is a spreadsheet export that dropped the leading zero
    (``6000`` for Nice's ``06000``): it is padded back. The same four characters as a
    *string* were typed that way, so they are refused rather than guessed at.
    """
    if isinstance(raw, bool):
        raise ValueError("expected a string")
    if isinstance(raw, int):
        if raw < 0:
            raise ValueError("not a postal code")
        text = str(raw).zfill(_NUMERIC_POSTAL_DIGITS.get(country or "", 0))
    else:
        if control_char(raw) is not None:
            raise ValueError("contains control characters")
        text = " ".join(raw.upper().split())
    if not text:
        raise ValueError("is empty")
    if len(text) > MAX_POSTAL_CODE_CHARS:
        raise ValueError(f"too long (at most {MAX_POSTAL_CODE_CHARS} characters)")
    pattern = _NUMERIC_POSTAL_CODES.get(country or "")
    if pattern is not None:
        text = text.replace(" ", "")  # "75 001" is 75001
    if pattern is not None and not pattern.fullmatch(text):
        digits = _NUMERIC_POSTAL_DIGITS[country or ""]
        raise ValueError(f"not a valid postal code for {country}: expected {digits} digits")
    return text


_REGIONS = frozenset(phonenumbers.SUPPORTED_REGIONS)


def normalize_country(raw: str) -> str:
    """An ISO 3166-1 alpha-2 code, upper-case (``fr`` → ``FR``).

    The list is libphonenumber's regions: every inhabited country and territory (245 codes;
    uninhabited ones such as AQ and BV are refused, which no lead should carry anyway).
    ``UK`` is not ISO (``GB`` is) and is refused rather than guessed.
    """
    code = raw.strip().upper()
    if code not in _REGIONS:
        raise ValueError("not an ISO 3166-1 alpha-2 country code (like FR, BE, CH)")
    return code


_ISO_DATE = re.compile(r"(\d{4})-(\d{2})-(\d{2})")
_DAY_FIRST_DATE = re.compile(r"(\d{1,2})/(\d{1,2})/(\d{4})")
#: Earlier birth dates are typing or unit mistakes, not people filling in a form.
EARLIEST_BIRTH_DATE = date(1900, 1, 1)


def normalize_birth_date(raw: str, *, today: date | None = None) -> str:
    """``YYYY-MM-DD`` from ISO ``YYYY-MM-DD`` or day-first ``DD/MM/YYYY``.

    Month-first (US) dates are not accepted: ``01/02/1990`` is 1 February. Refuses dates that
    do not exist (``31/02/1990``), dates after ``today`` (default: the machine's date) and
    dates before 1900.
    """
    text = raw.strip()
    if match := _ISO_DATE.fullmatch(text):
        year, month, day = (int(g) for g in match.groups())
    elif match := _DAY_FIRST_DATE.fullmatch(text):
        day, month, year = (int(g) for g in match.groups())
    else:
        raise ValueError("not a date: expected YYYY-MM-DD or DD/MM/YYYY")
    try:
        born = date(year, month, day)
    except ValueError:
        raise ValueError("not a date that exists") from None
    if born > (today or date.today()):
        raise ValueError("is in the future")
    if born < EARLIEST_BIRTH_DATE:
        raise ValueError("is before 1900")
    return born.isoformat()
