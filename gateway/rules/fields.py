"""The values a rule can read, by name: ``field: email``, ``field: consent.at``, ``extra.sub_id``.

Every value is the normalized one (``gateway.leads.parse``): email lower-cased with an IDNA
domain, phone in E.164, country ISO alpha-2, birth date ``YYYY-MM-DD``. A getter returns the
value as text, or ``None`` when the lead does not carry it (absent or empty).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from operator import attrgetter
from typing import Final

from gateway.leads.lead import LEAD_FIELDS
from gateway.leads.parse import KNOWN_FIELDS
from gateway.rules.model import Env

Getter = Callable[[Env], str | None]

EXTRA_PREFIX: Final = "extra."
_EXTRA_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def _consent_given(env: Env) -> str | None:
    consent = env.lead.consent
    return None if consent is None else ("true" if consent.given else "false")


def _consent_at(env: Env) -> str | None:
    consent = env.lead.consent
    if consent is None or consent.at is None:
        return None
    return datetime.fromtimestamp(consent.at, UTC).isoformat()


def _consent_part(name: str) -> Getter:
    def get(env: Env) -> str | None:
        consent = env.lead.consent
        value: str | None = None if consent is None else getattr(consent, name)
        return value

    return get


def _email_domain(env: Env) -> str | None:
    email = env.lead.email
    return None if email is None else email.rpartition("@")[2]


def _email_local(env: Env) -> str | None:
    email = env.lead.email
    return None if email is None else email.rpartition("@")[0]


def _consent(env: Env) -> str | None:
    return None if env.lead.consent is None else "consent"


def _lead_attribute(name: str) -> Getter:
    get: Getter = attrgetter(f"lead.{name}")
    return get


_GETTERS: Final[dict[str, Getter]] = {
    **{name: _lead_attribute(name) for name in LEAD_FIELDS if name != "consent"},
    "consent": _consent,
    "ref": _lead_attribute("ref"),
    "channel": attrgetter("channel"),
    "partner": attrgetter("partner"),
    "email.domain": _email_domain,
    "email.local": _email_local,
    "consent.given": _consent_given,
    "consent.at": _consent_at,
    **{f"consent.{name}": _consent_part(name) for name in ("text", "version", "certificate_id")},
}
#: The names a rule may use besides ``extra.<name>``, in the order the docs list them.
FIELD_NAMES: Final = tuple(_GETTERS)


def getter(name: str) -> Getter | None:
    """The getter of field ``name``, or ``None`` when no such field exists."""
    found = _GETTERS.get(name)
    if found is not None:
        return found
    extra = extra_name(name)
    if extra is None:
        return None
    return lambda env: env.lead.extra.get(extra)


def extra_name(name: str) -> str | None:
    """The publisher field behind ``extra.<name>`` (also accepted bare, for honeypots), or
    ``None`` when ``name`` is not one: a field leadgate knows never lands in ``extra``."""
    bare = name.removeprefix(EXTRA_PREFIX)
    if bare in KNOWN_FIELDS or not _EXTRA_NAME.fullmatch(bare):
        return None
    return bare if name.startswith(EXTRA_PREFIX) else None


def honeypot_name(name: str) -> str | None:
    """A honeypot's field name: an extra field, written ``website`` or ``extra.website``."""
    bare = name.removeprefix(EXTRA_PREFIX)
    if bare in KNOWN_FIELDS or not _EXTRA_NAME.fullmatch(bare):
        return None
    return bare
