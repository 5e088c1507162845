"""Conditions of rules, from their YAML form to plain closures over an ``Env``.

A condition is ``{kind: <kind>, <parameters>}``, or a composition: ``{all: [conditions]}``,
``{any: [conditions]}``, ``{not: condition}``. Every kind is a predicate about the lead that
is true or false; a predicate about a field the lead does not carry is false, unless the
condition says ``if_absent: true``. ``KINDS`` lists every kind with its parameters;
``rules/README.md`` documents each with an example.

Compilation validates everything it can (unknown keys and kinds, unknown fields, bad regular
expressions, empty or inverted ranges) and reports into a ``Reader``; a condition that could
not be compiled becomes a predicate that is always false (the pack is refused anyway).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Final

import phonenumbers
from phonenumbers import PhoneNumberType

from gateway.config.reader import MISSING, Reader, join, opt, show
from gateway.rules.emails import FREE_MAIL_DOMAINS, ROLE_ACCOUNTS, is_disposable, typo_domains
from gateway.rules.fields import EXTRA_PREFIX, FIELD_NAMES, Getter, getter, honeypot_name
from gateway.rules.model import Env, Predicate

Fields = dict[str, object]
Builder = Callable[[Reader, Fields, str], Predicate]

_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_REGION = re.compile(r"[A-Z]{2}")

PHONE_TYPES: Final[Mapping[str, frozenset[int]]] = {
    "mobile": frozenset({PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE}),
    "landline": frozenset({PhoneNumberType.FIXED_LINE, PhoneNumberType.FIXED_LINE_OR_MOBILE}),
    "voip": frozenset({PhoneNumberType.VOIP}),
    "toll_free": frozenset({PhoneNumberType.TOLL_FREE}),
    "premium_rate": frozenset({PhoneNumberType.PREMIUM_RATE}),
    "shared_cost": frozenset({PhoneNumberType.SHARED_COST}),
    "personal": frozenset({PhoneNumberType.PERSONAL_NUMBER}),
    "pager": frozenset({PhoneNumberType.PAGER}),
    "uan": frozenset({PhoneNumberType.UAN}),
    "voicemail": frozenset({PhoneNumberType.VOICEMAIL}),
    "unknown": frozenset({PhoneNumberType.UNKNOWN}),
}

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


def _never(env: Env) -> bool:
    return False


def compile_condition(r: Reader, value: object, path: str) -> Predicate:
    """The predicate of condition ``value`` at ``path`` (problems reported into ``r``)."""
    if not isinstance(value, dict):
        r.fail(
            path, f"expected a condition (a mapping with kind, all, any or not), got {show(value)}"
        )
        return _never
    for word in ("all", "any", "not"):
        if word in value:
            return _composition(r, value, path, word)
    if "kind" not in value:
        r.fail(path, "a condition needs a kind (or all, any, not)")
        return _never
    kind = value["kind"]
    spec = KINDS.get(kind) if isinstance(kind, str) else None
    if spec is None:
        r.fail(join(path, "kind"), f"{show(kind)} is not a rule kind ({', '.join(KINDS)})")
        return _never
    fields = r.mapping(
        value, path, f"a {kind} condition", required=("kind", *spec.required),
        optional=spec.optional,
    )  # fmt: skip
    before = len(r.issues)
    test = spec.build(r, fields, path)
    return _never if len(r.issues) > before else test


def _composition(r: Reader, value: dict[object, object], path: str, word: str) -> Predicate:
    fields = r.mapping(value, path, f"an {word} condition", required=(word,))
    if word == "not":
        inner = compile_condition(r, fields.get("not", MISSING), join(path, "not"))
        return lambda env: not inner(env)
    items = r.items(fields.get(word, MISSING), join(path, word), "a list of conditions")
    if word in fields and not items:
        r.fail(join(path, word), "needs at least one condition")
    tests = tuple(compile_condition(r, c, f"{path}.{word}[{i}]") for i, c in enumerate(items))
    if word == "all":

        def every(env: Env) -> bool:
            for test in tests:  # noqa: SIM110 (a generator per call costs more)
                if not test(env):
                    return False
            return True

        return every

    def some(env: Env) -> bool:
        for test in tests:  # noqa: SIM110 (a generator per call costs more)
            if test(env):
                return True
        return False

    return some


# --- parameters --------------------------------------------------------------------------


def _field(r: Reader, fields: Fields, path: str, default: str | None = None) -> Getter:
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


def _if_absent(r: Reader, fields: Fields, path: str) -> bool:
    return r.boolean(opt(fields, "if_absent", False), join(path, "if_absent"))


def _text(value: object) -> str | None:
    """A YAML scalar as the text a field holds (``true`` is ``"true"``, ``18`` is ``"18"``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | str):
        return str(value)
    if isinstance(value, date):
        return value.isoformat()
    return None


