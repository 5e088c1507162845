"""Rule kinds about the lead's phone, read by libphonenumber: ``phone_valid``, ``phone_type``,
``phone_region``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

import phonenumbers
from phonenumbers import PhoneNumberType

from gateway.config.reader import MISSING, Reader, join, show
from gateway.rules.kinds.parameters import Fields, read_regions
from gateway.rules.model import Env, Predicate

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


def phone_valid(r: Reader, fields: Fields, path: str) -> Predicate:
    def test(env: Env) -> bool:
        number = env.phone_number()
        return number is not None and phonenumbers.is_valid_number(number)

    return test


def phone_type(r: Reader, fields: Fields, path: str) -> Predicate:
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


def phone_region(r: Reader, fields: Fields, path: str) -> Predicate:
    regions = read_regions(r, fields.get("regions", MISSING), join(path, "regions"), "region")

    def test(env: Env) -> bool:
        number = env.phone_number()
        return number is not None and phonenumbers.region_code_for_number(number) in regions

    return test
