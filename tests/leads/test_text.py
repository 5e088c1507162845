from __future__ import annotations

import re
from datetime import date

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.leads.text import (
    clean_line,
    normalize_birth_date,
    normalize_country,
    normalize_name,
    normalize_postal_code,
)

TODAY = date(2026, 5, 17)


@pytest.mark.parametrize(
    ("raw", "name"),
    [
        ("Jean", "Jean"),
        ("  Jean   Pierre\t", "Jean Pierre"),
        ("Anne-\nSophie", "Anne- Sophie"),
        ("E\u0301lodie", "Élodie"),
        ("O'Brien", "O'Brien"),
        ("Nguyễn Văn An", "Nguyễn Văn An"),
        ("x" * 100, "x" * 100),
        ("x" * 50 + "     " + "y" * 49, "x" * 50 + " " + "y" * 49),
    ],
)
def test_normalizes_names(raw: str, name: str) -> None:
    assert normalize_name(raw) == name


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("", "is empty"),
        (" \t ", "is empty"),
        ("x" * 101, "too long (at most 100 characters)"),
        ("Jean\x00", "contains control characters"),
        ("Jean\x1b[31m", "contains control characters"),
        ("Jean\x85", "contains control characters"),
        ("\u202eJean", "contains control characters"),
        ("Jean\ud800", "contains control characters"),
    ],
)
def test_refuses_bad_names(raw: str, reason: str) -> None:
    with pytest.raises(ValueError, match="^" + re.escape(reason) + "$"):
        normalize_name(raw)


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=120))
def test_clean_line_is_idempotent(raw: str) -> None:
    try:
        once = clean_line(raw, max_chars=100)
    except ValueError:
        return
    assert clean_line(once, max_chars=100) == once
    assert once == once.strip()
    assert "  " not in once


@pytest.mark.parametrize(
    ("raw", "country", "code"),
    [
        ("75001", "FR", "75001"),
        (" 06000 ", "FR", "06000"),
        ("75 001", "FR", "75001"),
        ("97400", "FR", "97400"),
        ("98000", "MC", "98000"),
        # A JSON number lost its leading zero in a spreadsheet: padded back.
        (6000, "FR", "06000"),
        (75001, "FR", "75001"),
        ("sw1a  1aa", "GB", "SW1A 1AA"),
        ("1000", "BE", "1000"),
        ("h3z 2y7", None, "H3Z 2Y7"),
        (2134, "US", "2134"),
    ],
)
def test_normalizes_postal_codes(raw: str | int, country: str | None, code: str) -> None:
    assert normalize_postal_code(raw, country) == code


@pytest.mark.parametrize(
    ("raw", "country"),
    [
        # Typed as four characters: a mistake we do not guess at.
        ("6000", "FR"),
        ("750011", "FR"),
        ("7500A", "FR"),
        ("00100", "FR"),
        (750011, "FR"),
        (-6000, "FR"),
        ("75001", "MC"),
        ("", "GB"),
        ("X" * 17, "GB"),
        ("75\x00001", "FR"),
    ],
)
def test_refuses_bad_postal_codes(raw: str | int, country: str | None) -> None:
    with pytest.raises(ValueError, match=r"\w"):
        normalize_postal_code(raw, country)


@pytest.mark.parametrize(
    ("raw", "code"), [("FR", "FR"), (" fr ", "FR"), ("be", "BE"), ("GB", "GB"), ("RE", "RE")]
)
def test_normalizes_countries(raw: str, code: str) -> None:
    assert normalize_country(raw) == code


@pytest.mark.parametrize("raw", ["", "F", "FRA", "France", "UK", "XX", "001", "ZZ", "f r"])
def test_refuses_bad_countries(raw: str) -> None:
    with pytest.raises(ValueError, match="ISO 3166-1 alpha-2"):
        normalize_country(raw)


@pytest.mark.parametrize(
    ("raw", "iso"),
    [
        ("1990-05-17", "1990-05-17"),
        (" 1990-05-17 ", "1990-05-17"),
        ("17/05/1990", "1990-05-17"),
        ("7/5/1990", "1990-05-07"),
        ("29/02/2000", "2000-02-29"),
        ("2026-05-17", "2026-05-17"),
        ("1900-01-01", "1900-01-01"),
    ],
)
def test_normalizes_birth_dates(raw: str, iso: str) -> None:
    assert normalize_birth_date(raw, today=TODAY) == iso


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("31/02/1990", "not a date that exists"),
        ("29/02/1999", "not a date that exists"),
        ("1990-13-01", "not a date that exists"),
        ("2026-05-18", "is in the future"),
        ("1899-12-31", "is before 1900"),
        ("05/17/1990", "not a date that exists"),
        ("1990/05/17", "expected YYYY-MM-DD or DD/MM/YYYY"),
        ("17.05.1990", "expected YYYY-MM-DD or DD/MM/YYYY"),
        ("1990-5-17", "expected YYYY-MM-DD or DD/MM/YYYY"),
        ("yesterday", "expected YYYY-MM-DD or DD/MM/YYYY"),
        ("", "expected YYYY-MM-DD or DD/MM/YYYY"),
    ],
)
def test_refuses_bad_birth_dates(raw: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        normalize_birth_date(raw, today=TODAY)