def _texts(r: Reader, value: object, path: str, *, fold: bool) -> frozenset[str]:
    texts: set[str] = set()
    items = r.items(value, path, "a list of values")
    if value is not MISSING and not items:
        r.fail(path, "needs at least one value")
    for i, item in enumerate(items):
        text = _text(item)
        if text is None:
            r.fail(f"{path}[{i}]", f"expected a text, number or true/false, got {show(item)}")
        else:
            texts.add(text.casefold() if fold else text)
    return frozenset(texts)


def _pattern(r: Reader, value: object, path: str, flags: int = 0) -> re.Pattern[str]:
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


def _bounds(
    r: Reader, fields: Fields, path: str, read: Callable[[object, str], float | None]
) -> tuple[float | None, float | None]:
    low = None if fields.get("min") is None else read(fields["min"], join(path, "min"))
    high = None if fields.get("max") is None else read(fields["max"], join(path, "max"))
    if fields.get("min") is None and fields.get("max") is None:
        r.fail(path, "needs min, max or both")
    elif low is not None and high is not None and low > high:
        r.fail(join(path, "max"), f"{show(fields['max'])} is below min {show(fields['min'])}")
    return low, high


def _reader_of(r: Reader, *, whole: bool, minimum: float) -> Callable[[object, str], float | None]:
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


def _on_value(get: Getter, check: Callable[[str], bool], absent: bool) -> Predicate:
    def test(env: Env) -> bool:
        value = get(env)
        return absent if value is None else check(value)

    return test


# --- kinds -------------------------------------------------------------------------------


def _present(r: Reader, fields: Fields, path: str) -> Predicate:
    getters = _field_list(r, fields, path)

    def test(env: Env) -> bool:
        for get in getters:  # noqa: SIM110 (a generator per call costs more)
            if get(env) is None:
                return False
        return True

    return test


def _absent(r: Reader, fields: Fields, path: str) -> Predicate:
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
    return tuple(_field(r, {"field": name}, f"{at}[{i}]") for i, name in enumerate(items))


def _equals(r: Reader, fields: Fields, path: str) -> Predicate:
    fold = r.boolean(opt(fields, "ignore_case", False), join(path, "ignore_case"))
    raw = fields.get("value", MISSING)
    expected = _text(raw) if raw is not MISSING else ""
    if expected is None:
        r.fail(join(path, "value"), f"expected a text, number or true/false, got {show(raw)}")
        expected = ""
    get = _field(r, fields, path)
    if fold:
        folded = expected.casefold()
        return _on_value(get, lambda v: v.casefold() == folded, _if_absent(r, fields, path))
    return _on_value(get, expected.__eq__, _if_absent(r, fields, path))


def _in(r: Reader, fields: Fields, path: str, *, negate: bool = False) -> Predicate:
    fold = r.boolean(opt(fields, "ignore_case", False), join(path, "ignore_case"))
    values = _texts(r, fields.get("values", MISSING), join(path, "values"), fold=fold)
    get = _field(r, fields, path)
    absent = _if_absent(r, fields, path)
    if fold:
        return _on_value(get, lambda v: (v.casefold() in values) is not negate, absent)
    return _on_value(get, lambda v: (v in values) is not negate, absent)


