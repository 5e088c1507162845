"""The validated lead: what every later stage (rules, the decision, the CRM) reads.

Every field is already normalized by ``leads.parse``; ``None`` means the publisher did not send
it. ``LEAD_FIELDS`` names the fields about the person, the vocabulary a campaign's
``required``, a rule's ``field`` and a CRM adapter's field map are checked against.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping
from dataclasses import dataclass

from gateway.types import CampaignId, ChannelId

IDENTITY_FIELDS = ("email", "phone")
#: Every field of a lead about the person; a campaign's ``required`` may name only these.
LEAD_FIELDS = (
    *IDENTITY_FIELDS,
    "first_name",
    "last_name",
    "postal_code",
    "city",
    "country",
    "birth_date",
    "company",
    "ip",
    "consent",
)


#: The fields that name or reach the person: never in a probe (a check, a ping).
PERSONAL_FIELDS = frozenset(
    {*IDENTITY_FIELDS, "first_name", "last_name", "birth_date", "company", "ip"}
)


#: What a pre-ping check cannot carry: everything about the person.
CHECK_UNKNOWN = frozenset({*LEAD_FIELDS, "ref", "extra"})


@dataclass(slots=True)  # built per lead: see gateway.decision.model
class Consent:
    """What the person agreed to, as the publisher recorded it. ``at`` is epoch seconds."""

    given: bool
    at: float | None
    text: str | None
    version: str | None
    certificate_id: str | None  # TrustedForm/Jornaya-style certificate

    def to_payload(self) -> dict[str, object]:
        payload: dict[str, object] = {"given": self.given}
        for name in ("at", "text", "version", "certificate_id"):
            value = getattr(self, name)
            if value is not None:
                payload[name] = value
        return payload


@dataclass(slots=True)  # built per lead: see gateway.decision.model
class Lead:
    """A lead whose every field is validated and normalized. ``None`` means not sent."""

    campaign: CampaignId
    channel: ChannelId | None  # as sent (the web layer resolves it against the partner)
    ref: str | None  # the partner's own reference, echoed back
    test: bool
    email: str | None  # NormalizedEmail.address
    phone: str | None  # E.164
    first_name: str | None
    last_name: str | None
    postal_code: str | None
    city: str | None
    country: str | None  # ISO 3166-1 alpha-2
    birth_date: str | None  # YYYY-MM-DD
    company: str | None
    ip: str | None  # normalized (IPv4-mapped IPv6 as IPv4, IPv6 compressed)
    consent: Consent | None
    extra: Mapping[str, str]  # other publisher fields (sub ids, click ids), forwarded as-is
    #: identity kind -> dedup-canonical value, for the campaign's identity fields that are
    #: present: {"email": NormalizedEmail.identity, "phone": E.164}; in a probe (``hashed``),
    #: the SHA-256 of that value in lower-case hex, as the publisher sent it
    identities: Mapping[str, str]
    #: A probe (a pre-ping check or a ping, ``leads.parse.parse_probe``): the fields it cannot
    #: carry, which rules must not judge it on; empty for a lead.
    unknown: frozenset[str] = frozenset()

    @property
    def hashed(self) -> bool:
        """A probe: no personal field is set, and ``identities`` holds SHA-256 digests."""
        return bool(self.unknown)

    def to_payload(self) -> dict[str, object]:
        """The lead for the advertiser's CRM: a JSON-able dict of the fields that are set
        (``test`` only when true, ``extra`` only when not empty), without ``identities``."""
        payload: dict[str, object] = {"campaign": self.campaign}
        for name, value in zip(_PAYLOAD_FIELDS, _payload_values(self), strict=True):
            if value is not None:
                payload[name] = value
        if self.test:
            payload["test"] = True
        if self.consent is not None:
            payload["consent"] = self.consent.to_payload()
        if self.extra:
            payload["extra"] = dict(self.extra)
        return payload


_PAYLOAD_FIELDS = ("channel", "ref", *(f for f in LEAD_FIELDS if f != "consent"))
#: Those fields' values in one call (made for every lead's delivery record).
_payload_values = operator.attrgetter(*_PAYLOAD_FIELDS)
