"""Rule kinds about where the lead is: ``country`` and ``postal_code`` (with the postal-code
patterns of the countries it knows).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Final

import phonenumbers

from gateway.config.reader import MISSING, Reader, join, opt, show
from gateway.rules.kinds.parameters import Fields, read_if_absent, read_pattern, read_regions
from gateway.rules.model import Env, Predicate

_REGION = re.compile(r"[A-Z]{2}")

#: Postal-code patterns the ``postal_code`` kind knows without being told (whole value).
POSTAL_CODE_PATTERNS: Final[Mapping[str, str]] = {
    "FR": r"(?!00)\d{5}",  # départements 01-95 and 97x/98x overseas
    "MC": r"980\d\d",
    "BE": r"[1-9]\d{3}",
    "LU": r"\d{4}",
    "CH": r"[1-9]\d{3}",
    "DE": r"\d{5}",
    "AT": r"[1-9]\d{3}",
    "ES": r"(0[1-9]|[1-4]\d|5[0-2])\d{3}",
    "IT": r"\d{5}",
    "PT": r"\d{4}-\d{3}",
    "NL": r"[1-9]\d{3} ?[A-Z]{2}",
    "GB": r"[A-Z]{1,2}\d[A-Z\d]? ?\d[A-Z]{2}",
    "US": r"\d{5}(-\d{4})?",
    "CA": r"[A-Z]\d[A-Z] ?\d[A-Z]\d",
}


def country(r: Reader, fields: Fields, path: str) -> Predicate:
    countries = read_regions(
        r, fields.get("countries", MISSING), join(path, "countries"), "country"
    )

    def test(env: Env) -> bool:
        lead_country = env.lead.country or env.country
        return lead_country in countries

    return test


def postal_code(r: Reader, fields: Fields, path: str) -> Predicate:
    patterns = {code: re.compile(p) for code, p in POSTAL_CODE_PATTERNS.items()}
    given = r.mapping(
        opt(fields, "patterns", {}), join(path, "patterns"), "a mapping of country: pattern"
    )
    for code, pattern in given.items():
        at = join(path, f"patterns.{code}")
        if not _REGION.fullmatch(code) or code not in phonenumbers.SUPPORTED_REGIONS:
            r.fail(at, f"{show(code)} is not an ISO 3166-1 alpha-2 code like FR, BE")
        patterns[code] = read_pattern(r, pattern, at)
    other = r.boolean(opt(fields, "other_countries", False), join(path, "other_countries"))
    absent = read_if_absent(r, fields, path)

    def test(env: Env) -> bool:
        code = env.lead.postal_code
        if code is None:
            return absent
        pattern = patterns.get(env.lead.country or env.country or "")
        return other if pattern is None else pattern.fullmatch(code) is not None

    return test
