from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from zoneinfo import ZoneInfo

import orjson
import pytest

from gateway.config.model import Campaign, CampaignKind
from gateway.errors import InvalidLead
from gateway.leads.ids import new_lead_id
from gateway.leads.lead import Consent, Lead
from gateway.leads.parse import MAX_EXTRA_FIELDS, parse_lead
from gateway.types import AdvertiserId, CampaignId, ChannelId

NOW_S = 1_780_000_000.0  # 2026-05-28T20:26:40Z
DEFAULT = Campaign(
    id=CampaignId("acme-always-on"),
    advertiser=AdvertiserId("acme"),
    name="ACME always-on",
    kind=CampaignKind.ALWAYS_ON,
    timezone=ZoneInfo("Europe/Paris"),
)
PHONE_ONLY = Campaign(
    id=CampaignId("acme-be-callback"),
    advertiser=AdvertiserId("acme"),
    name="ACME callback",
    kind=CampaignKind.ALWAYS_ON,
    timezone=ZoneInfo("Europe/Brussels"),
    identity_fields=("phone",),
    required_fields=("phone", "first_name", "consent"),
    phone_region="BE",
)
CAMPAIGNS = {c.id: c for c in (DEFAULT, PHONE_ONLY)}


def parse(data: Mapping[str, object], *, field_prefix: str = "") -> Lead:
    return parse_lead(data, CAMPAIGNS, field_prefix=field_prefix, now_s=NOW_S)


def problems(data: Mapping[str, object], *, field_prefix: str = "") -> dict[str, str]:
    with pytest.raises(InvalidLead) as info:
        parse(data, field_prefix=field_prefix)
    found = {p.field: p.message for p in info.value.problems}
    assert len(found) == len(info.value.problems), "one problem per field"
    return found


def lead(**fields: object) -> dict[str, object]:
    return {"campaign": "acme-always-on", **fields}


def test_typical_json_lead() -> None:
    parsed = parse(
        {
            "campaign": "acme-always-on",
            "channel": "coreg",
            "ref": 981234,
            "email": " Jean.Dupont+promo@GoogleMail.com ",
            "phone": "06 12 34 56 78",
            "first_name": "  Jean ",
            "last_name": "Dupont",
            "postal_code": 6000,
            "city": "Nice",
            "country": "fr",
            "birth_date": "17/05/1990",
            "company": "Dupont  SARL",
            "ip": "::ffff:192.0.2.10",
            "consent": {
                "given": True,
                "at": "2026-05-28T10:00:00+02:00",
                "text": "J'accepte d'être recontacté.\nPar ACME.",
                "version": 3,
                "certificate_id": "https://cert.trustedform.com/0123456789abcdef",
            },
            "sub_id": "s-42",
            "clickid": 7731,
        }
    )
    assert parsed == Lead(
        campaign=CampaignId("acme-always-on"),
        channel=ChannelId("coreg"),
        ref="981234",
        test=False,
        email="jean.dupont+promo@googlemail.com",
        phone="+33612345678",
        first_name="Jean",
        last_name="Dupont",
        postal_code="06000",
        city="Nice",
        country="FR",
        birth_date="1990-05-17",
        company="Dupont SARL",
        ip="192.0.2.10",
        consent=Consent(
            given=True,
            at=1_779_955_200.0,
            text="J'accepte d'être recontacté.\nPar ACME.",
            version="3",
            certificate_id="https://cert.trustedform.com/0123456789abcdef",
        ),
        extra={"sub_id": "s-42", "clickid": "7731"},
        identities={"email": "jeandupont@gmail.com", "phone": "+33612345678"},
    )
    payload = parsed.to_payload()
    assert "identities" not in payload
    assert payload["email"] == "jean.dupont+promo@googlemail.com"
    assert payload["consent"] == {
        "given": True,
        "at": 1_779_955_200.0,
        "text": "J'accepte d'être recontacté.\nPar ACME.",
        "version": "3",
        "certificate_id": "https://cert.trustedform.com/0123456789abcdef",
    }
    assert payload["extra"] == {"sub_id": "s-42", "clickid": "7731"}
    assert "test" not in payload
    assert orjson.loads(orjson.dumps(payload)) == payload


def test_form_post_sends_everything_as_strings_and_consent_flat() -> None:
    parsed = parse(
        {
            "campaign": "acme-be-callback",
            "phone": "0470 12 34 56",
            "first_name": "Anne",
            "postal_code": "1000",
            "test": "ON",
            "consent": "yes",
            "consent_at": "1779955200",
            "consent_text": "",
        }
    )
    assert parsed.test is True
    assert parsed.phone == "+32470123456"
    assert parsed.postal_code == "1000"
    assert parsed.consent == Consent(
        given=True, at=1_779_955_200.0, text=None, version=None, certificate_id=None
    )
    assert parsed.identities == {"phone": "+32470123456"}
    assert parsed.to_payload()["test"] is True


