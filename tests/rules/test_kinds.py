"""Every rule kind, with values that satisfy it and values that do not (table tests).

Each case: a condition, the fields of a lead (normalized by the real parser first) and whether
the condition holds. Absent fields make a condition false unless it says ``if_absent: true``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import phonenumbers
import pytest

from gateway.rules.conditions import KINDS
from gateway.rules.model import from_e164

from .conftest import HOUR, NOW, holds, make_lead

CONSENT = {
    "given": True,
    "at": NOW - 2 * HOUR,
    "text": "J'accepte d'être contacté.",
    "version": "v3",
    "certificate_id": "https://cert.trustedform.com/0123456789abcdef0123456789abcdef01234567",
}

Case = tuple[dict[str, Any], dict[str, object], bool]

CASES: dict[str, list[Case]] = {
    "present": [
        ({"kind": "present", "fields": ["email", "company"]}, {"company": "ACME"}, True),
        ({"kind": "present", "fields": ["email", "company"]}, {}, False),
        ({"kind": "present", "fields": ["company"]}, {"company": "   "}, False),  # blank = absent
        ({"kind": "present", "fields": ["extra.job_title"]}, {"job_title": "CTO"}, True),
        ({"kind": "present", "fields": ["consent"]}, {"consent": True}, True),
        ({"kind": "present", "fields": ["consent.at"]}, {"consent": True}, False),
    ],
    "absent": [
        ({"kind": "absent", "fields": ["company"]}, {}, True),
        ({"kind": "absent", "fields": ["company", "city"]}, {"city": "Lyon"}, False),
    ],
    "equals": [
        ({"kind": "equals", "field": "country", "value": "FR"}, {"country": "fr"}, True),
        ({"kind": "equals", "field": "country", "value": "FR"}, {"country": "BE"}, False),
        ({"kind": "equals", "field": "country", "value": "FR"}, {}, False),
        ({"kind": "equals", "field": "country", "value": "FR", "if_absent": True}, {}, True),
        ({"kind": "equals", "field": "city", "value": "lyon", "ignore_case": True},
         {"city": "LYON"}, True),
        ({"kind": "equals", "field": "city", "value": "lyon"}, {"city": "LYON"}, False),
        ({"kind": "equals", "field": "consent.given", "value": True}, {"consent": True}, True),
        ({"kind": "equals", "field": "consent.given", "value": True}, {"consent": False}, False),
        ({"kind": "equals", "field": "extra.age", "value": 42}, {"age": 42}, True),
        ({"kind": "equals", "field": "channel", "value": "email"}, {}, True),
        ({"kind": "equals", "field": "partner", "value": "p-other"}, {}, False),
    ],
    "in": [
        ({"kind": "in", "field": "email.domain", "values": ["acme.fr", "acme.com"]},
         {"email": "Jo@ACME.fr"}, True),
        ({"kind": "in", "field": "email.domain", "values": ["acme.fr"]},
         {"email": "jo@acme.com"}, False),
        ({"kind": "in", "field": "first_name", "values": ["TEST"], "ignore_case": True},
         {"first_name": "test"}, True),
        ({"kind": "in", "field": "first_name", "values": ["x"]}, {}, False),
    ],
    "not_in": [
        ({"kind": "not_in", "field": "email.local", "values": ["info"]},
         {"email": "marie@acme.fr"}, True),
        ({"kind": "not_in", "field": "email.local", "values": ["info"]},
         {"email": "info@acme.fr"}, False),
        ({"kind": "not_in", "field": "city", "values": ["x"]}, {}, False),
        ({"kind": "not_in", "field": "city", "values": ["x"], "if_absent": True}, {}, True),
    ],
    "regex": [
        ({"kind": "regex", "field": "phone", "pattern": r"\+33[67]\d{8}"},
         {"phone": "06 12 34 56 78"}, True),
        ({"kind": "regex", "field": "phone", "pattern": r"\+33[67]\d{8}"},
         {"phone": "01 23 45 67 89"}, False),
        # The whole value must match: a pattern is not searched inside it.
        ({"kind": "regex", "field": "postal_code", "pattern": r"75\d"},
         {"postal_code": "75011"}, False),
        ({"kind": "regex", "field": "last_name", "pattern": "dupont", "ignore_case": True},
         {"last_name": "DUPONT"}, True),
        ({"kind": "regex", "field": "extra.gclid", "pattern": "[A-Za-z0-9_-]+"},
         {"gclid": "Cj0KCQ"}, True),
    ],
    "length": [
        ({"kind": "length", "field": "first_name", "min": 2}, {"first_name": "Al"}, True),
        ({"kind": "length", "field": "first_name", "min": 2}, {"first_name": "A"}, False),
        ({"kind": "length", "field": "first_name", "max": 3}, {"first_name": "Anne"}, False),
        ({"kind": "length", "field": "first_name", "min": 1, "max": 4},
         {"first_name": "Léa"}, True),
    ],
    "range": [
        ({"kind": "range", "field": "extra.income", "min": 1000, "max": 5000},
         {"income": "2500"}, True),
        ({"kind": "range", "field": "extra.income", "min": 1000}, {"income": "999.5"}, False),
        ({"kind": "range", "field": "extra.income", "max": 10}, {"income": "a lot"}, False),
        ({"kind": "range", "field": "extra.income", "min": -5.5}, {"income": -5}, True),
    ],
    "date_range": [
        ({"kind": "date_range", "min": "1940-01-01", "max": "2000-12-31"},
         {"birth_date": "23/04/1988"}, True),
        ({"kind": "date_range", "max": "2000-12-31"}, {"birth_date": "2001-01-01"}, False),
        ({"kind": "date_range", "min": "2026-11-01", "field": "consent.at"},
         {"consent": CONSENT}, True),
        ({"kind": "date_range", "max": "2026-10-31", "field": "consent.at"},
         {"consent": CONSENT}, False),
        ({"kind": "date_range", "field": "extra.move_date", "min": "2026-01-01"},
         {"move_date": "soon"}, False),
    ],
    "age": [
        # NOW is 2026-11-20: born 2008-11-20 is 18 today, born a day later is not.
        ({"kind": "age", "min": 18}, {"birth_date": "2008-11-20"}, True),
        ({"kind": "age", "min": 18}, {"birth_date": "2008-11-21"}, False),
        ({"kind": "age", "min": 18}, {}, False),
        ({"kind": "age", "min": 18, "if_absent": True}, {}, True),
        ({"kind": "age", "max": 100}, {"birth_date": "1926-11-21"}, True),  # 99
        ({"kind": "age", "max": 100}, {"birth_date": "1925-11-20"}, False),  # 101 today
        ({"kind": "age", "min": 25, "max": 35}, {"birth_date": "1996-01-01"}, True),  # 30
    ],
    "email_valid": [
        ({"kind": "email_valid"}, {"email": "x@acme.fr"}, True),
        ({"kind": "email_valid"}, {"phone": "0612345678"}, False),
    ],
    "email_disposable": [
        ({"kind": "email_disposable"}, {"email": "x@mailinator.com"}, True),
        ({"kind": "email_disposable"}, {"email": "x@YOPMAIL.com"}, True),
        ({"kind": "email_disposable"}, {"email": "x@eu.mailinator.com"}, True),  # a subdomain
        ({"kind": "email_disposable"}, {"email": "x@gmail.com"}, False),
        ({"kind": "email_disposable"}, {"phone": "0612345678"}, False),
        # Lookalikes read as what they imitate (a Cyrillic a, a fullwidth o).
        ({"kind": "email_disposable"}, {"email": "x@m\u0430ilinator.com"}, True),
        ({"kind": "email_disposable"}, {"email": "x@y\uff4fpmail.com"}, True),
    ],
    "email_role_account": [
        ({"kind": "email_role_account"}, {"email": "info@acme.fr"}, True),
        ({"kind": "email_role_account"}, {"email": "No-Reply+news@acme.fr"}, True),
        ({"kind": "email_role_account"}, {"email": "marie.info@acme.fr"}, False),
        ({"kind": "email_role_account", "names": ["boss"]}, {"email": "boss@acme.fr"}, True),
        ({"kind": "email_role_account", "names": ["boss"]}, {"email": "info@acme.fr"}, False),
        ({"kind": "email_role_account"}, {"email": "\u0456nfo@acme.fr"}, True),  # Cyrillic i
    ],
    "email_free_mail": [
        ({"kind": "email_free_mail"}, {"email": "x@gmail.com"}, True),
        ({"kind": "email_free_mail"}, {"email": "x@orange.fr"}, True),
        ({"kind": "email_free_mail"}, {"email": "x@acme.fr"}, False),
        ({"kind": "email_free_mail", "add": ["acme.fr"]}, {"email": "x@acme.fr"}, True),
        ({"kind": "email_free_mail", "domains": ["acme.fr"]}, {"email": "x@gmail.com"}, False),
        ({"kind": "email_free_mail"}, {"email": "x@gm\u0430il.com"}, True),  # Cyrillic a
    ],
    "email_typo": [
        ({"kind": "email_typo"}, {"email": "x@gmial.com"}, True),
        ({"kind": "email_typo"}, {"email": "x@hotmial.fr"}, True),
        ({"kind": "email_typo"}, {"email": "x@gmail.con"}, True),
        ({"kind": "email_typo"}, {"email": "x@gmail.com"}, False),
        ({"kind": "email_typo"}, {"email": "x@hotmail.com"}, False),  # a provider, not a typo
        ({"kind": "email_typo"}, {"email": "x@acme.fr"}, False),
        ({"kind": "email_typo"}, {"email": "x@gmi\u0430l.com"}, True),  # Cyrillic a, and a typo
    ],
    "phone_valid": [
        ({"kind": "phone_valid"}, {"phone": "+32 470 12 34 56"}, True),
        ({"kind": "phone_valid"}, {}, False),
    ],
    "phone_type": [
        ({"kind": "phone_type", "types": ["mobile"]}, {"phone": "06 12 34 56 78"}, True),
        ({"kind": "phone_type", "types": ["mobile"]}, {"phone": "01 23 45 67 89"}, False),
        ({"kind": "phone_type", "types": ["landline"]}, {"phone": "01 23 45 67 89"}, True),
        ({"kind": "phone_type", "types": ["voip"]}, {"phone": "09 48 12 34 56"}, True),
        ({"kind": "phone_type", "types": ["toll_free", "premium_rate"]},
         {"phone": "08 91 23 45 67"}, True),
        # US numbers cannot be told apart: they count as mobile and as landline.
        ({"kind": "phone_type", "types": ["mobile"]}, {"phone": "+1 415 555 2671"}, True),
        ({"kind": "phone_type", "types": ["landline"]}, {"phone": "+1 415 555 2671"}, True),
        ({"kind": "phone_type", "types": ["mobile"]}, {}, False),
    ],
    "phone_region": [
        ({"kind": "phone_region", "regions": ["FR"]}, {"phone": "06 12 34 56 78"}, True),
        ({"kind": "phone_region", "regions": ["FR"]}, {"phone": "+32 470 12 34 56"}, False),
        ({"kind": "phone_region", "regions": ["BE", "US"]}, {"phone": "+1 415 555 2671"}, True),
    ],
    "country": [
        ({"kind": "country", "countries": ["FR"]}, {"country": "fr"}, True),
        ({"kind": "country", "countries": ["FR"]}, {"country": "BE"}, False),
        # No country: the campaign's (its phone region, FR here).
        ({"kind": "country", "countries": ["FR"]}, {}, True),
        ({"kind": "country", "countries": ["BE"]}, {}, False),
    ],
    "postal_code": [
        ({"kind": "postal_code"}, {"postal_code": "75011"}, True),
        ({"kind": "postal_code"}, {"country": "BE", "postal_code": "1000"}, True),
        ({"kind": "postal_code"}, {"country": "BE", "postal_code": "0100"}, False),
        ({"kind": "postal_code"}, {"country": "NL", "postal_code": "1012 ab"}, True),
        ({"kind": "postal_code"}, {"country": "GB", "postal_code": "sw1a 1aa"}, True),
        ({"kind": "postal_code"}, {"country": "JP", "postal_code": "100-0001"}, False),
        ({"kind": "postal_code", "other_countries": True},
         {"country": "JP", "postal_code": "100-0001"}, True),
        ({"kind": "postal_code", "patterns": {"JP": r"\d{3}-\d{4}"}},
         {"country": "JP", "postal_code": "100-0001"}, True),
        ({"kind": "postal_code"}, {}, False),
        ({"kind": "postal_code", "if_absent": True}, {}, True),
    ],
    "consent_given": [
        ({"kind": "consent_given"}, {"consent": CONSENT}, True),
        ({"kind": "consent_given"}, {"consent": "yes"}, True),
        ({"kind": "consent_given"}, {"consent": False}, False),
        ({"kind": "consent_given"}, {}, False),
    ],
    "consent_fresh": [
        ({"kind": "consent_fresh", "max_age": "24h"}, {"consent": CONSENT}, True),
        ({"kind": "consent_fresh", "max_age": "1h"}, {"consent": CONSENT}, False),
        ({"kind": "consent_fresh", "max_age": "24h"},
         {"consent": True, "consent_at": NOW - 25 * HOUR}, False),
        ({"kind": "consent_fresh", "max_age": "24h"}, {"consent": True}, False),  # no instant
    ],
    "consent_recorded": [
        ({"kind": "consent_recorded"}, {"consent": CONSENT}, True),
        ({"kind": "consent_recorded"}, {"consent": True, "consent_text": "J'accepte"}, False),
        ({"kind": "consent_recorded", "fields": ["text"]},
         {"consent": True, "consent_text": "J'accepte"}, True),
        ({"kind": "consent_recorded", "fields": ["version"]}, {"consent": True}, False),
    ],
    "consent_certificate": [
        ({"kind": "consent_certificate"}, {"consent": CONSENT}, True),
        ({"kind": "consent_certificate"}, {"consent": True}, False),
        ({"kind": "consent_certificate", "pattern": r"https://cert\.trustedform\.com/[0-9a-f]{40}"},
         {"consent": CONSENT}, True),
        ({"kind": "consent_certificate", "pattern": r"[0-9A-F-]{36}"}, {"consent": CONSENT}, False),
    ],
    "honeypot_empty": [
        ({"kind": "honeypot_empty", "field": "website"}, {}, True),
        ({"kind": "honeypot_empty", "field": "website"}, {"website": ""}, True),
        ({"kind": "honeypot_empty", "field": "website"}, {"website": "http://x"}, False),
        ({"kind": "honeypot_empty", "field": "extra.website"}, {"website": "x"}, False),
    ],
    "all": [
        ({"all": [{"kind": "present", "fields": ["company"]}, {"kind": "email_free_mail"}]},
         {"company": "A", "email": "a@gmail.com"}, True),
        ({"all": [{"kind": "present", "fields": ["company"]}, {"kind": "email_free_mail"}]},
         {"company": "A", "email": "a@acme.fr"}, False),
    ],
    "any": [
        ({"any": [{"kind": "present", "fields": ["phone"]}, {"kind": "email_free_mail"}]},
         {"email": "a@gmail.com"}, True),
        ({"any": [{"kind": "present", "fields": ["phone"]}, {"kind": "email_free_mail"}]},
         {"email": "a@acme.fr"}, False),
    ],
    "not": [
        ({"not": {"kind": "email_free_mail"}}, {"email": "a@acme.fr"}, True),
        ({"not": {"not": {"kind": "email_free_mail"}}}, {"email": "a@acme.fr"}, False),
    ],
}  # fmt: skip


@pytest.mark.parametrize(
    ("condition", "fields", "expected"),
    [case for cases in CASES.values() for case in cases],
    ids=[f"{kind}-{i}" for kind, cases in CASES.items() for i in range(len(cases))],
)
def test_condition(condition: dict[str, Any], fields: dict[str, object], expected: bool) -> None:
    assert holds(condition, make_lead(**fields)) is expected


def test_every_kind_has_good_and_bad_cases() -> None:
    assert set(KINDS) | {"all", "any", "not"} == set(CASES)
    for kind, cases in CASES.items():
        assert {expected for _, _, expected in cases} == {True, False}, kind


def test_consent_older_than_the_window_by_one_second_is_stale() -> None:
    lead = make_lead(consent={"given": True, "at": NOW - 24 * HOUR})
    assert holds({"kind": "consent_fresh", "max_age": "24h"}, lead)
    assert not holds({"kind": "consent_fresh", "max_age": "24h"}, lead, now_s=NOW + 1)


def test_age_of_a_leap_day_birth_turns_on_the_first_of_march() -> None:
    lead = make_lead(birth_date="2008-02-29")
    feb_28 = datetime(2026, 2, 28, 12, tzinfo=UTC).timestamp()
    mar_1 = datetime(2026, 3, 1, 12, tzinfo=UTC).timestamp()
    assert not holds({"kind": "age", "min": 18}, lead, now_s=feb_28)
    assert holds({"kind": "age", "min": 18}, lead, now_s=mar_1)


def test_the_fast_e164_reader_agrees_with_libphonenumber_on_every_example_number() -> None:
    checked = 0
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        for kind in range(11):
            example = phonenumbers.example_number_for_type(region, kind)
            if example is None:
                continue
            e164 = phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.E164)
            assert from_e164(e164) == phonenumbers.parse(e164, None), e164
            checked += 1
    assert checked > 1000
    assert from_e164("+") is None
    assert from_e164("not a number") is None
