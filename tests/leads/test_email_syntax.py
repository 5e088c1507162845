"""The compiled email check agrees with email-validator, the reference: same verdict, same
local part and domain (so the same normalized address and identity), same refusal message.

A differential test: every address goes through both ``validate_syntax`` and the reference,
whatever path ``validate_syntax`` takes, so a shape where emval answers alone and disagrees
fails here, not in a publisher's 422 or a missed duplicate.
"""

from __future__ import annotations

import string

import pytest
from email_validator import EmailNotValidError, validate_email
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.leads import email_syntax
from gateway.leads.email_syntax import ValidEmail, validate_syntax


def _reference(text: str) -> ValidEmail | str:
    try:
        valid = validate_email(text, check_deliverability=False)
    except EmailNotValidError as exc:
        return f"refused: {exc}"
    return ValidEmail(valid.local_part, valid.domain)


def _ours(text: str) -> ValidEmail | str:
    try:
        return validate_syntax(text)
    except EmailNotValidError as exc:
        return f"refused: {exc}"


# Real-world shapes: what publishers post, and what breaks validators.
CORPUS = [
    # common
    "jean.dupont@gmail.com",
    "Jean.Dupont+promo@GoogleMail.com",
    "marie_curie-1867@orange.fr",
    "a@b.co",
    "x@sub.domain.example.co.uk",
    "o'brien@example.ie",
    "user+tag+tag2@outlook.fr",
    "UPPER@EXAMPLE.COM",
    "a!#$%&*/=?^_`{|}~-@example.com",
    "1234567890@example.com",
    # unusual but valid top-level domains
    "a@example.museum",
    "a@example.photography",
    "a@example.xn--p1ai",
    "a@example.xn--vermgensberatung-pwb",
    "a@x.io",
    # IDN and Unicode
    "a@xn--mnchen-3ya.de",
    "a@münchen.de",
    "a@MÜNCHEN.DE",
    "é@example.com",
    "jöhn.dœ@exämple.fr",
    "用户@例子.广告",
    "a@xn--ls8h.la",
    "a@💩.la",
    "a@xn--abc.com",
    "a@xn--.com",
    "a@ex.xn--",
    # quoted local parts, literals, comments
    '"quoted local"@example.com',
    '"a@b"@example.com',
    '""@example.com',
    "a@[1.2.3.4]",
    "a@[IPv6:::1]",
    "a(comment)@example.com",
    # dots
    ".a@example.com",
    "a.@example.com",
    "a..b@example.com",
    "a@example..com",
    "a@.example.com",
    "a@example.com.",
    # domains the reference refuses
    "a@example",
    "a@localhost",
    "a@example.123",
    "a@example.co1",
    "a@1.2.3.4",
    "a@-example.com",
    "a@example-.com",
    "a@exa_mple.com",
    "a@x.local",
    "a@x.test",
    "a@x.invalid",
    "a@x.onion",
    "a@x.arpa",
    "a@example.c",
    "a@" + "b" * 63 + ".com",
    "a@" + "b" * 64 + ".com",
    "a@" + ".".join(["abcdefghi"] * 25) + ".com",
    # local parts
    "x" * 64 + "@example.com",
    "x" * 65 + "@example.com",
    "a b@example.com",
    " a@example.com",
    "a@example.com ",
    "a\t@example.com",
    "a\n@example.com",
    "@example.com",
    "a@",
    "a",
    "",
    "a@@example.com",
    "a@b@example.com",
    "a\\b@example.com",
    "a,b@example.com",
    "a;b@example.com",
    "a<b>@example.com",
    "a\x00@example.com",
    "a\u200b@example.com",
    "a@exam\u200bple.com",
    "\uff41@example.com",  # full-width letter
    "a@\uff45xample.com",
]


@pytest.mark.parametrize("address", CORPUS)
def test_real_world_shapes_get_the_references_answer(address: str) -> None:
    assert _ours(address) == _reference(address)


_LOCAL = string.ascii_letters + string.digits + "!#$%&'*+-/=?^_`{|}~."
_DOMAIN = string.ascii_letters + string.digits + "-."


@st.composite
def _email_like(draw: st.DrawFn) -> str:
    """Addresses near the edges: mostly valid characters, some dots and hyphens in odd
    places, a sprinkle of anything else, ASCII and not."""
    local = draw(
        st.text(st.sampled_from(_LOCAL) | st.characters(codec="utf-8"), min_size=0, max_size=70)
    )
    labels = draw(
        st.lists(
            st.text(st.sampled_from(_DOMAIN) | st.characters(max_codepoint=0x2FF), max_size=20),
            min_size=1,
            max_size=5,
        )
    )
    tld = draw(
        st.sampled_from(["com", "fr", "io", "museum", "c", "123", "co1", "xn--p1ai", "local"])
        | st.text(st.sampled_from(_DOMAIN), max_size=8)
    )
    return f"{local}@{'.'.join([*labels, tld])}"


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.emails() | _email_like() | st.text(max_size=40))
def test_any_address_gets_the_references_answer(address: str) -> None:
    assert _ours(address) == _reference(address)


def test_the_common_case_is_answered_by_the_compiled_validator(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The speed is the point: a plain address must not reach the reference at all.
    def refuse(*_: object, **__: object) -> None:
        raise AssertionError("the reference was called")

    monkeypatch.setattr(email_syntax, "validate_email", refuse)

    assert validate_syntax("Jean.Dupont+x@Example.FR") == ValidEmail("Jean.Dupont+x", "example.fr")