def test_spreadsheet_numbers_for_phone_and_postal_code() -> None:
    parsed = parse(lead(email="a@orange.fr", phone=612345678, postal_code=6000.0))
    assert parsed.phone == "+33612345678"
    assert parsed.postal_code == "06000"
    assert parse(lead(email="a@orange.fr", phone=33612345678.0)).phone == "+33612345678"


def test_a_four_character_french_postal_code_string_is_refused() -> None:
    assert problems(lead(email="a@orange.fr", postal_code="6000")) == {
        "postal_code": "not a valid postal code for FR: expected 5 digits"
    }


def test_postal_code_follows_the_leads_country_then_the_campaigns() -> None:
    assert parse(lead(email="a@orange.fr", postal_code="1000", country="BE")).postal_code == "1000"
    assert "postal_code" in problems(lead(email="a@orange.fr", postal_code="1000"))
    # An invalid country: its own problem, and no guess about the postal code.
    assert problems(lead(email="a@orange.fr", postal_code="1000", country="XX")).keys() == {
        "country"
    }


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (True, True),
        (False, False),
        (1, True),
        (0, False),
        ("1", True),
        ("0", False),
        ("true", True),
        ("FALSE", False),
        (" Yes ", True),
        ("no", False),
        ("on", True),
        ("off", False),
        ("", False),
        (None, False),
    ],
)
def test_boolean_spellings(value: object, expected: bool) -> None:
    assert parse(lead(email="a@orange.fr", test=value)).test is expected


@pytest.mark.parametrize("value", ["maybe", "2", 2, 1.0, [], {"a": 1}, "y"])
def test_bad_booleans(value: object) -> None:
    assert problems(lead(email="a@orange.fr", test=value)) == {
        "test": "expected a boolean (true/false, 1/0, yes/no, on/off)"
    }


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("2026-05-28T08:00:00Z", 1_779_955_200.0),
        ("2026-05-28T10:00:00+02:00", 1_779_955_200.0),
        ("2026-05-28T08:00:00.500+00:00", 1_779_955_200.5),
        (1_779_955_200, 1_779_955_200.0),
        (1_779_955_200.25, 1_779_955_200.25),
        (1_779_955_200_000, 1_779_955_200.0),
        ("1779955200000", 1_779_955_200.0),
        (" 1779955200 ", 1_779_955_200.0),
    ],
)
def test_consent_at_spellings(value: object, seconds: float) -> None:
    parsed = parse(lead(email="a@orange.fr", consent=True, consent_at=value))
    assert parsed.consent is not None
    assert parsed.consent.at == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("2026-05-28T08:00:00", "needs a UTC offset (like Z or +01:00)"),
        ("2026-05-28", "needs a UTC offset (like Z or +01:00)"),
        ("yesterday", "not a date-time: expected ISO 8601"),
        (NOW_S + 3 * 86_400, "is in the future"),
        ((NOW_S + 3 * 86_400) * 1000, "is in the future"),
        (NOW_S * 1_000_000, "is in the future"),  # microseconds
        (20_000, "is before 2000"),  # days
        (True, "expected an ISO 8601 date-time or epoch seconds"),
        ({"at": 1}, "expected an ISO 8601 date-time or epoch seconds"),
    ],
)
def test_bad_consent_at(value: object, reason: str) -> None:
    found = problems(lead(email="a@orange.fr", consent=True, consent_at=value))
    assert found.keys() == {"consent_at"}
    assert found["consent_at"].startswith(reason)


def test_consent_details_need_consent_given() -> None:
    assert problems(lead(email="a@orange.fr", consent_text="J'accepte")) == {
        "consent": "required when consent details are sent"
    }
    assert problems(lead(email="a@orange.fr", consent={"version": "v2"})) == {
        "consent/given": "required when consent details are sent"
    }


def test_consent_object_and_flat_details_do_not_mix() -> None:
    assert problems(
        lead(email="a@orange.fr", consent={"given": True, "url": "x"}, consent_at=NOW_S)
    ) == {
        "consent_at": "not allowed with a consent object: send details inside it",
        "consent/url": "unknown field",
    }


def test_refused_consent_is_kept_as_refused() -> None:
    parsed = parse(lead(email="a@orange.fr", consent="0"))
    assert parsed.consent is not None
    assert parsed.consent.given is False