def _not_in(r: Reader, fields: Fields, path: str) -> Predicate:
    return _in(r, fields, path, negate=True)


def _regex(r: Reader, fields: Fields, path: str) -> Predicate:
    fold = r.boolean(opt(fields, "ignore_case", False), join(path, "ignore_case"))
    pattern = _pattern(
        r, fields.get("pattern", MISSING), join(path, "pattern"), re.I if fold else 0
    )
    match = pattern.fullmatch
    return _on_value(
        _field(r, fields, path), lambda v: match(v) is not None, _if_absent(r, fields, path)
    )


def _length(r: Reader, fields: Fields, path: str) -> Predicate:
    low, high = _bounds(r, fields, path, _reader_of(r, whole=True, minimum=0))
    lo, hi = int(low or 0), (int(high) if high is not None else 1 << 62)
    return _on_value(
        _field(r, fields, path), lambda v: lo <= len(v) <= hi, _if_absent(r, fields, path)
    )


def _range(r: Reader, fields: Fields, path: str) -> Predicate:
    low, high = _bounds(r, fields, path, _reader_of(r, whole=False, minimum=float("-inf")))
    lo = float("-inf") if low is None else low
    hi = float("inf") if high is None else high

    def check(value: str) -> bool:
        try:
            number = float(value)
        except ValueError:
            return False
        return lo <= number <= hi

    return _on_value(_field(r, fields, path), check, _if_absent(r, fields, path))


def _date_range(r: Reader, fields: Fields, path: str) -> Predicate:
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

    return _on_value(_field(r, fields, path, "birth_date"), check, _if_absent(r, fields, path))


def _age(r: Reader, fields: Fields, path: str) -> Predicate:
    low, high = _bounds(r, fields, path, _reader_of(r, whole=True, minimum=0))
    get = _field(r, fields, path, "birth_date")
    absent = _if_absent(r, fields, path)

    # Age >= n  <=>  born on or before the date n years before today (text compare of ISO
    # dates). Someone born on 29 February has their birthday on 1 March in other years.
    def cutoff(today: str, years: int) -> str:
        return f"{int(today[:4]) - years:04d}{today[4:]}"

    def test(env: Env) -> bool:
        born = get(env)
        if born is None:
            return absent
        today = env.today()
        if low is not None and born > cutoff(today, int(low)):
            return False
        return not (high is not None and born <= cutoff(today, int(high) + 1))

    return test


def _email_valid(r: Reader, fields: Fields, path: str) -> Predicate:
    # The intake refuses (422) any email that fails syntax, IDNA or special-use checks, so a
    # lead that carries an email carries a valid one.
    return lambda env: env.lead.email is not None


def _email_disposable(r: Reader, fields: Fields, path: str) -> Predicate:
    return lambda env: (
        env.lead.email is not None and is_disposable(env.lead.email.rpartition("@")[2])
    )


def _email_role_account(r: Reader, fields: Fields, path: str) -> Predicate:
    names = ROLE_ACCOUNTS
    if fields.get("names") is not None:
        names = _texts(r, fields["names"], join(path, "names"), fold=True)

    def test(env: Env) -> bool:
        email = env.lead.email
        return email is not None and email.rpartition("@")[0].partition("+")[0] in names

    return test


def _email_free_mail(r: Reader, fields: Fields, path: str) -> Predicate:
    domains = FREE_MAIL_DOMAINS
    if fields.get("domains") is not None:
        domains = _texts(r, fields["domains"], join(path, "domains"), fold=True)
    if fields.get("add") is not None:
        domains = domains | _texts(r, fields["add"], join(path, "add"), fold=True)
    return lambda env: env.lead.email is not None and env.lead.email.rpartition("@")[2] in domains


def _email_typo(r: Reader, fields: Fields, path: str) -> Predicate:
    typos = typo_domains()
    return lambda env: env.lead.email is not None and env.lead.email.rpartition("@")[2] in typos


