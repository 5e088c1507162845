# ruff: noqa: RUF001, RUF003 -- lookalike characters are this file's subject
"""Lookalike spellings of one address are one identity; the delivered address is what was
typed; providers whose mailbox names are ASCII refuse the rest (docs/decision.md, "Lookalike
characters")."""

from __future__ import annotations

import string
import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.leads.email import DEFAULT_PROVIDER_RULES, email_identity, normalize_email
from gateway.leads.lookalike import _FOLD, fold
from gateway.leads.phone import normalize_phone
from tools.build_lookalikes import build, read_ignorables, read_prototypes

CYRILLIC_A = "\u0430"
CYRILLIC_O = "\u043e"
CYRILLIC_IE = "\u0435"
GREEK_OMICRON = "\u03bf"


def fullwidth(text: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if c in string.ascii_letters else c for c in text)


def math_bold(text: str) -> str:
    return "".join(chr(0x1D41A + ord(c) - ord("a")) if c.islower() else c for c in text)


PLAIN = "marie.dupont@example.com"
#: Each spelling reads as PLAIN to a person: each must be PLAIN's identity.
LOOKALIKES = {
    "Cyrillic о": f"marie.dup{CYRILLIC_O}nt@example.com",
    "Cyrillic е": f"mari{CYRILLIC_IE}.dupont@example.com",
    "Cyrillic а": f"m{CYRILLIC_A}rie.dupont@example.com",
    "Greek ο": f"marie.dup{GREEK_OMICRON}nt@example.com",
    "fullwidth": f"{fullwidth('marie')}.dupont@example.com",
    "mathematical bold": f"{math_bold('marie')}.dupont@example.com",
    "mathematical sans-serif": "\U0001d5c6\U0001d5ba\U0001d5cb\U0001d5c2\U0001d5be.dupont"
    "@example.com",
    "combining accent": "marie.dupont\u0301@example.com",
    "precomposed accent": "marié.dupont@example.com",
    "combining accent, decomposed é": "marie\u0301.dupont@example.com",
    "variation selector": "marie\ufe0f.dupont@example.com",
    "combining grapheme joiner": "mar\u034fie.dupont@example.com",
    "Cyrillic а in the domain": f"marie.dupont@ex{CYRILLIC_A}mple.com",
    "fullwidth domain": f"marie.dupont@{fullwidth('example')}.com",
    "everything at once": (
        f"{fullwidth('m')}{CYRILLIC_A}r\u0131\u0301{CYRILLIC_IE}.dup{GREEK_OMICRON}nt"
        f"@{CYRILLIC_IE}x{CYRILLIC_A}mple.com"
    ),
}


@pytest.mark.parametrize("spelling", LOOKALIKES.values(), ids=LOOKALIKES.keys())
def test_a_lookalike_spelling_is_the_same_identity(spelling: str) -> None:
    plain = normalize_email(PLAIN)
    respelt = normalize_email(spelling)
    assert respelt.identity == plain.identity == PLAIN
    # What the advertiser receives is what the person typed (NFC, lower-cased; the domain
    # as IDNA maps it, which makes fullwidth letters plain and keeps a Cyrillic а).
    typed_local = spelling.rpartition("@")[0]
    assert respelt.address.rpartition("@")[0] == unicodedata.normalize("NFC", typed_local.lower())


@pytest.mark.parametrize(
    ("spelling", "identity"),
    [
        # The provider's rules apply to the folded form: a Cyrillic а in "gmail" is Gmail.
        (f"marie.dupont@gm{CYRILLIC_A}il.com", "mariedupont@gmail.com"),
        (f"marie.dupont+x@g{fullwidth('mail')}.com", "mariedupont@gmail.com"),
        (f"john.doe@pr{CYRILLIC_O}tonmail.com", "johndoe@proton.me"),
        # Fullwidth dot and plus in a local part are a dot and a plus to the provider's rule.
        ("a\uff0eb\uff0bc@example.com", "a.b+c@example.com"),
    ],
)
def test_provider_rules_apply_to_the_folded_domain(spelling: str, identity: str) -> None:
    assert normalize_email(spelling).identity == identity


@pytest.mark.parametrize(
    ("unicode_form", "punycode_form", "identity"),
    [
        ("jean@münchen.de", "jean@xn--mnchen-3ya.de", "jean@munchen.de"),
        ("jean@bücher.example", "jean@xn--bcher-kva.example", "jean@bucher.example"),
        ("用户@例子.广告", "用户@xn--fsqu00a.xn--4rr70v", "用户@例子.广告"),
        ("иван@пример.рф", "иван@xn--e1afmkfd.xn--p1ai", "ᴎʙaʜ@πpᴎʍep.pɸ"),
    ],
)
def test_idn_domains_work_and_match_their_punycode_form(
    unicode_form: str, punycode_form: str, identity: str
) -> None:
    a, b = normalize_email(unicode_form), normalize_email(punycode_form)
    assert a == b
    assert a.address == unicode_form
    assert a.identity == identity


ASCII_ONLY = sorted(domain for domain, rule in DEFAULT_PROVIDER_RULES.items() if rule.ascii_only)


def test_the_providers_with_ascii_mailbox_names() -> None:
    for domain in ("gmail.com", "outlook.com", "hotmail.fr", "icloud.com", "yahoo.fr", "pm.me"):
        assert domain in ASCII_ONLY


