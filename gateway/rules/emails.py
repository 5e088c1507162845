"""Data the email rule kinds check addresses against, all without the network.

- disposable domains: the ``disposable-email-domains`` package (community-kept, updated often);
  a subdomain of a listed domain counts as listed (``x.mailinator.com``);
- free-mail domains: the big consumer providers, for B2B packs (a pack may add or replace);
- role accounts: mailboxes of a function, not a person (``info@``, ``noreply@``);
- typo domains: one edit away from a big provider's domain (``gmial.com``, ``hotmail.fr`` typed
  ``hotmial.fr``, ``gmail.con``): mail to them bounces or reaches a stranger.
"""

from __future__ import annotations

import string
from collections.abc import Iterable
from functools import cache
from typing import Final

import disposable_email_domains

FREE_MAIL_DOMAINS: Final = frozenset(
    {
        # Global providers.
        *("gmail.com", "googlemail.com", "yahoo.com", "yahoo.fr", "yahoo.co.uk", "yahoo.de"),
        *("yahoo.es", "yahoo.it", "ymail.com", "rocketmail.com", "hotmail.com", "hotmail.fr"),
        *("hotmail.co.uk", "hotmail.de", "hotmail.es", "hotmail.it", "hotmail.be", "outlook.com"),
        *("outlook.fr", "outlook.de", "outlook.es", "outlook.it", "outlook.be", "live.com"),
        *("live.fr", "live.be", "live.co.uk", "msn.com", "aol.com", "aol.fr", "icloud.com"),
        *("me.com", "mac.com", "proton.me", "protonmail.com", "protonmail.ch", "pm.me"),
        *("gmx.com", "gmx.fr", "gmx.de", "gmx.net", "gmx.at", "gmx.ch", "web.de", "mail.com"),
        *("yandex.com", "yandex.ru", "mail.ru", "zoho.com", "tutanota.com", "tuta.io"),
        *("fastmail.com", "fastmail.fm", "hey.com", "qq.com", "163.com", "126.com", "naver.com"),
        # French and European ISPs' consumer mailboxes.
        *("orange.fr", "wanadoo.fr", "free.fr", "sfr.fr", "neuf.fr", "laposte.net", "bbox.fr"),
        *("numericable.fr", "club-internet.fr", "aliceadsl.fr", "voila.fr", "libertysurf.fr"),
        *("libero.it", "virgilio.it", "t-online.de", "freenet.de", "skynet.be", "telenet.be"),
        *("bluewin.ch", "seznam.cz", "wp.pl", "o2.pl", "interia.pl", "btinternet.com", "sky.com"),
        *("comcast.net", "att.net", "verizon.net"),
    }
)

ROLE_ACCOUNTS: Final = frozenset(
    {
        *("abuse", "accounts", "accueil", "admin", "administrator", "billing", "commercial"),
        *("compta", "comptabilite", "contact", "direction", "do-not-reply", "donotreply"),
        *("help", "hello", "hostmaster", "hr", "info", "infos", "information", "jobs"),
        *("list", "mailer-daemon", "marketing", "newsletter", "no-reply", "noreply", "office"),
        *("postmaster", "recrutement", "rh", "root", "sales", "secretariat", "security"),
        *("service", "support", "team", "webmaster", "ventes"),
    }
)

#: Providers whose typo domains are caught. Short names are left out: one edit away from
#: ``free.fr`` or ``sfr.fr`` are real companies' domains (``tree.fr``, ``sfa.fr``).
TYPO_TARGETS: Final = (
    *("gmail.com", "yahoo.com", "yahoo.fr", "hotmail.com", "hotmail.fr", "outlook.com"),
    *("outlook.fr", "icloud.com", "orange.fr", "wanadoo.fr", "laposte.net", "protonmail.com"),
)
_DOMAIN_CHARS = string.ascii_lowercase + string.digits + "-."


def is_disposable(domain: str) -> bool:
    """Whether ``domain`` or one of its parent domains is a throwaway-mail domain."""
    blocklist = disposable_email_domains.blocklist
    if domain in blocklist:
        return True
    dot = domain.find(".")
    while dot != -1:
        domain = domain[dot + 1 :]
        if "." not in domain:
            return False
        if domain in blocklist:
            return True
        dot = domain.find(".")
    return False


def _one_edit(word: str) -> Iterable[str]:
    """Every string one deletion, transposition, substitution or insertion away from ``word``."""
    for i in range(len(word) + 1):
        head, tail = word[:i], word[i:]
        if tail:
            yield head + tail[1:]
        if len(tail) > 1:
            yield head + tail[1] + tail[0] + tail[2:]
        for char in _DOMAIN_CHARS:
            if tail:
                yield head + char + tail[1:]
            yield head + char + tail


@cache
def typo_domains() -> frozenset[str]:
    """Domains one edit away from a ``TYPO_TARGETS`` domain that are not themselves a known
    provider (built once, on first use: about 25,000 short strings)."""
    typos = {typo for target in TYPO_TARGETS for typo in _one_edit(target)}
    return frozenset(typo for typo in typos if "." in typo and typo not in FREE_MAIL_DOMAINS)
