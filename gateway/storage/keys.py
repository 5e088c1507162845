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


# --- suppression lists and IP velocity ---------------------------------------------------


def person_suppressed(fingerprint: Fingerprint) -> str:
    """The ids of the suppression lists one identity is on, as ``,optout,customers,`` (no
    TTL: until removed)."""
    return f"{PREFIX}:{{p:{fingerprint}}}:sup"


def suppression_size(list_id: str) -> str:
    """How many identities a suppression list holds (kept by the load/add/remove commands)."""
    return f"{PREFIX}:{{l:{list_id}}}:size"


def ip_velocity(advertiser: AdvertiserId, rule_id: str, fingerprint: Fingerprint) -> str:
    """Sliding log of the leads accepted from one IP address (by its keyed fingerprint) for
    one velocity rule, across the advertiser's campaigns."""
    return f"{advertiser_tag(advertiser)}:vel:{rule_id}:{fingerprint}"


# --- delivery ---------------------------------------------------------------------------------
#
# Besides ``deliveries`` (written by ``decide.lua``), one advertiser's delivery queue lives in
# these keys, all in the advertiser's slot. They hold no TTL: each entry leaves when the lead is
# delivered, refused or dead-lettered (dead letters are trimmed by age), so they stay bounded by
# the backlog itself.


def delivery_retries(advertiser: AdvertiserId) -> str:
    """Stream of retries that are due (and replayed dead letters), read beside ``deliveries``."""
    return f"{advertiser_tag(advertiser)}:dlv:retry"


def delivery_delayed(advertiser: AdvertiserId) -> str:
    """Sorted set of lead ids waiting for a retry, scored by due time (epoch ms)."""
    return f"{advertiser_tag(advertiser)}:dlv:delayed"


def delivery_waiting(advertiser: AdvertiserId) -> str:
    """Hash lead id -> the packed entry of each lead in ``delivery_delayed``."""
    return f"{advertiser_tag(advertiser)}:dlv:waiting"


def delivery_retrying(advertiser: AdvertiserId) -> str:
    """Sorted set of the lead ids between attempts (delayed or due), scored by acceptance
    time (epoch ms): the oldest undelivered lead's age without scanning."""
    return f"{advertiser_tag(advertiser)}:dlv:age"


def delivery_dead(advertiser: AdvertiserId) -> str:
    """Dead-letter stream: leads given up on, with their last response, for ops to replay."""
    return f"{advertiser_tag(advertiser)}:dlv:dead"


def delivery_disabled(advertiser: AdvertiserId) -> str:
    """Present while the advertiser's endpoint is disabled (after a 410): every worker holds."""
    return f"{advertiser_tag(advertiser)}:dlv:disabled"


# --- advertiser feedback ------------------------------------------------------------------
#
# Written by ``decide.lua`` at acceptance (same atomic step) and read by ``feedback.lua``: ids
# and times only, never personal data; both expire with the campaign's feedback window.


def lead_index(advertiser: AdvertiserId, lead_id: str) -> str:
    """``partner|campaign|channel|accepted_at_ms|return_until_ms|feedback_until_ms`` of one
    accepted lead (epoch ms)."""
    return f"{advertiser_tag(advertiser)}:lead:{lead_id}"


def lead_feedback(advertiser: AdvertiserId, lead_id: str) -> str:
    """Set of the feedback statuses already recorded for one lead (idempotency)."""
    return f"{advertiser_tag(advertiser)}:fb:{lead_id}"


# --- partner quality ledger ---------------------------------------------------------------


def quality_day(day: str) -> str:
    """Hash ``partner|campaign|metric`` -> count of one UTC day (``2026-11-22``): decisions on
    the day they were made, feedback on its lead's acceptance day. Ids and counts only; the
    TTL (``QUALITY_TTL_MS``) is refreshed on every write."""
    return f"{PREFIX}:{{r:{day}}}:quality"


#: How long a day of the quality ledger is kept after its last write: the report reads at
#: most 400 days back.
QUALITY_TTL_MS = 400 * 86_400_000