@pytest.mark.parametrize(
    ("data", "found"),
    [
        ({"email": "a@orange.fr"}, {"campaign": "required"}),
        ({"campaign": " ", "email": "a@orange.fr"}, {"campaign": "required"}),
        ({"campaign": "other-advertisers-peak"}, {"campaign": "unknown campaign"}),
        ({"campaign": ["acme-always-on"]}, {"campaign": "expected a string"}),
    ],
)
def test_campaign_must_be_known(data: Mapping[str, object], found: dict[str, str]) -> None:
    assert problems(data) == found
    assert "acme" not in str(problems(data))


def test_required_fields_of_the_campaign() -> None:
    assert problems({"campaign": "acme-be-callback", "phone": "0470123456"}) == {
        "first_name": "required",
        "consent": "required",
    }
    assert problems({"campaign": "acme-be-callback", "first_name": "Anne", "consent": True}) == {
        "phone": "required"
    }


def test_at_least_one_identity() -> None:
    assert problems(lead(first_name="Jean")) == {
        "email": "required",
    }
    loose = Campaign(
        id=CampaignId("loose"),
        advertiser=AdvertiserId("acme"),
        name="no required field",
        kind=CampaignKind.PEAK,
        timezone=ZoneInfo("Europe/Paris"),
        required_fields=(),
    )
    with pytest.raises(InvalidLead) as info:
        parse_lead({"campaign": "loose", "first_name": "Jean"}, {loose.id: loose}, now_s=NOW_S)
    assert [(p.field, p.message) for p in info.value.problems] == [
        ("email", "at least one of email, phone is required")
    ]
    only_phone = parse_lead({"campaign": "loose", "phone": "0612345678"}, {loose.id: loose})
    assert only_phone.identities == {"phone": "+33612345678"}
    # A bad identity is reported as such, not as a missing one.
    assert problems(lead(email="jean@", phone="")) == {
        "email": "not a valid email address: there must be something after the @-sign"
    }


def test_identities_are_the_campaigns_identity_fields_only() -> None:
    parsed = parse(
        {
            "campaign": "acme-be-callback",
            "email": "a@orange.fr",
            "phone": "+32 470 12 34 56",
            "first_name": "Anne",
            "consent": 1,
        }
    )
    assert parsed.email == "a@orange.fr"
    assert parsed.identities == {"phone": "+32470123456"}


def test_empty_strings_and_nulls_are_absent() -> None:
    parsed = parse(lead(email="a@orange.fr", phone="", first_name="  ", city=None, ip=""))
    assert (parsed.phone, parsed.first_name, parsed.city, parsed.ip) == (None, None, None, None)
    assert parsed.to_payload() == {"campaign": "acme-always-on", "email": "a@orange.fr"}


def test_extra_fields_are_forwarded_as_strings() -> None:
    parsed = parse(
        lead(
            email="a@orange.fr",
            sub_id=42,
            **{"click.id": " abc-1 ", "opt-in": True, "ratio": 0.5, "empty": "", "none": None},
        )
    )
    assert parsed.extra == {"sub_id": "42", "click.id": "abc-1", "opt-in": "true", "ratio": "0.5"}


@pytest.mark.parametrize(
    ("key", "value", "reason"),
    [
        ("sub id", "x", "not a field leadgate knows"),
        ("sub/id", "x", "not a field leadgate knows"),
        ("é", "x", "not a field leadgate knows"),
        ("s" * 65, "x", "not a field leadgate knows"),
        ("sub_id", {"a": 1}, "expected a string"),
        ("sub_id", ["a"], "expected a string"),
        ("sub_id", "x" * 513, "too long (at most 512 characters)"),
        ("sub_id", "a\nb", "contains control characters"),
    ],
)
def test_bad_extra_fields(key: str, value: object, reason: str) -> None:
    found = problems(lead(email="a@orange.fr", **{key: value}))
    assert len(found) == 1
    ((field, message),) = found.items()
    assert field == (key if len(key) <= 64 else key[:64] + "…")
    assert message.startswith(reason)


