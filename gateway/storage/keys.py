"""The one module that forms Redis keys.

Every key of one decision carries the advertiser's hash tag ``{a:<advertiser>}`` so the decision
script runs unchanged on Redis Cluster. A person's cross-advertiser keys (network dedup, contact
pressure) carry the fingerprint's own tag ``{p:<fingerprint>}``; a partner's idempotency claims
carry ``{i:<partner>}``. Keys hold configured ids and keyed fingerprints only, never personal data.
"""

from __future__ import annotations

from gateway.config.model import CapRule, CapSubject, DedupScope
from gateway.types import AdvertiserId, CampaignId, ChannelId, Fingerprint, PartnerId

PREFIX = "lg"

_SCOPE_LETTER = {
    DedupScope.CAMPAIGN: "c",
    DedupScope.ADVERTISER: "a",
    DedupScope.CHANNEL: "h",
}
_SUBJECT_LETTER = {
    CapSubject.CAMPAIGN: "c",
    CapSubject.PARTNER: "p",
    CapSubject.CHANNEL: "h",
    CapSubject.ADVERTISER: "a",
}


def advertiser_tag(advertiser: AdvertiserId) -> str:
    return f"{PREFIX}:{{a:{advertiser}}}"


def seen(
    advertiser: AdvertiserId,
    scope: DedupScope,
    campaign: CampaignId,
    channel: ChannelId,
    fingerprint: Fingerprint,
) -> str:
    """Where a fingerprint accepted in a dedup scope of this advertiser is remembered."""
    within: str
    if scope is DedupScope.CAMPAIGN:
        within = campaign
    elif scope is DedupScope.CHANNEL:
        within = channel
    elif scope is DedupScope.ADVERTISER:
        within = "-"
    else:
        raise ValueError(f"scope {scope} does not live in the advertiser's slot")
    return f"{advertiser_tag(advertiser)}:seen:{_SCOPE_LETTER[scope]}:{within}:{fingerprint}"


def cap(
    advertiser: AdvertiserId,
    rule: CapRule,
    campaign: CampaignId,
    partner: PartnerId,
    channel: ChannelId,
    bucket: str,
) -> str:
    """The counter (calendar window) or sliding log (rolling window) of one cap subject.

    ``bucket`` names the calendar period (``2026-11-22``) or, for rolling windows, its length.
    """
    subject = rule.subject
    who: str
    if subject is CapSubject.CAMPAIGN:
        who = campaign
    elif subject is CapSubject.PARTNER:
        who = f"{campaign}:{partner}"
    elif subject is CapSubject.CHANNEL:
        who = f"{campaign}:{channel}"
    else:
        who = "-"
    letter = _SUBJECT_LETTER[subject]
    return f"{advertiser_tag(advertiser)}:cap:{letter}:{who}:{rule.window.label}:{bucket}"


def slot_anchor(advertiser: AdvertiserId) -> str:
    """A key of the advertiser's slot that is never written: it stands in a script's KEYS
    where an optional key (the idempotent answer) is absent, so the slot stays the same."""
    return f"{advertiser_tag(advertiser)}:anchor"


def deliveries(advertiser: AdvertiserId) -> str:
    """The advertiser's delivery stream: accepted leads waiting for the CRM."""
    return f"{advertiser_tag(advertiser)}:deliveries"


def idempotency_answer(advertiser: AdvertiserId, partner: PartnerId, key_digest: str) -> str:
    """The stored answer to one Idempotency-Key, written atomically with the decision."""
    return f"{advertiser_tag(advertiser)}:idem:{partner}:{key_digest}"


def idempotency_claim(partner: PartnerId, key_digest: str) -> str:
    """A partner's claim on an Idempotency-Key with its body digest (detects reuse across
    advertisers, whose answers live in other slots)."""
    return f"{PREFIX}:{{i:{partner}}}:idem:{key_digest}"


def person_network_seen(fingerprint: Fingerprint) -> str:
    """When and by which lead the person was last accepted anywhere in the network."""
    return f"{PREFIX}:{{p:{fingerprint}}}:net"


def person_pressure(fingerprint: Fingerprint) -> str:
    """Sorted set of ``<advertiser or campaign>|<lead id>`` holding the person's pressure slots."""
    return f"{PREFIX}:{{p:{fingerprint}}}:press"


def hash_slot_tag(key: str) -> str:
    """The part of ``key`` Redis Cluster hashes: the text between the first ``{`` and ``}``."""
    start = key.index("{")
    return key[start + 1 : key.index("}", start)]
