"""Reading the parameters of a rule kind (``field``, ``if_absent``, ``values``, ``pattern``,
``min``/``max``, region codes), shared by the kind families in this package.

Each reader reports a bad parameter into the ``Reader`` (with its path) and returns a harmless
fallback, so the whole pack is still checked.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date

import phonenumbers

from gateway.config.reader import MISSING, Reader, join, opt, show
from gateway.rules.fields import EXTRA_PREFIX, FIELD_NAMES, Getter, getter
from gateway.rules.model import Env, Predicate

Fields = dict[str, object]


def read_field(r: Reader, fields: Fields, path: str, default: str | None = None) -> Getter:
    name = opt(fields, "field", default)
    found = getter(name) if isinstance(name, str) else None
    if found is None and name is not None:
        listed = ", ".join(FIELD_NAMES)
        r.fail(
            join(path, "field"), f"{show(name)} is not a field ({listed}, or {EXTRA_PREFIX}<name>)"
        )
    return found or _nothing


def _nothing(env: Env) -> str | None:
    return None


def read_if_absent(r: Reader, fields: Fields, path: str) -> bool:
    return r.boolean(opt(fields, "if_absent", False), join(path, "if_absent"))


def scalar_text(value: object) -> str | None:
    """A YAML scalar as the text a field holds (``true`` is ``"true"``, ``18`` is ``"18"``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | str):
        return str(value)
    if isinstance(value, date):
        return value.isoformat()
    return None


def read_texts(r: Reader, value: object, path: str, *, fold: bool) -> frozenset[str]:
    texts: set[str] = set()
    items = r.items(value, path, "a list of values")
    if value is not MISSING and not items:
        r.fail(path, "needs at least one value")
    for i, item in enumerate(items):
        text = scalar_text(item)
        if text is None:
            r.fail(f"{path}[{i}]", f"expected a text, number or true/false, got {show(item)}")
        else:
            texts.add(text.casefold() if fold else text)
    return frozenset(texts)


def read_pattern(r: Reader, value: object, path: str, flags: int = 0) -> re.Pattern[str]:
    if value is MISSING:
        return re.compile("(?!)")
    if not isinstance(value, str):
        r.fail(path, f"expected a regular expression, got {show(value)}")
        return re.compile("(?!)")
    try:
        return re.compile(value, flags)
    except re.error as exc:
        r.fail(path, f"not a valid regular expression: {exc}")
        return re.compile("(?!)")


def read_bounds(
    r: Reader, fields: Fields, path: str, read: Callable[[object, str], float | None]
) -> tuple[float | None, float | None]:
    low = None if fields.get("min") is None else read(fields["min"], join(path, "min"))
    high = None if fields.get("max") is None else read(fields["max"], join(path, "max"))
    if fields.get("min") is None and fields.get("max") is None:
        r.fail(path, "needs min, max or both")
    elif low is not None and high is not None and low > high:
        r.fail(join(path, "max"), f"{show(fields['max'])} is below min {show(fields['min'])}")
    return low, high


def number_reader(
    r: Reader, *, whole: bool, minimum: float
) -> Callable[[object, str], float | None]:
    def read(value: object, path: str) -> float | None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            r.fail(path, f"expected a {'whole ' if whole else ''}number, got {show(value)}")
            return None
        if whole and not isinstance(value, int):
            r.fail(path, f"expected a whole number, got {show(value)}")
            return None
        if value < minimum:
            r.fail(path, f"{value} must be at least {minimum:g}")
            return None
        return float(value)

    return read


def on_value(get: Getter, check: Callable[[str], bool], absent: bool) -> Predicate:
    def test(env: Env) -> bool:
        value = get(env)
        return absent if value is None else check(value)

    return test


def read_regions(r: Reader, value: object, path: str, what: str) -> frozenset[str]:
    found: set[str] = set()
    items = r.items(value, path, f"a list of {what} codes like FR")
    if value is not MISSING and not items:
        r.fail(path, f"needs at least one {what}")
    for i, code in enumerate(items):
        if not isinstance(code, str) or code not in phonenumbers.SUPPORTED_REGIONS:
            r.fail(f"{path}[{i}]", f"{show(code)} is not an ISO 3166-1 alpha-2 code like FR, BE")
        else:
            found.add(code)
    return frozenset(found)
