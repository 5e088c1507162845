"""Durations as written in the config file."""

from __future__ import annotations

import re

import pytest

from gateway.config.durations import parse_duration_s


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("45s", 45),
        ("30m", 1800),
        ("1h", 3600),
        ("1d", 86_400),
        ("30d", 30 * 86_400),
        ("2w", 14 * 86_400),
        (" 7d ", 7 * 86_400),  # YAML keeps stray spaces inside quotes
        (3600, 3600),  # an int already counts seconds
        (1, 1),
        ("5214w", 5214 * 7 * 86_400),  # just under a century
    ],
)
def test_valid_durations(text: str | int, seconds: int) -> None:
    assert parse_duration_s(text) == seconds


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("1x", "'1x' is not a duration like 30m, 1h, 1d"),
        ("", "'' is not a duration like 30m, 1h, 1d"),
        ("d", "'d' is not a duration like 30m, 1h, 1d"),
        ("1.5h", "'1.5h' is not a duration like 30m, 1h, 1d"),
        ("1h30m", "'1h30m' is not a duration like 30m, 1h, 1d"),
        ("3600", "'3600' is not a duration like 30m, 1h, 1d"),  # a unit is required in text
        ("1D", "'1D' is not a duration like 30m, 1h, 1d"),
        ("1mo", "'1mo' is not a duration like 30m, 1h, 1d"),  # months vary in length
        ("0d", "'0d' is not a positive duration"),
        ("-1d", "'-1d' is not a positive duration"),
        (0, "0 is not a positive number of seconds"),
        (-60, "-60 is not a positive number of seconds"),
        (True, "True is not a duration like 30m, 1h, 1d"),  # YAML `yes` must not mean 1s
        ("1000000w", "'1000000w' is longer than 100 years"),
        (10**400, f"{10**400!r} is longer than 100 years"),
    ],
)
def test_invalid_durations_name_the_value(text: str | int, message: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        parse_duration_s(text)


def test_a_float_is_refused() -> None:
    with pytest.raises(ValueError, match="is not a duration"):
        parse_duration_s(1.5)  # type: ignore[arg-type]
