from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.leads.email import (
    DEFAULT_PROVIDER_RULES,
    NormalizedEmail,
    ProviderRule,
    normalize_email,
    provider_table,
)


@pytest.mark.parametrize(
    ("raw", "address", "identity"),
    [
        # Gmail: dots and +tags are the same mailbox; googlemail.com is gmail.com.
        (" Jean.Dupont@Gmail.COM ", "jean.dupont@gmail.com", "jeandupont@gmail.com"),
        (
            "jean.dupont+promo@googlemail.com",
            "jean.dupont+promo@googlemail.com",
            "jeandupont@gmail.com",
        ),
        ("j.e.a.n+a+b@GMAIL.com", "j.e.a.n+a+b@gmail.com", "jean@gmail.com"),
        # Microsoft: +tags only; dots count; hotmail and outlook are separate namespaces.
        ("J.Doe+x@Hotmail.fr", "j.doe+x@hotmail.fr", "j.doe@hotmail.fr"),
        ("first.last+tag@outlook.com", "first.last+tag@outlook.com", "first.last@outlook.com"),
        ("first.last@hotmail.com", "first.last@hotmail.com", "first.last@hotmail.com"),
        ("someone+news@live.com", "someone+news@live.com", "someone@live.com"),
        # iCloud: +tags; me.com and mac.com are icloud.com.
        ("Me+a@me.com", "me+a@me.com", "me@icloud.com"),
        ("a.b+c@mac.com", "a.b+c@mac.com", "a.b@icloud.com"),
        ("user+tag@fastmail.com", "user+tag@fastmail.com", "user@fastmail.com"),
        # Proton: ".", "-", "_" are transparent; every Proton domain is one namespace.
        (
            "John.Doe-Work_x+tag@protonmail.com",
            "john.doe-work_x+tag@protonmail.com",
            "johndoeworkx@proton.me",
        ),
        ("johndoe@pm.me", "johndoe@pm.me", "johndoe@proton.me"),
        # Yahoo and unknown providers: nothing but case.
        ("First-Last@yahoo.fr", "first-last@yahoo.fr", "first-last@yahoo.fr"),
        ("first.last@yahoo.com", "first.last@yahoo.com", "first.last@yahoo.com"),
        ("a+b@orange.fr", "a+b@orange.fr", "a+b@orange.fr"),
        # IDN domains in either spelling, Unicode local parts, NFC; the identity folds
        # accents (leads.lookalike), the address keeps them.
        ("Jean@MÜNCHEN.de", "jean@münchen.de", "jean@munchen.de"),
        ("jean@xn--mnchen-3ya.de", "jean@münchen.de", "jean@munchen.de"),
        ("Élodie@orange.fr", "élodie@orange.fr", "elodie@orange.fr"),
        ("E\u0301lodie@orange.fr", "élodie@orange.fr", "elodie@orange.fr"),
        ("用户@例子.广告", "用户@例子.广告", "用户@例子.广告"),
        # A rule never empties a local part.
        ("+tag@gmail.com", "+tag@gmail.com", "+tag@gmail.com"),
    ],
)
def test_normalizes_address_and_identity(raw: str, address: str, identity: str) -> None:
    assert normalize_email(raw) == NormalizedEmail(address=address, identity=identity)


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "   ",
        "jean.dupont",
        "jean.dupont@",
        "@gmail.com",
        "jean..dupont@gmail.com",
        ".jean@gmail.com",
        "jean.dupont@gmail",
        "jean dupont@gmail.com",
        "jean@@gmail.com",
        "Jean Dupont <jean.dupont@gmail.com>",
        "jean.dupont@localhost",
        "jean.dupont@[192.168.0.1]",
        '"jean dupont"@gmail.com',
        "jean.dupont@exa_mple.com",
        "jean.dupont@-gmail.com",
        "x" * 250 + "@gmail.com",
        "jean.dupont@" + "a" * 64 + ".com",
    ],
)
def test_refuses_invalid_addresses_without_quoting_them(raw: str) -> None:
    with pytest.raises(ValueError, match=r"^not a valid email address: \S") as info:
        normalize_email(raw)
    message = str(info.value)
    local, _, domain = raw.strip().partition("@")
    for piece in (raw.strip(), local, domain):
        if len(piece) >= 4:
            assert piece not in message


def test_reason_comes_from_the_validator() -> None:
    with pytest.raises(ValueError, match="should have a period"):
        normalize_email("jean.dupont@gmail")


def test_rules_are_replaceable() -> None:
    assert normalize_email("a.b+c@gmail.com", rules={}).identity == "a.b+c@gmail.com"
    corporate = provider_table(
        [
            ProviderRule(
                domains=frozenset({"acme.fr", "acme-group.com"}),
                strip_plus_tag=True,
                canonical_domain="acme.fr",
            )
        ]
    )
    assert normalize_email("J.Doe+crm@ACME-group.com", rules=corporate) == NormalizedEmail(
        address="j.doe+crm@acme-group.com", identity="j.doe@acme.fr"
    )


def test_a_domain_in_two_rules_is_refused() -> None:
    with pytest.raises(ValueError, match=r"gmail\.com"):
        provider_table(
            [
                ProviderRule(domains=frozenset({"gmail.com"})),
                ProviderRule(domains=frozenset({"gmail.com", "x.fr"})),
            ]
        )


def test_default_table_is_read_only() -> None:
    with pytest.raises(TypeError):
        DEFAULT_PROVIDER_RULES["evil.com"] = ProviderRule(domains=frozenset())  # type: ignore[index]


_LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789éèçüöñÉÜØ"
_DOMAINS = [
    "gmail.com",
    "GoogleMail.com",
    "orange.fr",
    "outlook.com",
    "Hotmail.FR",
    "proton.me",
    "icloud.com",
    "münchen.de",
    "xn--mnchen-3ya.de",
    "exämple.fr",
]


@st.composite
def addresses(draw: st.DrawFn) -> str:
    atoms = draw(st.lists(st.text(_LETTERS, min_size=1, max_size=8), min_size=1, max_size=4))
    separators = draw(st.lists(st.sampled_from(".+-_"), min_size=len(atoms), max_size=len(atoms)))
    local = atoms[0] + "".join(sep + atom for sep, atom in zip(separators, atoms[1:], strict=False))
    return f"{local}@{draw(st.sampled_from(_DOMAINS))}"


@settings(max_examples=80, deadline=None)
@given(addresses())
def test_normalization_is_idempotent(raw: str) -> None:
    local, _, domain = raw.rpartition("@")
    rule = DEFAULT_PROVIDER_RULES.get(domain.lower())
    if rule is not None and rule.ascii_only and not local.isascii():
        with pytest.raises(ValueError, match="ASCII only"):
            normalize_email(raw)
        return
    once = normalize_email(raw)
    assert normalize_email(once.address) == once
    assert normalize_email(once.identity).identity == once.identity
