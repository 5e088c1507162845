"""Rule kinds that check one field (or a list of fields) of the lead: ``present``, ``absent``,
``equals``, ``in``, ``not_in``, ``regex``, ``length``, ``range``, ``date_range``, ``age``, and
``honeypot_empty`` (a hidden form field the publisher forwards).
"""

from __future__ import annotations

import re
from datetime import date

from gateway.config.reader import MISSING, Reader, join, opt, show
from gateway.rules.fields import Getter, honeypot_name
from gateway.rules.kinds.parameters import (
    Fields,
    number_reader,
    on_value,
    read_bounds,
    read_field,
    read_if_absent,
    read_pattern,
    read_texts,
    scalar_text,
)
from gateway.rules.model import Env, Predicate

_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def present(r: Reader, fields: Fields, path: str) -> Predicate:
    getters = _field_list(r, fields, path)

    def test(env: Env) -> bool:
        for get in getters:  # noqa: SIM110 (a generator per call costs more)
            if get(env) is None:
                return False
        return True

    return test


def absent(r: Reader, fields: Fields, path: str) -> Predicate:
    getters = _field_list(r, fields, path)

    def test(env: Env) -> bool:
        for get in getters:  # noqa: SIM110 (a generator per call costs more)
            if get(env) is not None:
                return False
        return True

    return test


def _field_list(r: Reader, fields: Fields, path: str) -> tuple[Getter, ...]:
    at = join(path, "fields")
    items = r.items(fields.get("fields", MISSING), at, "a list of field names")
    if "fields" in fields and not items:
        r.fail(at, "needs at least one field")
    return tuple(read_field(r, {"field": name}, f"{at}[{i}]") for i, name in enumerate(items))


def equals(r: Reader, fields: Fields, path: str) -> Predicate:
    fold = r.boolean(opt(fields, "ignore_case", False), join(path, "ignore_case"))
    raw = fields.get("value", MISSING)
    expected = scalar_text(raw) if raw is not MISSING else ""
    if expected is None:
        r.fail(join(path, "value"), f"expected a text, number or true/false, got {show(raw)}")
        expected = ""
    get = read_field(r, fields, path)
    if fold:
        folded = expected.casefold()
        return on_value(get, lambda v: v.casefold() == folded, read_if_absent(r, fields, path))
    return on_value(get, expected.__eq__, read_if_absent(r, fields, path))


def in_(r: Reader, fields: Fields, path: str, *, negate: bool = False) -> Predicate:
    fold = r.boolean(opt(fields, "ignore_case", False), join(path, "ignore_case"))
    values = read_texts(r, fields.get("values", MISSING), join(path, "values"), fold=fold)
    get = read_field(r, fields, path)
    if_absent = read_if_absent(r, fields, path)
    if fold:
        return on_value(get, lambda v: (v.casefold() in values) is not negate, if_absent)
    return on_value(get, lambda v: (v in values) is not negate, if_absent)


def not_in(r: Reader, fields: Fields, path: str) -> Predicate:
    return in_(r, fields, path, negate=True)


def regex(r: Reader, fields: Fields, path: str) -> Predicate:
    fold = r.boolean(opt(fields, "ignore_case", False), join(path, "ignore_case"))
    pattern = read_pattern(
        r, fields.get("pattern", MISSING), join(path, "pattern"), re.I if fold else 0
    )
    match = pattern.fullmatch
    return on_value(
        read_field(r, fields, path), lambda v: match(v) is not None, read_if_absent(r, fields, path)
    )


def length(r: Reader, fields: Fields, path: str) -> Predicate:
    low, high = read_bounds(r, fields, path, number_reader(r, whole=True, minimum=0))
    lo, hi = int(low or 0), (int(high) if high is not None else 1 << 62)
    return on_value(
        read_field(r, fields, path), lambda v: lo <= len(v) <= hi, read_if_absent(r, fields, path)
    )


def range_(r: Reader, fields: Fields, path: str) -> Predicate:
    low, high = read_bounds(r, fields, path, number_reader(r, whole=False, minimum=float("-inf")))
    lo = float("-inf") if low is None else low
    hi = float("inf") if high is None else high

    def check(value: str) -> bool:
        try:
            number = float(value)
        except ValueError:
            return False
        return lo <= number <= hi

    return on_value(read_field(r, fields, path), check, read_if_absent(r, fields, path))


def date_range(r: Reader, fields: Fields, path: str) -> Predicate:
    def read(value: object, at: str) -> str | None:
        text = value.isoformat() if isinstance(value, date) else value
        if not isinstance(text, str) or not _ISO_DATE.fullmatch(text):
            r.fail(at, f"{show(value)} is not a date like 1990-12-31")
            return None
        return text

    low = None if fields.get("min") is None else read(fields["min"], join(path, "min"))
    high = None if fields.get("max") is None else read(fields["max"], join(path, "max"))
    if fields.get("min") is None and fields.get("max") is None:
        r.fail(path, "needs min, max or both")
    elif low is not None and high is not None and low > high:
        r.fail(join(path, "max"), f"{high} is before min {low}")
    lo, hi = low or "0000-00-00", high or "9999-99-99"

    # ISO dates compare as text; a value that is not a date (an extra field) is outside.
    def check(value: str) -> bool:
        day = value[:10]
        return _ISO_DATE.fullmatch(day) is not None and lo <= day <= hi

    return on_value(
        read_field(r, fields, path, "birth_date"), check, read_if_absent(r, fields, path)
    )


def age(r: Reader, fields: Fields, path: str) -> Predicate:
    low, high = read_bounds(r, fields, path, number_reader(r, whole=True, minimum=0))
    get = read_field(r, fields, path, "birth_date")
    if_absent = read_if_absent(r, fields, path)

    # Age >= n  <=>  born on or before the date n years before today (text compare of ISO
    # dates). Someone born on 29 February has their birthday on 1 March in other years.
    def cutoff(today: str, years: int) -> str:
        return f"{int(today[:4]) - years:04d}{today[4:]}"

    def test(env: Env) -> bool:
        born = get(env)
        if born is None:
            return if_absent
        today = env.today()
        if low is not None and born > cutoff(today, int(low)):
            return False
        return not (high is not None and born <= cutoff(today, int(high) + 1))

    return test


def honeypot_empty(r: Reader, fields: Fields, path: str) -> Predicate:
    raw = fields.get("field", MISSING)
    name = honeypot_name(raw) if isinstance(raw, str) else None
    if name is None and raw is not MISSING:
        r.fail(
            join(path, "field"),
            f"{show(raw)} cannot be a honeypot: use a field name leadgate does not know "
            "(letters, digits, _ . -), like website",
        )
    return lambda env: name is None or name not in env.lead.extra
