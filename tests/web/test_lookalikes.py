# ruff: noqa: RUF001 -- lookalike characters are this file's subject
"""Lookalike spellings of a person's email over HTTP, on both stores: a respelling is a
duplicate, the CRM gets what was typed, an ASCII-only provider answers 422 on ``email``
(docs/decision.md, "Lookalike characters")."""

from __future__ import annotations

import orjson
import pytest

from gateway.types import AdvertiserId

from .conftest import GatewayFactory, assert_problem, error_fields, person

CYRILLIC_A, CYRILLIC_O, CYRILLIC_IE, GREEK_OMICRON = "\u0430", "\u043e", "\u0435", "\u03bf"
FULLWIDTH = str.maketrans({c: chr(ord(c) + 0xFEE0) for c in "abcdefghijklmnopqrstuvwxyz"})
MATH_BOLD = str.maketrans({c: chr(0x1D41A + ord(c) - 97) for c in "abcdefghijklmnopqrstuvwxyz"})

RESPELLINGS = {
    "Cyrillic о": lambda local, domain: f"{local.replace('o', CYRILLIC_O)}@{domain}",
    "Cyrillic е": lambda local, domain: f"{local.replace('e', CYRILLIC_IE)}@{domain}",
    "Greek ο": lambda local, domain: f"{local.replace('o', GREEK_OMICRON)}@{domain}",
    "fullwidth": lambda local, domain: f"{local.translate(FULLWIDTH)}@{domain}",
    "mathematical": lambda local, domain: f"{local.translate(MATH_BOLD)}@{domain}",
    "combining accent": lambda local, domain: f"{local}\u0301@{domain}",
    "Cyrillic а in the domain": lambda local, domain: f"{local}@{domain.replace('a', CYRILLIC_A)}",
}


@pytest.mark.parametrize("respell", RESPELLINGS.values(), ids=RESPELLINGS.keys())
async def test_a_respelt_email_is_a_duplicate(
    make_gateway: GatewayFactory, respell: object
) -> None:
    gw = await make_gateway()
    first = person()
    local, _, domain = str(first["email"]).partition("@")
    assert (await gw.decide("p-mail", {"campaign": "acme-always-on", **first}))[
        "decision"
    ] == "accepted"
    # Another phone: only the email can make it the same person.
    again = person(email=respell(local, domain))  # type: ignore[operator]
    answer = await gw.decide("p-coreg", {"campaign": "acme-always-on", **again})
    assert (answer["decision"], answer["reasons"]) == ("duplicate", ["duplicate.advertiser"])


async def test_the_crm_gets_the_address_as_typed(make_gateway: GatewayFactory) -> None:
    gw = await make_gateway()
    typed = f"m{CYRILLIC_A}rie.dup{CYRILLIC_O}nt@ex{CYRILLIC_A}mple.com"
    answer = await gw.decide("p-mail", {"campaign": "acme-always-on", **person(email=typed)})
    assert answer["decision"] == "accepted"
    plain = await gw.decide(
        "p-coreg", {"campaign": "acme-always-on", **person(email="marie.dupont@example.com")}
    )
    assert plain["decision"] == "duplicate"
    (delivered,) = await gw.view.deliveries(AdvertiserId("acme"))
    assert orjson.loads(delivered.record)["lead"]["email"] == typed


@pytest.mark.parametrize("domain", ["gmail.com", "hotmail.fr", "icloud.com", "yahoo.fr"])
async def test_an_ascii_only_provider_refuses_a_lookalike_mailbox_name(
    make_gateway: GatewayFactory, domain: str
) -> None:
    gw = await make_gateway()
    typed = f"m{CYRILLIC_A}rie.dupont@{domain}"
    reply = await gw.post("p-mail", {"campaign": "acme-always-on", **person(email=typed)})
    problem = assert_problem(reply, 422, "invalid-lead")
    assert error_fields(problem) == ["email"]
    assert "ASCII" in problem["errors"][0]["message"]
    assert typed.encode() not in reply.body