def _phone_valid(r: Reader, fields: Fields, path: str) -> Predicate:
    def test(env: Env) -> bool:
        number = env.phone_number()
        return number is not None and phonenumbers.is_valid_number(number)

    return test


def _phone_type(r: Reader, fields: Fields, path: str) -> Predicate:
    at = join(path, "types")
    wanted: set[int] = set()
    items = r.items(fields.get("types", MISSING), at, "a list of phone number types")
    if "types" in fields and not items:
        r.fail(at, "needs at least one type")
    for i, name in enumerate(items):
        if not isinstance(name, str) or name not in PHONE_TYPES:
            r.fail(f"{at}[{i}]", f"{show(name)} is not one of {', '.join(PHONE_TYPES)}")
        else:
            wanted |= PHONE_TYPES[name]
    types = frozenset(wanted)

    def test(env: Env) -> bool:
        number = env.phone_number()
        return number is not None and phonenumbers.number_type(number) in types

    return test


def _regions(r: Reader, value: object, path: str, what: str) -> frozenset[str]:
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


def _phone_region(r: Reader, fields: Fields, path: str) -> Predicate:
    regions = _regions(r, fields.get("regions", MISSING), join(path, "regions"), "region")

    def test(env: Env) -> bool:
        number = env.phone_number()
        return number is not None and phonenumbers.region_code_for_number(number) in regions

    return test


def _country(r: Reader, fields: Fields, path: str) -> Predicate:
    countries = _regions(r, fields.get("countries", MISSING), join(path, "countries"), "country")

    def test(env: Env) -> bool:
        country = env.lead.country or env.country
        return country in countries

    return test


def _postal_code(r: Reader, fields: Fields, path: str) -> Predicate:
    patterns = {code: re.compile(p) for code, p in POSTAL_CODE_PATTERNS.items()}
    given = r.mapping(
        opt(fields, "patterns", {}), join(path, "patterns"), "a mapping of country: pattern"
    )
    for code, pattern in given.items():
        at = join(path, f"patterns.{code}")
        if not _REGION.fullmatch(code) or code not in phonenumbers.SUPPORTED_REGIONS:
            r.fail(at, f"{show(code)} is not an ISO 3166-1 alpha-2 code like FR, BE")
        patterns[code] = _pattern(r, pattern, at)
    other = r.boolean(opt(fields, "other_countries", False), join(path, "other_countries"))
    absent = _if_absent(r, fields, path)

    def test(env: Env) -> bool:
        code = env.lead.postal_code
        if code is None:
            return absent
        pattern = patterns.get(env.lead.country or env.country or "")
        return other if pattern is None else pattern.fullmatch(code) is not None

    return test


def _consent_given(r: Reader, fields: Fields, path: str) -> Predicate:
    return lambda env: env.lead.consent is not None and env.lead.consent.given


def _consent_fresh(r: Reader, fields: Fields, path: str) -> Predicate:
    max_age_s = r.duration(fields.get("max_age", MISSING), join(path, "max_age"))

    def test(env: Env) -> bool:
        consent = env.lead.consent
        return (
            consent is not None and consent.at is not None and env.now_s - consent.at <= max_age_s
        )

    return test


def _consent_recorded(r: Reader, fields: Fields, path: str) -> Predicate:
    at = join(path, "fields")
    names: tuple[str, ...] = ("text", "version")
    if fields.get("fields") is not None:
        items = r.items(fields["fields"], at, "a list among text, version")
        if not items:
            r.fail(at, "needs at least one of text, version")
        bad = [i for i, name in enumerate(items) if name not in ("text", "version")]
        for i in bad:
            r.fail(f"{at}[{i}]", f"{show(items[i])} is not one of text, version")
        names = tuple(str(name) for name in items if name in ("text", "version"))
    text, version = "text" in names, "version" in names

    def test(env: Env) -> bool:
        consent = env.lead.consent
        return (
            consent is not None
            and (not text or consent.text is not None)
            and (not version or consent.version is not None)
        )

    return test


