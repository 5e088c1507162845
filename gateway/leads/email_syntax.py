"""Email syntax: a compiled validator decides the common case, email-validator the rest.

``email-validator`` is the reference: its verdicts and its normalized forms are what the
gateway has always answered and remembered. It costs ~50 µs an address on this project's
machines, more than a whole hello-world request; ``emval`` (Rust, a wheel on PyPI) checks the
same rules in ~7 µs. emval answers alone only where it was shown to agree with the reference
(``tests/leads/test_email_syntax.py``: hypothesis-generated addresses and a corpus of
real-world shapes, same verdict, same local part, same domain):

- the address is ASCII (an IDN domain or a Unicode local part goes to the reference, which
  maps it by UTS-46 / NFC as it always has);
- emval accepts it, and its domain has a dot (emval takes ``a@b``; the reference refuses a
  domain without one), ends with a letter (the reference refuses ``a@example.123``: no
  top-level domain is numeric) and holds no ``xn--`` label (the two check IDNA labels by
  different rules: the reference refuses ``xn--ls8h``, an emoji, which emval decodes).

Everything else, every refusal included, is decided and worded by email-validator, so a 422
says exactly what it said before. No cache: an address is personal data.
"""

from __future__ import annotations

from dataclasses import dataclass

from email_validator import validate_email
from emval import EmailValidator

_FAST = EmailValidator(
    allow_smtputf8=False,
    allow_empty_local=False,
    allow_quoted_local=False,
    allow_domain_literal=False,
    deliverable_address=False,
)
#: The Rust validator emval's Python class wraps: called directly, it answers the same fields
#: without the wrapper's copy of them into an object of its own (1.5 against 2.7 µs an address
#: here). An emval without it (its layout is its own business) is called through the wrapper.
_fast_validate = getattr(_FAST, "_emval", _FAST).validate_email


@dataclass(slots=True)  # built per lead: see gateway.decision.model
class ValidEmail:
    """The parts of a valid address as email-validator gives them: the local part as typed
    (NFC), the domain lower-cased, in Unicode form."""

    local_part: str
    domain: str


def validate_syntax(text: str) -> ValidEmail:
    """Check ``text``'s syntax (no DNS). Raises ``email_validator.EmailNotValidError`` with
    the reference's own message."""
    if text.isascii():
        try:
            fast = _fast_validate(text)
        except (SyntaxError, ValueError):
            pass  # refused: the reference decides and words it
        else:
            domain = fast.domain_name
            # An xn-- label comes back decoded (not ASCII) or, when emval cannot, as it was.
            if domain.isascii() and "." in domain and domain[-1].isalpha() and "xn--" not in domain:
                return ValidEmail(fast.local_part, domain)
    valid = validate_email(text, check_deliverability=False)
    return ValidEmail(valid.local_part, valid.domain)
