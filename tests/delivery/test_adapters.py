"""What each adapter puts in the body: names, values, escaping; the same bytes every time."""

from __future__ import annotations

from urllib.parse import parse_qs

import orjson
import pytest

from delivery.records import record
from gateway.config.delivery import AdapterKind, Endpoint
from gateway.delivery.adapters import Adapter
from gateway.types import LeadId

LEAD = LeadId("01900000-0000-7000-8000-000000000001")


def render(endpoint: Endpoint, **lead: object) -> tuple[str, bytes]:
    rendered = Adapter(endpoint).render(record(LEAD, **lead))
    return rendered.content_type, rendered.body


def test_webhook_sends_every_field_in_the_standard_webhooks_envelope() -> None:
    content_type, body = render(Endpoint(AdapterKind.WEBHOOK, "https://crm.example/h"))
    payload = orjson.loads(body)
    assert content_type == "application/json"
    assert payload["type"] == "lead.accepted"
    assert payload["timestamp"] == "2025-11-22T08:26:40.123+00:00"
    data = payload["data"]
    assert data["lead_id"] == LEAD
    assert data["accepted_at"] == payload["timestamp"]
    assert (data["campaign"], data["partner"], data["channel"], data["ref"]) == (
        "acme-always-on",
        "p-mailfox",
        "email",
        "sub-42",
    )
    assert data["email"] == "jeanne.martin@example.org"
    assert data["consent"]["given"] is True
    assert data["extra"] == {"gclid": "abc123", "sub_id": "7"}


def test_webhook_mapping_renames_adds_and_drops() -> None:
    endpoint = Endpoint(
        AdapterKind.WEBHOOK,
        "https://crm.example/h",
        fields={"postal_code": "zip", "ip": None, "extra.gclid": "google_click_id"},
        static_fields={"source": "leadgate"},
    )
    data = orjson.loads(render(endpoint)[1])["data"]
    assert data["zip"] == "75011"
    assert "postal_code" not in data
    assert "ip" not in data
    assert data["google_click_id"] == "abc123"
    assert data["source"] == "leadgate"


def test_fields_a_lead_does_not_have_are_left_out() -> None:
    data = orjson.loads(
        render(Endpoint(AdapterKind.WEBHOOK, "https://x.example/"), phone=None, extra={})[1]
    )["data"]
    assert "phone" not in data
    assert "extra" not in data


def test_the_body_is_the_same_on_every_render() -> None:
    adapter = Adapter(Endpoint(AdapterKind.HUBSPOT, "https://x.example/"))
    raw = record(LEAD)
    assert adapter.render(raw).body == adapter.render(raw).body


def test_salesforce_is_a_web_to_lead_form() -> None:
    endpoint = Endpoint(
        AdapterKind.SALESFORCE,
        "https://webto.salesforce.com/servlet/servlet.WebToLead",
        static_fields={"oid": "00D000000000001", "lead_source": "Affiliate"},
        fields={"lead_id": "00N000000000001", "consent.given": "00N000000000002"},
    )
    content_type, body = render(endpoint, first_name="Zoé & Co")
    assert content_type == "application/x-www-form-urlencoded"
    form = parse_qs(body.decode("ascii"), strict_parsing=True)
    assert form == {
        "oid": ["00D000000000001"],
        "lead_source": ["Affiliate"],
        "first_name": ["Zoé & Co"],
        "last_name": ["Martin"],
        "email": ["jeanne.martin@example.org"],
        "phone": ["+33612345678"],
        "city": ["Paris"],
        "zip": ["75011"],
        "country": ["FR"],
        "00N000000000001": [LEAD],
        "00N000000000002": ["1"],
    }


def test_hubspot_is_a_forms_submission() -> None:
    endpoint = Endpoint(AdapterKind.HUBSPOT, "https://api.hsforms.com/submissions/v3/x/1/abc")
    content_type, body = render(endpoint)
    payload = orjson.loads(body)
    assert content_type == "application/json"
    fields = {f["name"]: f["value"] for f in payload["fields"]}
    assert fields == {
        "email": "jeanne.martin@example.org",
        "firstname": "Jeanne",
        "lastname": "Martin",
        "phone": "+33612345678",
        "city": "Paris",
        "zip": "75011",
        "country": "FR",
    }
    assert payload["context"] == {"pageName": "acme-always-on", "ipAddress": "203.0.113.9"}


def test_hubspot_leaves_the_ip_out_when_the_mapping_drops_it() -> None:
    endpoint = Endpoint(AdapterKind.HUBSPOT, "https://x.example/", fields={"ip": None})
    assert "ipAddress" not in orjson.loads(render(endpoint)[1])["context"]


@pytest.mark.parametrize(
    ("content_type", "template", "expected"),
    [
        (
            "application/json",
            '{"mail": {{email}}, "name": {{ first_name }}, "tel": {{phone}}, "id": {{lead_id}}}',
            {"mail": "a@b.example", "name": 'Jo "JJ" \\ Doe', "tel": None, "id": LEAD},
        ),
        (
            "application/x-www-form-urlencoded",
            "m={{email}}&n={{first_name}}&t={{phone}}",
            {"m": ["a@b.example"], "n": ['Jo "JJ" \\ Doe']},
        ),
        (
            "application/xml",
            "<lead><n>{{first_name}}</n><c>{{extra.gclid}}</c></lead>",
            "<lead><n>Jo &quot;JJ&quot; \\ Doe</n><c>abc123</c></lead>",
        ),
        ("text/plain", "{{first_name}} <{{email}}>", 'Jo "JJ" \\ Doe <a@b.example>'),
    ],
)
def test_template_values_are_escaped_for_the_content_type(
    content_type: str, template: str, expected: object
) -> None:
    endpoint = Endpoint(
        AdapterKind.TEMPLATE,
        "https://x.example/",
        body_template=template,
        content_type=content_type,
    )
    got_type, body = render(endpoint, email="a@b.example", first_name='Jo "JJ" \\ Doe', phone=None)
    assert got_type == content_type
    text = body.decode("utf-8")
    if content_type == "application/json":
        assert orjson.loads(body) == expected
    elif content_type.endswith("urlencoded"):
        assert parse_qs(text) == expected
    else:
        assert text == expected


def test_a_record_that_is_not_an_object_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="JSON object"):
        Adapter(Endpoint(AdapterKind.WEBHOOK, "https://x.example/")).render(b"[1, 2]")
