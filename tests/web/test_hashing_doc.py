"""docs/api.md's hashing reference code hashes as leadgate remembers people: run from the doc
itself, it agrees with the gateway's own normalization on every ASCII address and valid
number tried, and a hash it makes finds a person the gateway was posted in full."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.leads.email import DEFAULT_PROVIDER_RULES, normalize_email
from gateway.leads.phone import normalize_phone

from .conftest import GatewayFactory, person

DOC = Path(__file__).resolve().parents[2] / "docs" / "api.md"


def doc_code() -> dict[str, Any]:
    """The doc's Python block that defines ``email_sha256``, executed."""
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    (code,) = [b for b in blocks if "def email_sha256" in b]
    names: dict[str, Any] = {}
    exec(compile(code, str(DOC), "exec"), names)  # noqa: S102 (this repository's own doc)
    return names


DOC_CODE = doc_code()
email_sha256: Callable[[str], str] = DOC_CODE["email_sha256"]
phone_sha256: Callable[[str, str], str] = DOC_CODE["phone_sha256"]


def gateway_email_sha256(address: str) -> str:
    return hashlib.sha256(normalize_email(address).identity.encode()).hexdigest()


def test_the_docs_provider_table_is_the_gateways() -> None:
    assert set(DOC_CODE["PROVIDERS"]) == set(DEFAULT_PROVIDER_RULES) - {
        d for d, rule in DEFAULT_PROVIDER_RULES.items() if not rule.strip_plus_tag
    }  # Yahoo's rule only refuses non-ASCII mailboxes: nothing to fold
    for domain, (written, dots, tags, chars) in DOC_CODE["PROVIDERS"].items():
        rule = DEFAULT_PROVIDER_RULES[domain]
        assert (written, dots, tags, chars) == (
            rule.canonical_domain or domain,
            rule.strip_dots,
            rule.strip_plus_tag,
            rule.strip_chars,
        )


ADDRESSES = [
    "Jean.Dupont+promo@GoogleMail.com",
    "  jeandupont@gmail.com ",
    "j.e.a.n@gmail.com",
    "+news@gmail.com",
    "first.last+x@hotmail.fr",
    "first.last@outlook.com",
    "a-b_c.d+e@protonmail.ch",
    "marie@me.com",
    "MARIE+tag@Mac.com",
    "x+y@fastmail.fm",
    "jo.smith+1@yahoo.fr",
    "contact+leads@Example.ORG",
    "o'brien@example.ie",
]


def test_the_reference_code_agrees_on_known_spellings() -> None:
    for address in ADDRESSES:
        assert email_sha256(address) == gateway_email_sha256(address), address


locals_ = st.from_regex(r"[A-Za-z0-9](?:[A-Za-z0-9_+-]|\.(?!\.)){0,20}[A-Za-z0-9]", fullmatch=True)
domains = st.sampled_from(
    [*DEFAULT_PROVIDER_RULES, "example.com", "Example.Org", "sub.mail.example.fr"]
)


@settings(max_examples=300, deadline=None)
@given(local=locals_, domain=domains)
def test_the_reference_code_agrees_on_generated_ascii_addresses(local: str, domain: str) -> None:
    address = f"{local}@{domain}"
    assert email_sha256(address) == gateway_email_sha256(address)


def test_the_reference_code_agrees_on_numbers() -> None:
    for number, region in [
        ("06 12 34 56 78", "FR"),
        ("+33 6 12 34 56 78", "FR"),
        ("0033612345678", "FR"),
        ("0470 12 34 56", "BE"),
        ("(415) 555-2671", "US"),
    ]:
        e164 = normalize_phone(number, region)
        assert phone_sha256(number, region) == hashlib.sha256(e164.encode()).hexdigest()


async def test_a_hash_made_by_the_reference_code_finds_a_person_posted_in_full(
    make_gateway: GatewayFactory,
) -> None:
    gw = await make_gateway()
    lead = person(campaign="acme-always-on", email="Jean.Dupont+promo@GoogleMail.com")
    assert (await gw.decide("p-mail", lead))["decision"] == "accepted"
    # The doc's example hash is this person's.
    assert "a58df53d782ec0e3ed0e64226ae34b2519457e405954edc29c8cfa515de1eb02" in (
        DOC.read_text(encoding="utf-8")
    )
    for body in (
        {"email_sha256": email_sha256("jeandupont@gmail.com")},
        {"phone_sha256": phone_sha256(str(lead["phone"]), "FR")},
    ):
        reply = await gw.post(
            "p-coreg", {"campaign": "acme-always-on", **body}, path="/v1/leads/check"
        )
        assert reply.json()["status"] == "duplicate", reply.body