def _consent_certificate(r: Reader, fields: Fields, path: str) -> Predicate:
    pattern = None
    if fields.get("pattern") is not None:
        pattern = _pattern(r, fields["pattern"], join(path, "pattern"))

    def test(env: Env) -> bool:
        consent = env.lead.consent
        certificate = None if consent is None else consent.certificate_id
        if certificate is None:
            return False
        return pattern is None or pattern.fullmatch(certificate) is not None

    return test


def _honeypot_empty(r: Reader, fields: Fields, path: str) -> Predicate:
    raw = fields.get("field", MISSING)
    name = honeypot_name(raw) if isinstance(raw, str) else None
    if name is None and raw is not MISSING:
        r.fail(
            join(path, "field"),
            f"{show(raw)} cannot be a honeypot: use a field name leadgate does not know "
            "(letters, digits, _ . -), like website",
        )
    return lambda env: name is None or name not in env.lead.extra


@dataclass(frozen=True, slots=True)
class Kind:
    build: Builder
    required: tuple[str, ...] = ()
    optional: tuple[str, ...] = ()
    summary: str = ""


_VALUE = ("field",)
_VALUE_OPTIONS = ("if_absent",)
KINDS: Final[Mapping[str, Kind]] = {
    "present": Kind(_present, ("fields",), (), "every field listed is present"),
    "absent": Kind(_absent, ("fields",), (), "no field listed is present"),
    "equals": Kind(_equals, (*_VALUE, "value"), (*_VALUE_OPTIONS, "ignore_case"), "field == value"),
    "in": Kind(
        _in, (*_VALUE, "values"), (*_VALUE_OPTIONS, "ignore_case"), "field is one of values"
    ),
    "not_in": Kind(
        _not_in, (*_VALUE, "values"), (*_VALUE_OPTIONS, "ignore_case"), "field is none of values"
    ),
    "regex": Kind(
        _regex, (*_VALUE, "pattern"), (*_VALUE_OPTIONS, "ignore_case"), "field matches pattern"
    ),
    "length": Kind(_length, _VALUE, ("min", "max", *_VALUE_OPTIONS), "characters in min..max"),
    "range": Kind(_range, _VALUE, ("min", "max", *_VALUE_OPTIONS), "a number in min..max"),
    "date_range": Kind(
        _date_range, (), ("field", "min", "max", *_VALUE_OPTIONS), "a date in min..max"
    ),
    "age": Kind(_age, (), ("field", "min", "max", *_VALUE_OPTIONS), "age in years in min..max"),
    "email_valid": Kind(_email_valid, (), (), "an email is present (and valid)"),
    "email_disposable": Kind(_email_disposable, (), (), "the email is a throwaway address"),
    "email_role_account": Kind(
        _email_role_account, (), ("names",), "the email is a role mailbox (info@)"
    ),
    "email_free_mail": Kind(
        _email_free_mail, (), ("domains", "add"), "the email is at a free-mail provider"
    ),
    "email_typo": Kind(_email_typo, (), (), "the email domain is a typo of a big provider's"),
    "phone_valid": Kind(_phone_valid, (), (), "a phone is present and valid"),
    "phone_type": Kind(_phone_type, ("types",), (), "the phone is of one of types"),
    "phone_region": Kind(_phone_region, ("regions",), (), "the phone belongs to one of regions"),
    "country": Kind(_country, ("countries",), (), "the lead's country is one of countries"),
    "postal_code": Kind(
        _postal_code,
        (),
        ("patterns", "other_countries", "if_absent"),
        "the postal code fits its country's pattern",
    ),
    "consent_given": Kind(_consent_given, (), (), "consent is present and given"),
    "consent_fresh": Kind(_consent_fresh, ("max_age",), (), "consent given within max_age"),
    "consent_recorded": Kind(_consent_recorded, (), ("fields",), "consent text/version are sent"),
    "consent_certificate": Kind(
        _consent_certificate, (), ("pattern",), "a consent certificate id is sent"
    ),
    "honeypot_empty": Kind(_honeypot_empty, ("field",), (), "the hidden form field is empty"),
}