def test_at_most_fifty_extra_fields() -> None:
    extras = {f"x{i}": "v" for i in range(MAX_EXTRA_FIELDS)}
    assert len(parse(lead(email="a@orange.fr", **extras)).extra) == MAX_EXTRA_FIELDS
    assert problems(lead(email="a@orange.fr", **extras, one_more="v")) == {
        "one_more": f"too many extra fields (at most {MAX_EXTRA_FIELDS})"
    }


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("email", True, "expected a string"),
        ("email", 12, "expected a string"),
        ("first_name", {"first": "Jean"}, "expected a string"),
        ("last_name", ["Dupont"], "expected a string"),
        ("city", 3.5, "expected a string"),
        ("phone", 6.5, "expected a string"),
        ("phone", True, "expected a string"),
        ("postal_code", False, "expected a string"),
        ("ref", "r" * 129, "too long (at most 128 characters)"),
        ("ref", "a\tb", "contains control characters"),
        ("channel", "c" * 65, "too long (at most 64 characters)"),
        ("city", "C" * 201, "too long (at most 200 characters)"),
        ("company", "C" * 201, "too long (at most 200 characters)"),
        ("company", "ACME\x07", "contains control characters"),
        ("first_name", "J" * 101, "too long (at most 100 characters)"),
        ("first_name", "J" * 5000, "too long (at most 100 characters)"),
        ("email", "a" * 250 + "@orange.fr", "not a valid email address: longer than 254"),
        ("ip", "10.0.0.256", "not a valid IP address"),
        ("ip", 167772161, "expected a string"),
        ("birth_date", "2027-01-01", "is in the future"),
    ],
)
def test_bad_field_values(field: str, value: object, reason: str) -> None:
    found = problems({**lead(email="a@orange.fr"), field: value})
    assert found.keys() == {field}
    assert found[field].startswith(reason)


@pytest.mark.parametrize(
    ("raw", "ip"),
    [
        ("192.0.2.1", "192.0.2.1"),
        ("::ffff:192.0.2.1", "192.0.2.1"),
        ("2001:DB8:0:0:0:0:0:1", "2001:db8::1"),
        (" 2001:db8::1 ", "2001:db8::1"),
    ],
)
def test_ip_addresses_are_normalized(raw: str, ip: str) -> None:
    assert parse(lead(email="a@orange.fr", ip=raw)).ip == ip


def test_field_prefix_names_the_lead_in_a_batch() -> None:
    found = problems(
        lead(email="nope", consent={"given": "perhaps"}, **{"bad key": 1}),
        field_prefix="leads/3/",
    )
    assert found.keys() == {"leads/3/email", "leads/3/consent/given", "leads/3/bad key"}


_EVERY_FIELD_BAD: dict[str, object] = {
    "channel": "\x00",
    "ref": "r" * 129,
    "test": "perhaps",
    "email": "jean.dupont@gmail",
    "phone": "not a number",
    "first_name": {"x": 1},
    "last_name": "D" * 101,
    "postal_code": "P" * 40,
    "city": "Nice\x00",
    "country": "France",
    "birth_date": "31/02/1990",
    "company": ["ACME"],
    "ip": "localhost",
    "consent": "maybe",
    "consent_at": "yesterday",
    "consent_text": "\x1b",
    "consent_version": {"v": 1},
    "consent_certificate_id": "c" * 201,
    "bad key": "x",
}


def test_every_bad_field_is_reported_at_once() -> None:
    found = problems({"campaign": "acme-always-on", **_EVERY_FIELD_BAD})
    assert found.keys() == _EVERY_FIELD_BAD.keys()


def test_every_bad_field_is_reported_even_with_an_unknown_campaign() -> None:
    found = problems({"campaign": "who-knows", **_EVERY_FIELD_BAD})
    assert found.keys() == {"campaign", *_EVERY_FIELD_BAD}


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("email", "jean.dupont@gmail"),
        ("email", "jean.dupont@@gmail.com"),
        ("email", "jean dupont@gmail.com"),
        ("email", "jean.dupont@exa_mple.com"),
        ("email", "Jean Dupont <jean.dupont@gmail.com>"),
        ("email", "jean.dupont@" + "x" * 70 + ".com"),
        ("email", "jean.dupont@xn--zz-zzz.com"),
        ("phone", "06 12 34"),
        ("phone", "0612345678901234"),
        ("phone", "+999 612345678"),
        ("phone", "07 12 34 56 78"),
        ("first_name", "Jean\x00Pierre"),
        ("last_name", "Dupont" * 20),
        ("ip", "192.168.0.999"),
        ("ip", "fe80::zz"),
    ],
)
def test_no_problem_message_quotes_a_personal_value(field: str, value: str) -> None:
    found = problems(lead(**{field: value}))
    assert field in found
    text = " ".join(found.values())
    for piece in {value, value.strip(), *value.replace("@", " ").split()}:
        if len(piece) >= 4:
            assert piece not in text


def test_lead_ids_are_uuid7_strings() -> None:
    before_ms = time.time_ns() // 1_000_000
    ids = [new_lead_id() for _ in range(100)]
    after_ms = time.time_ns() // 1_000_000
    assert len(set(ids)) == 100
    parsed = uuid.UUID(ids[0])
    assert parsed.version == 7
    assert str(parsed) == ids[0]
    # It carries the time it was made at, in milliseconds.
    assert before_ms <= parsed.int >> 80 <= after_ms
