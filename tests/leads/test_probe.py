"""``parse_probe``: what a pre-ping check and a ping may carry, and the hashed lead they give."""

from __future__ import annotations

import hashlib

import pytest

from gateway.errors import InvalidLead
from gateway.leads.parse import parse_lead, parse_probe

from .test_model import CAMPAIGNS, NOW_S

EMAIL_SHA = hashlib.sha256(b"jeandupont@gmail.com").hexdigest()
PHONE_SHA = hashlib.sha256(b"+32470123456").hexdigest()


def problems(data: dict[str, object], *, ping: bool) -> dict[str, str]:
    with pytest.raises(InvalidLead) as raised:
        parse_probe(data, CAMPAIGNS, ping=ping, now_s=NOW_S)
    return {p.field: p.message for p in raised.value.problems}


def test_a_check_gives_a_hashed_lead_of_the_campaigns_identities() -> None:
    lead = parse_probe(
        {
            "campaign": "acme-always-on",
            "email_sha256": EMAIL_SHA.upper(),
            "phone_sha256": PHONE_SHA,
        },
        CAMPAIGNS,
        ping=False,
        now_s=NOW_S,
    )
    assert lead.hashed
    # The campaign dedups on email and phone; digests are kept lower-case.
    assert dict(lead.identities) == {"email": EMAIL_SHA, "phone": PHONE_SHA}
    assert (lead.email, lead.phone, lead.first_name, lead.ip) == (None, None, None, None)


def test_a_ping_carries_the_non_personal_fields() -> None:
    lead = parse_probe(
        {
            "campaign": "acme-be-callback",
            "phone_sha256": PHONE_SHA,
            "postal_code": "1000",
            "country": "be",
            "ref": "r-1",
            "consent": {"given": True, "certificate_id": "cert-1"},
            "sub_id": "s9",
        },
        CAMPAIGNS,
        ping=True,
        now_s=NOW_S,
    )
    assert dict(lead.identities) == {"phone": PHONE_SHA}
    assert (lead.postal_code, lead.country, lead.ref) == ("1000", "BE", "r-1")
    assert lead.consent is not None
    assert lead.consent.certificate_id == "cert-1"
    assert dict(lead.extra) == {"sub_id": "s9"}


@pytest.mark.parametrize("ping", [False, True])
def test_personal_fields_are_refused_by_name_never_quoted(ping: bool) -> None:
    found = problems(
        {
            "campaign": "acme-always-on",
            "email_sha256": EMAIL_SHA,
            "email": "jean.dupont@gmail.com",
            "last_name": "Dupont",
            "ip": "203.0.113.9",
        },
        ping=ping,
    )
    assert set(found) == {"email", "last_name", "ip"}
    for message in found.values():
        assert "personal data" in message
        assert "dupont" not in message.lower()
        assert "203.0" not in message


def test_a_check_names_fields_it_does_not_take() -> None:
    found = problems(
        {"campaign": "acme-always-on", "email_sha256": EMAIL_SHA, "postal_code": "75001"},
        ping=False,
    )
    assert found == {"postal_code": "not a field of a check"}


@pytest.mark.parametrize(
    "digest", ["abc", "g" * 64, EMAIL_SHA + "0", "jean@gmail.com", 12, {"sha": EMAIL_SHA}]
)
def test_a_digest_is_64_hex_characters(digest: object) -> None:
    found = problems({"campaign": "acme-always-on", "email_sha256": digest}, ping=False)
    assert list(found) == ["email_sha256"]


def test_the_campaigns_identity_must_come_hashed() -> None:
    found = problems({"campaign": "acme-be-callback", "email_sha256": EMAIL_SHA}, ping=True)
    assert list(found) == ["phone_sha256"]
    assert "phone" in found["phone_sha256"]
    assert problems({"email_sha256": EMAIL_SHA}, ping=False) == {"campaign": "required"}
    assert problems({"campaign": "nope", "email_sha256": EMAIL_SHA}, ping=False) == {
        "campaign": "unknown campaign"
    }


def test_ping_id_belongs_to_the_post() -> None:
    found = problems(
        {"campaign": "acme-always-on", "email_sha256": EMAIL_SHA, "ping_id": "x"}, ping=True
    )
    assert list(found) == ["ping_id"]
    # A post naming its ping: ping_id is no extra field forwarded to the CRM.
    lead = parse_lead(
        {"campaign": "acme-always-on", "email": "a@example.com", "ping_id": "p1"},
        CAMPAIGNS,
        now_s=NOW_S,
    )
    assert "ping_id" not in lead.extra
