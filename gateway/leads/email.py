"""Email addresses: the spelling the advertiser receives and the identity dedup works on.

Two forms come out of one address because they serve different people. The advertiser gets
the address the person typed (tidied, never rewritten to another mailbox). Dedup gets the
mailbox: ``Jean.Dupont+promo@GoogleMail.com`` and ``jeandupont@gmail.com`` reach the same inbox,
so a publisher must not be paid twice for them. Which spellings are the same mailbox depends on
the provider; that knowledge is data (``ProviderRule``), replaceable by the caller. Before the
provider's rules, the identity folds lookalike characters (``leads.lookalike``): a Cyrillic
o or a fullwidth m makes a respelling for a reader, not a new person.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from email_validator import EmailNotValidError

from gateway.leads.email_syntax import validate_syntax
from gateway.leads.lookalike import fold

#: RFC 5321 path limit (256) minus the angle brackets; longer addresses cannot be delivered.
MAX_EMAIL_CHARS = 254


@dataclass(slots=True)  # built per lead: see gateway.decision.model
class NormalizedEmail:
    """``address``: for the advertiser; ``identity``: the dedup key (provider rules applied)."""

    address: str
    identity: str


@dataclass(frozen=True, slots=True)
class ProviderRule:
    """How one mailbox provider maps the spellings of an address to one mailbox.

    ``domains``: every domain the rule covers (lower-case, Unicode form).
    ``strip_dots``: the provider ignores ``.`` in local parts (Gmail).
    ``strip_plus_tag``: ``user+anything`` is delivered to ``user`` (sub-addressing).
    ``canonical_domain``: the domain the identity uses for all of ``domains`` when they are one
    namespace (``googlemail.com`` is ``gmail.com``); ``None`` keeps each domain separate, as for
    ``hotmail.com`` and ``outlook.com``, where the same local part can be two different people.
    ``strip_chars``: further characters the provider treats as transparent (Proton: ``-``, ``_``).
    ``ascii_only``: the provider's mailbox names are ASCII (letters, digits, a few signs): an
    address there with any other character in its local part reaches nobody and is refused.
    """

    domains: frozenset[str]
    strip_dots: bool = False
    strip_plus_tag: bool = False
    canonical_domain: str | None = None
    strip_chars: str = ""
    ascii_only: bool = False


def provider_table(rules: Iterable[ProviderRule]) -> Mapping[str, ProviderRule]:
    """Index ``rules`` by domain; a domain claimed by two rules is a mistake (``ValueError``)."""
    table: dict[str, ProviderRule] = {}
    for rule in rules:
        for domain in rule.domains:
            if domain in table:
                raise ValueError(f"domain {domain!r} is in two provider rules")
            table[domain] = rule
    return MappingProxyType(table)


# What each provider does ("do nothing" is the safe default: a wrong rule merges two people and
# the second one's lead is refused as a duplicate; a missing rule only lets a +tag through):
# - Gmail ignores dots and case, supports +tags; googlemail.com is the same namespace.
# - Outlook.com/Hotmail/Live support +tags; dots are significant; each domain is its own
#   namespace (x@hotmail.com and x@outlook.com can be different accounts).
# - iCloud supports +tags; me.com and mac.com addresses are aliases of the icloud.com account.
# - Fastmail supports +tags (and subdomain addressing, which a dedup key cannot undo).
# - Proton's help pages ("How to change your username", "Addresses and aliases") state that
#   ".", "_" and "-" are transparent ("username is the same as user_name and user.name"), that
#   +aliases exist, and that @protonmail.com, @protonmail.ch, @pm.me (and @proton.me) addresses
#   of one username belong to one account.
# - Yahoo has no +tags; its "disposable addresses" are basename-keyword@ where the basename is
#   not the account name, so nothing maps them back to the person: no mapping, only ASCII.
# Every one of these providers documents its mailbox names as ASCII letters, digits and a few
# of . _ - (Google's "Create a username", Microsoft's account help, Apple's iCloud Mail help,
# Yahoo's "username requirements", Fastmail's and Proton's address help): a non-ASCII local
# part there is a lookalike respelling, never a person's mailbox (``ascii_only``).
DEFAULT_PROVIDER_RULES: Mapping[str, ProviderRule] = provider_table(
    [
        ProviderRule(
            domains=frozenset({"gmail.com", "googlemail.com"}),
            strip_dots=True,
            strip_plus_tag=True,
            canonical_domain="gmail.com",
            ascii_only=True,
        ),
        ProviderRule(
            domains=frozenset(
                {"outlook.com", "hotmail.com", "live.com", "outlook.fr", "hotmail.fr", "live.fr"}
            ),
            strip_plus_tag=True,
            ascii_only=True,
        ),
        ProviderRule(
            domains=frozenset({"icloud.com", "me.com", "mac.com"}),
            strip_plus_tag=True,
            canonical_domain="icloud.com",
            ascii_only=True,
        ),
        ProviderRule(
            domains=frozenset({"fastmail.com", "fastmail.fm"}),
            strip_plus_tag=True,
            ascii_only=True,
        ),
        ProviderRule(
            domains=frozenset({"proton.me", "protonmail.com", "protonmail.ch", "pm.me"}),
            strip_dots=True,
            strip_plus_tag=True,
            canonical_domain="proton.me",
            strip_chars="-_",
            ascii_only=True,
        ),
        ProviderRule(
            domains=frozenset(
                {"yahoo.com", "yahoo.fr", "yahoo.co.uk", "yahoo.de", "ymail.com", "rocketmail.com"}
            ),
            ascii_only=True,
        ),
    ]
)


def normalize_email(
    raw: str, rules: Mapping[str, ProviderRule] = DEFAULT_PROVIDER_RULES
) -> NormalizedEmail:
    """Validate ``raw`` (syntax only, no DNS) and return its two normalized forms.

    Raises ``ValueError("not a valid email address: <why>")``; the reason never quotes the
    address itself (it is personal data and ends up in 422 answers and logs).
    """
    text = unicodedata.normalize("NFC", raw.strip())
    if len(text) > MAX_EMAIL_CHARS:
        raise ValueError(f"not a valid email address: longer than {MAX_EMAIL_CHARS} characters")
    try:
        # Syntax and IDNA only: a DNS lookup per lead would cost milliseconds and make the
        # answer depend on a resolver; deliverability is the rules' and the CRM's business.
        valid = validate_syntax(text)
    except EmailNotValidError as exc:
        raise ValueError(f"not a valid email address: {_reason(str(exc), text)}") from None
    # The local part is case-sensitive in RFC 5321, but no mainstream mailbox provider treats
    # it so, and people type the same address in many cases (Jean.Dupont, jean.dupont): one
    # lower-case spelling keeps the advertiser's CRM from holding the person twice and never
    # changes where the mail goes. Dots and +tags stay: they are what the person typed.
    local = unicodedata.normalize("NFC", valid.local_part.lower())
    # email-validator gives the domain lower-cased, UTS-46/IDNA 2008 mapped, in Unicode form
    # (xn--mnchen-3ya.de and MÜNCHEN.de both become münchen.de), so both spellings agree.
    domain = valid.domain
    address = f"{local}@{domain}"
    if not local.isascii():
        # The provider is the one the address reads as: "gmail.com" spelt with a Cyrillic a
        # is a lookalike of Gmail, whose mailbox names are ASCII.
        rule = rules.get(fold(domain))
        if rule is not None and rule.ascii_only:
            raise ValueError(
                "not a valid email address: this provider's mailbox names are ASCII only "
                "(letters, digits, '.', '_', '-' before the @)"
            )
    return NormalizedEmail(address=address, identity=email_identity(address, rules))


def email_identity(address: str, rules: Mapping[str, ProviderRule] = DEFAULT_PROVIDER_RULES) -> str:
    """The dedup identity of an address already normalized (``NormalizedEmail.address``):
    lookalikes folded (``lookalike.fold``), then the provider's rules applied. Cheap (no
    validation, nothing but a dict look-up for an ASCII address): erasure runs it over every
    queued lead."""
    if not address.isascii():
        address = fold(address)
    local, _, domain = address.rpartition("@")
    rule = rules.get(domain)
    if rule is None:
        return address
    mailbox = local
    if rule.strip_plus_tag:
        mailbox = mailbox.partition("+")[0]
    if rule.strip_dots:
        mailbox = mailbox.replace(".", "")
    for char in rule.strip_chars:
        mailbox = mailbox.replace(char, "")
    if not mailbox:  # "+tag@gmail.com": not a mailbox the rule knows; keep what was typed
        mailbox = local
    return f"{mailbox}@{rule.canonical_domain or domain}"


# Parenthesised details that come from the idna library quote the offending label.
_QUOTED_DETAIL = re.compile(r"\s*\([^)]*['\"][^)]*\)")


def _reason(message: str, address: str) -> str:
    """email-validator's message, shortened, with any piece of the address taken out."""
    reason = _QUOTED_DETAIL.sub("", message).strip().rstrip(".")
    local, _, domain = address.rpartition("@")
    for piece in (address, local, domain):
        if len(piece) >= 3:
            reason = reason.replace(piece, "…")
    return reason[:1].lower() + reason[1:] if reason else "invalid syntax"
