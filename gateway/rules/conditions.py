"""Conditions of rules, from their YAML form to plain closures over an ``Env``.

A condition is ``{kind: <kind>, <parameters>}``, or a composition: ``{all: [conditions]}``,
``{any: [conditions]}``, ``{not: condition}``. Every kind is a predicate about the lead that
is true or false; a predicate about a field the lead does not carry is false, unless the
condition says ``if_absent: true``. ``KINDS`` lists every kind with its parameters;
``rules/README.md`` documents each with an example. The kinds are built by their families in
``rules.kinds`` (field checks, email, phone, place, consent); this module compiles a condition
and registers every kind.

Compilation validates everything it can (unknown keys and kinds, unknown fields, bad regular
expressions, empty or inverted ranges) and reports into a ``Reader``; a condition that could
not be compiled becomes a predicate that is always false (the pack is refused anyway).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

from gateway.config.reader import MISSING, Reader, join, show
from gateway.rules.kinds.consent import (
    consent_certificate,
    consent_fresh,
    consent_given,
    consent_recorded,
)
from gateway.rules.kinds.email import (
    email_disposable,
    email_free_mail,
    email_role_account,
    email_typo,
    email_valid,
)
from gateway.rules.kinds.field_checks import (
    absent,
    age,
    date_range,
    equals,
    honeypot_empty,
    in_,
    length,
    not_in,
    present,
    range_,
    regex,
)
from gateway.rules.kinds.parameters import Fields
from gateway.rules.kinds.phone import phone_region, phone_type, phone_valid
from gateway.rules.kinds.place import country, postal_code
from gateway.rules.model import Env, Predicate

Builder = Callable[[Reader, Fields, str], Predicate]


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


@dataclass(frozen=True, slots=True)
class Kind:
    build: Builder
    required: tuple[str, ...] = ()
    optional: tuple[str, ...] = ()
    summary: str = ""


_VALUE = ("field",)
_VALUE_OPTIONS = ("if_absent",)
KINDS: Final[Mapping[str, Kind]] = {
    "present": Kind(present, ("fields",), (), "every field listed is present"),
    "absent": Kind(absent, ("fields",), (), "no field listed is present"),
    "equals": Kind(equals, (*_VALUE, "value"), (*_VALUE_OPTIONS, "ignore_case"), "field == value"),
    "in": Kind(
        in_, (*_VALUE, "values"), (*_VALUE_OPTIONS, "ignore_case"), "field is one of values"
    ),
    "not_in": Kind(
        not_in, (*_VALUE, "values"), (*_VALUE_OPTIONS, "ignore_case"), "field is none of values"
    ),
    "regex": Kind(
        regex, (*_VALUE, "pattern"), (*_VALUE_OPTIONS, "ignore_case"), "field matches pattern"
    ),
    "length": Kind(length, _VALUE, ("min", "max", *_VALUE_OPTIONS), "characters in min..max"),
    "range": Kind(range_, _VALUE, ("min", "max", *_VALUE_OPTIONS), "a number in min..max"),
    "date_range": Kind(
        date_range, (), ("field", "min", "max", *_VALUE_OPTIONS), "a date in min..max"
    ),
    "age": Kind(age, (), ("field", "min", "max", *_VALUE_OPTIONS), "age in years in min..max"),
    "email_valid": Kind(email_valid, (), (), "an email is present (and valid)"),
    "email_disposable": Kind(email_disposable, (), (), "the email is a throwaway address"),
    "email_role_account": Kind(
        email_role_account, (), ("names",), "the email is a role mailbox (info@)"
    ),
    "email_free_mail": Kind(
        email_free_mail, (), ("domains", "add"), "the email is at a free-mail provider"
    ),
    "email_typo": Kind(email_typo, (), (), "the email domain is a typo of a big provider's"),
    "phone_valid": Kind(phone_valid, (), (), "a phone is present and valid"),
    "phone_type": Kind(phone_type, ("types",), (), "the phone is of one of types"),
    "phone_region": Kind(phone_region, ("regions",), (), "the phone belongs to one of regions"),
    "country": Kind(country, ("countries",), (), "the lead's country is one of countries"),
    "postal_code": Kind(
        postal_code,
        (),
        ("patterns", "other_countries", "if_absent"),
        "the postal code fits its country's pattern",
    ),
    "consent_given": Kind(consent_given, (), (), "consent is present and given"),
    "consent_fresh": Kind(consent_fresh, ("max_age",), (), "consent given within max_age"),
    "consent_recorded": Kind(consent_recorded, (), ("fields",), "consent text/version are sent"),
    "consent_certificate": Kind(
        consent_certificate, (), ("pattern",), "a consent certificate id is sent"
    ),
    "honeypot_empty": Kind(honeypot_empty, ("field",), (), "the hidden form field is empty"),
}
