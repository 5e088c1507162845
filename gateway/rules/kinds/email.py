"""Rule kinds about the lead's email: ``email_valid``, ``email_disposable``,
``email_role_account``, ``email_free_mail``, ``email_typo`` (their data: ``rules.emails``).

They read the address with its lookalike characters folded (``leads.lookalike``), as the
dedup identity does: ``mailinator.com`` typed with a Cyrillic a (U+0430) is a throwaway
domain and ``info@`` with a Cyrillic i (U+0456) a role account, not a way past the pack.
Plain ASCII costs two string calls.
"""

from __future__ import annotations

from gateway.config.reader import Reader, join
from gateway.leads.lookalike import fold
from gateway.rules.emails import FREE_MAIL_DOMAINS, ROLE_ACCOUNTS, is_disposable, typo_domains
from gateway.rules.kinds.parameters import Fields, read_texts
from gateway.rules.model import Env, Predicate


def _mailbox(env: Env) -> str | None:
    """The part of the lead's email before the ``@``, lookalikes folded; None without one."""
    email = env.lead.email
    return None if email is None else fold(email.rpartition("@")[0])


def _domain(env: Env) -> str | None:
    """The lead's email domain, lookalikes folded; None without an email."""
    email = env.lead.email
    return None if email is None else fold(email.rpartition("@")[2])


def email_valid(r: Reader, fields: Fields, path: str) -> Predicate:
    # The intake refuses (422) any email that fails syntax, IDNA or special-use checks, so a
    # lead that carries an email carries a valid one.
    return lambda env: env.lead.email is not None


def email_disposable(r: Reader, fields: Fields, path: str) -> Predicate:
    def test(env: Env) -> bool:
        domain = _domain(env)
        return domain is not None and is_disposable(domain)

    return test


def email_role_account(r: Reader, fields: Fields, path: str) -> Predicate:
    names = ROLE_ACCOUNTS
    if fields.get("names") is not None:
        names = read_texts(r, fields["names"], join(path, "names"), fold=True)

    def test(env: Env) -> bool:
        mailbox = _mailbox(env)
        return mailbox is not None and mailbox.partition("+")[0] in names

    return test


def email_free_mail(r: Reader, fields: Fields, path: str) -> Predicate:
    domains = FREE_MAIL_DOMAINS
    if fields.get("domains") is not None:
        domains = read_texts(r, fields["domains"], join(path, "domains"), fold=True)
    if fields.get("add") is not None:
        domains = domains | read_texts(r, fields["add"], join(path, "add"), fold=True)
    return lambda env: _domain(env) in domains


def email_typo(r: Reader, fields: Fields, path: str) -> Predicate:
    typos = typo_domains()
    return lambda env: _domain(env) in typos