@pytest.mark.parametrize("domain", ASCII_ONLY)
@pytest.mark.parametrize(
    "local", [f"m{CYRILLIC_A}rie", fullwidth("marie"), "marié", "marie\u0301", "用户"]
)
def test_ascii_only_providers_refuse_other_local_parts(domain: str, local: str) -> None:
    with pytest.raises(ValueError, match=r"^not a valid email address: .*ASCII") as info:
        normalize_email(f"{local}@{domain}")
    assert local not in str(info.value)
    assert domain not in str(info.value)
    # The same mailbox name in ASCII is taken.
    assert normalize_email(f"marie@{domain}").address == f"marie@{domain}"


def test_a_lookalike_of_an_ascii_only_provider_is_refused_like_it() -> None:
    with pytest.raises(ValueError, match="ASCII"):
        normalize_email(f"m{CYRILLIC_A}rie@gm{CYRILLIC_A}il.com")


def test_other_providers_keep_non_ascii_local_parts() -> None:
    assert normalize_email("élodie@orange.fr").address == "élodie@orange.fr"


def test_erasure_and_suppression_see_the_folded_identity() -> None:
    """Erasure matches queued leads with ``email_identity(address)``, suppression lists and
    the decision with ``normalize_email(...).identity``: one identity for every spelling."""
    for spelling in LOOKALIKES.values():
        address = normalize_email(spelling).address
        assert email_identity(address) == normalize_email(PLAIN).identity


@pytest.mark.parametrize(
    "spelling",
    [
        "0612345678",
        "\uff10\uff16\uff11\uff12\uff13\uff14\uff15\uff16\uff17\uff18",  # fullwidth
        "".join(chr(0x1D7CE + int(d)) for d in "0612345678"),  # mathematical bold
        "".join(chr(0x0660 + int(d)) for d in "0612345678"),  # Arabic-Indic
        "06\u200b12345678",  # zero-width space
        "\uff0b33612345678",  # fullwidth plus
    ],
)
def test_phone_digits_in_any_script_are_one_number(spelling: str) -> None:
    assert normalize_phone(spelling, "FR") == "+33612345678"


ASCII_LOWER = st.text(string.ascii_lowercase + string.digits + ".-_+@", min_size=1, max_size=20)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=16))
def test_folding_is_idempotent(text: str) -> None:
    once = fold(text)
    assert fold(once) == once


@settings(max_examples=300, deadline=None)
@given(ASCII_LOWER, ASCII_LOWER)
def test_folding_never_merges_two_plain_ascii_identities(a: str, b: str) -> None:
    assert fold(a) == a
    if a != b:
        assert fold(a) != fold(b)


@settings(max_examples=300, deadline=None)
@given(ASCII_LOWER, st.text(min_size=1, max_size=4))
def test_ascii_inside_other_text_is_only_case_folded(ascii_text: str, other: str) -> None:
    """Folding never rewrites an ASCII character (UTS #39's full skeleton would: m is rn)."""
    assert fold(other + ascii_text).endswith(ascii_text)
    assert fold(ascii_text + other).startswith(ascii_text)


def test_the_shipped_table_is_final_and_leaves_ascii_alone() -> None:
    for source, target in _FOLD.items():
        if source < 0x80:
            assert chr(source) in string.ascii_uppercase
            assert target == chr(source).lower()
        for char in target or "":
            assert ord(char) not in _FOLD, f"U+{source:04X} is not folded in one step"


CONFUSABLES_SAMPLE = """\ufeff# confusables.txt (a few lines in the file's own format)
0430 ;\t0061 ;\tMA\t# ( а → a ) CYRILLIC SMALL LETTER A → LATIN SMALL LETTER A
006D ;\t0072 006E ;\tMA\t# ( m → rn ) LATIN SMALL LETTER M → LATIN SMALL LETTER R, N
0E01 ;\t0072 006E ;\tMA\t# (made up for the test: a non-ASCII lookalike of m)
0031 ;\t006C ;\tMA\t# ( 1 → l ) DIGIT ONE → LATIN SMALL LETTER L
0049 ;\t006C ;\tMA\t# ( I → l ) LATIN CAPITAL LETTER I → LATIN SMALL LETTER L
04C0 ;\t006C ;\tMA\t# ( Ӏ → l ) CYRILLIC LETTER PALOCHKA → LATIN SMALL LETTER L
"""
DERIVED_SAMPLE = """# DerivedCoreProperties.txt
00AD          ; Default_Ignorable_Code_Point # Cf       SOFT HYPHEN
200B..200F    ; Default_Ignorable_Code_Point # Cf   [5] ZERO WIDTH SPACE..RIGHT-TO-LEFT MARK
"""


def test_the_builder_reads_unicode_data_and_never_maps_ascii() -> None:
    table = build(read_prototypes(CONFUSABLES_SAMPLE), read_ignorables(DERIVED_SAMPLE))
    assert table["\u0430"] == "a"
    assert table["\u0e01"] == "m"  # the ASCII letter with the prototype, not "rn"
    assert table["\u04c0"] == "l"  # l, not I or 1
    assert table["\u200b"] == ""
    assert table["\u00ad"] == ""
    assert table["\u0301"] == ""  # a generic diacritic
    assert table["A"] == "a"
    for ascii_char in "m1l":
        assert ascii_char not in table
    assert "\uff41" not in table  # fullwidth a: NFKD makes it "a" first, no entry needed
