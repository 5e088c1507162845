"""The one module that forms Redis keys.

Every key of one decision carries the advertiser's hash tag ``{a:<advertiser>}`` so the decision
script runs unchanged on Redis Cluster. A person's cross-advertiser keys (network dedup, contact
pressure) carry the fingerprint's own tag ``{p:<fingerprint>}``; a partner's idempotency claims
carry ``{i:<partner>}``. A campaign sold to buyers keeps its own dedup marks, caps and answers
under ``{c:<campaign>}``; its buyers' keys are their advertisers' (``{a:…}``), the same keys as
today. Keys hold configured ids and keyed fingerprints only, never personal data.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from itertools import repeat
from typing import NamedTuple

import xxhash

from gateway.config.model import CapRule, CapSubject, DedupScope
from gateway.leads.fingerprint import b64url
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


#: Dedup marks live in hashes, one per dedup scope, fingerprint key, generation and bucket, so
#: a mark costs a hash field (about 20 bytes in Redis' listpack encoding) instead of a key
#: (about 170). A generation is 24 days of acceptances: its hashes expire together one longest
#: window after the generation ends, so no mark outlives its window by more than 24 days. A
#: lookup reads every generation its window reaches: 2 or 3 hashes for 30 days, 4 or 5 for 90
#: (weekly generations took 5-6 and 14-15: most of the decision's Redis CPU). 24 days is the
#: longest generation whose offsets (ms since it began) stay below 2^31, the largest integer
#: a listpack stores in 4 bytes.
SEEN_GENERATION_MS = 24 * 86_400_000
#: Buckets per scope and generation. Up to 128 marks a hash stays a listpack (Redis' default
#: ``hash-max-listpack-entries``): a scope holds about 6.5 million marks a generation compactly
#: (at most ~100 a hash, so Poisson's tail rarely passes 128), and each hash's own cost (~150
#: bytes) is shared by enough marks to stay small per mark.
SEEN_BUCKETS = 1 << 16

#: The layout before this one (``LEGACY_SEEN_*``): weekly generations of 16,384 buckets, hash
#: names ``<prefix>:<key id>:<generation>:<bucket>``. Its marks are still read while they may
#: be younger than a window (docs/decision.md, "Upgrading"); nothing is written to it.
LEGACY_SEEN_GENERATION_MS = 7 * 86_400_000
LEGACY_SEEN_BUCKETS = 1 << 14
#: The key where a Redis remembers when a process of this layout first used it (epoch ms;
#: its TTL, ``SEEN_LAYOUT_TTL_MS``, is renewed by every process start). Marks of the legacy
#: layout can only have been written before then, or during the rolling upgrade that followed
#: (``LEGACY_SEEN_GRACE_MS``).
SEEN_LAYOUT_SINCE = f"{PREFIX}:{{layout}}:seen:since"
SEEN_LAYOUT_TTL_MS = 400 * 86_400_000
#: How long after that processes of the previous version may still write legacy marks: a
#: rolling upgrade must end within it.
LEGACY_SEEN_GRACE_MS = 86_400_000


class SeenMark(NamedTuple):
    """Where one fingerprint is remembered within a scope: the fingerprint key's id, a bucket
    and a field, all derived from the fingerprint alone (xxh3-128 of it: uniform whatever the
    fingerprint's form, and one-way). A named tuple: made for every identity of every lead,
    four times cheaper than a frozen dataclass."""

    key_id: str
    bucket: int
    field: str
    #: The bucket as hash names end with it (``seen_in`` adds it to a head).
    bucket_name: str
    #: The mark's bucket in the legacy layout (the same field).
    legacy_bucket: int


def seen_mark(fingerprint: Fingerprint) -> SeenMark:
    key_id, _, _ = fingerprint.partition(".")
    digest = xxhash.xxh3_128_digest(fingerprint.encode())
    # 16 bits choose the bucket (the legacy layout used 14 of them), bits 16 to 87 (12 base64
    # characters) name the field: a new person is taken for someone already in the bucket
    # with odds below 2^-65.
    field = b64url(digest[2:11])
    # SEEN_BUCKETS is 2^16: the two bytes are the bucket, their hex its name (four digits).
    bucket = digest[0] << 8 | digest[1]
    return SeenMark(key_id, bucket, field, digest[:2].hex(), bucket % LEGACY_SEEN_BUCKETS)


def seen_generation(at_ms: int) -> int:
    """The generation a mark made at ``at_ms`` (epoch ms) is written to."""
    return at_ms // SEEN_GENERATION_MS


def seen_generations(now_ms: int, window_ms: int, generation_ms: int = SEEN_GENERATION_MS) -> range:
    """The generations (of ``generation_ms``) that may hold a mark younger than ``window_ms``,
    newest first."""
    newest = now_ms // generation_ms
    oldest = max(0, now_ms - window_ms + 1) // generation_ms
    return range(newest, min(newest, oldest) - 1, -1)


def seen_generations_span(now_ms: int, window_ms: int) -> tuple[range, int, int]:
    """``seen_generations(now_ms, window_ms)`` and the times ``[from, until)`` (epoch ms) over
    which it stays the same: until the current generation ends or the window's start enters
    the next one, whichever comes first. A scope's leads of a day share one (the hot path
    keeps it, ``decision.plan.ScopePlan.frame``)."""
    generations = seen_generations(now_ms, window_ms)
    newest, oldest, step = generations[0], generations[-1], SEEN_GENERATION_MS
    since, until = newest * step, (newest + 1) * step
    # The oldest generation changes when the window's start crosses a generation's start
    # (never below 0: the window's start clamped there moves nothing until it reaches ``step``).
    until = min(until, (oldest + 1) * step + window_ms - 1)
    if now_ms - window_ms + 1 > 0:
        since = max(since, oldest * step + window_ms - 1)
    return generations, since, until


def legacy_seen_generations(now_ms: int, window_ms: int, until_ms: int) -> range:
    """The legacy layout's weekly generations that may hold a mark younger than
    ``window_ms``, newest first, when legacy marks were written only before ``until_ms``:
    none once the window starts after it."""
    oldest = max(0, now_ms - window_ms + 1) // LEGACY_SEEN_GENERATION_MS
    newest = min(now_ms, until_ms) // LEGACY_SEEN_GENERATION_MS
    if now_ms - window_ms >= until_ms:
        return range(0)
    return range(newest, oldest - 1, -1)


@dataclass(frozen=True, slots=True)
class SeenSpace:
    """One dedup scope of an advertiser; ``campaign`` or ``channel`` count only for the
    campaign and channel scopes."""

    advertiser: AdvertiserId
    scope: DedupScope
    campaign: CampaignId
    channel: ChannelId

    def prefix(self) -> str:
        within: str
        if self.scope is DedupScope.CAMPAIGN:
            within = self.campaign
        elif self.scope is DedupScope.CHANNEL:
            within = self.channel
        elif self.scope is DedupScope.ADVERTISER:
            within = "-"
        else:
            raise ValueError(f"scope {self.scope} does not live in the advertiser's slot")
        return f"{advertiser_tag(self.advertiser)}:seen:{_SCOPE_LETTER[self.scope]}:{within}"


def seen(space: SeenSpace, mark: SeenMark, generation: int) -> str:
    """The hash holding a fingerprint's mark (field ``mark.field``: the acceptance time, in ms
    since the generation began) in one dedup scope, for one generation."""
    (key,) = seen_each(space, mark, range(generation, generation + 1))
    return key


def seen_each(space: SeenSpace, mark: SeenMark, generations: range) -> tuple[str, ...]:
    """``seen`` for each of ``generations``, in order."""
    return seen_in(seen_heads(space.prefix(), mark.key_id, generations), mark)


def seen_heads(prefix: str, key_id: str, generations: range) -> tuple[str, ...]:
    """What the names of one scope's hashes share, for marks under fingerprint key
    ``key_id``, in each of ``generations``: all but the bucket. The same for every lead of a
    generation: the hot path keeps them (``seen_in`` adds a mark's bucket). The ``g`` keeps
    them apart from the legacy layout's names."""
    return tuple([f"{prefix}:{key_id}:g{g}:" for g in generations])


def seen_in(heads: tuple[str, ...], mark: SeenMark) -> tuple[str, ...]:
    """The hashes of ``mark``'s bucket under each of ``heads`` (``seen_heads``)."""
    return tuple(map(operator.add, heads, repeat(mark.bucket_name)))


def legacy_seen_head(prefix: str, key_id: str) -> str:
    """The legacy layout's hash name of one scope and fingerprint key up to its generation
    (``legacy_seen`` adds the generation and the bucket)."""
    return f"{prefix}:{key_id}:"


def legacy_seen(head: str, generation: int, legacy_bucket: int) -> str:
    """A hash of the legacy layout (weekly generation, 16,384 buckets)."""
    return f"{head}{generation}:{legacy_bucket:04x}"


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
    return cap_head(advertiser, rule, campaign, partner, channel) + bucket


def cap_head(
    advertiser: AdvertiserId,
    rule: CapRule,
    campaign: CampaignId,
    partner: PartnerId,
    channel: ChannelId,
) -> str:
    """``cap`` without its bucket: what stays the same from one period to the next."""
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
    return f"{advertiser_tag(advertiser)}:cap:{letter}:{who}:{rule.window.label}:"


def cap_holds(cap_key: str) -> str:
    """The holds of pings on one cap (``cap``'s key, whose hash tag it keeps): a sorted set
    of ping ids scored by when each hold ends (epoch ms). Its TTL is the longest ping TTL
    written to it, only ever raised; ended holds are removed when a ping takes a new one."""
    return cap_key + ":holds"


def ping_record(advertiser: AdvertiserId, ping_id: str) -> str:
    """An accepted ping's record (``decision.ping.PingRecord``: ids, its expiry, digests),
    then ``used`` once a post committed or released it, until the record's TTL (the hold's
    end plus ``decision.ping.RECORD_GRACE_MS``). ``ping_id`` is a gateway-made id."""
    return f"{advertiser_tag(advertiser)}:ping:{ping_id}"


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
#
# The lead index is packed like the dedup marks: a hash per advertiser, week and bucket (by the
# lead id's own time and random bits), field = the lead id less the time bits its week already
# says (19 base64 characters), value = a small integer
# (the route's code x 1024 + 512 + the ms from the id's time to the acceptance), the route's text
# (partner, campaign, channel, return and feedback windows) once per week in a registry hash.
# About 25 bytes a lead instead of ~184 for a key per lead holding a text record.

#: A lead index generation: a week of lead ids (by the time in the UUIDv7).
LEAD_INDEX_GENERATION_MS = 7 * 86_400_000
#: Buckets per advertiser and week: ~1.6 million leads a week stay in listpacks.
LEAD_INDEX_BUCKETS = 1 << 14
#: Offsets (acceptance - the id's time, ms) in [-LEAD_INDEX_OFFSETS / 2, LEAD_INDEX_OFFSETS /
#: 2) are packed into the integer value; others are stored as text (an idempotent retry
#: deciding under an earlier request's id). The acceptance time is the request's: a batch's
#: ids are made while its leads are prepared, up to a few hundred ms after it.
LEAD_INDEX_OFFSETS = 1024


class LeadIndexSlot(NamedTuple):
    """Where one lead id is indexed: the bucket's hash, the week's route registry, the field,
    the id's time (epoch ms; 0 for an id that is not a UUIDv7) and when its generation ends
    (epoch ms)."""

    key: str
    routes: str
    field: str
    id_ms: int
    generation_ends_ms: int


def lead_index(advertiser: AdvertiserId, lead_id: str) -> LeadIndexSlot:
    """The lead index entry of ``lead_id`` (a UUIDv7 in text form; any other id, as tests
    use, is indexed under generation 0 by a hash of its text)."""
    raw = b""
    if len(lead_id) == 36 and lead_id[14] == "7":
        try:
            raw = bytes.fromhex(lead_id.replace("-", ""))
        except ValueError:
            raw = b""
    if len(raw) == 16:
        id_ms = int.from_bytes(raw[:6], "big")
        bucket = int.from_bytes(raw[14:], "big") % LEAD_INDEX_BUCKETS
        # The id's low 32 time bits and its random bits: two ids of one week differ there.
        field = b64url(raw[2:])
    else:
        id_ms = 0
        bucket = xxhash.xxh3_64_intdigest(lead_id.encode()) % LEAD_INDEX_BUCKETS
        field = lead_id
    generation = id_ms // LEAD_INDEX_GENERATION_MS
    head = f"{advertiser_tag(advertiser)}:leads:{generation}:"
    return LeadIndexSlot(
        f"{head}{bucket:04x}",
        head + "routes",
        field,
        id_ms,
        (generation + 1) * LEAD_INDEX_GENERATION_MS,
    )


def lead_route(text: str) -> int:
    """The code of a route's text in the week's registry (21 bits: code x 1024 + offset stays
    below 2^31, a 4-byte listpack integer; ``decide.lua`` stores a lead's whole text instead
    when two routes' codes meet)."""
    return xxhash.xxh32_intdigest(text.encode()) & 0x1FFFFF


def legacy_lead_index(advertiser: AdvertiserId, lead_id: str) -> str:
    """The previous layout's index key of one lead (a string
    ``partner|campaign|channel|accepted_at_ms|return_until_ms|feedback_until_ms``): read by
    feedback until the last such key expires with its feedback window; never written."""
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


# --- distribution: a campaign sold to buyers ---------------------------------------------
#
# The campaign's own dedup marks (campaign and channel scopes), caps, IP velocity logs and
# idempotent answers live in the campaign's slot; each buyer's in its advertiser's slot, formed
# by the functions above with the distributed campaign's id (so a buyer's advertiser-wide
# marks and caps are shared with that advertiser's own campaigns). docs/decision.md
# ("Distribution") lists them with their TTLs.


def campaign_tag(campaign: CampaignId) -> str:
    return f"{PREFIX}:{{c:{campaign}}}"


def campaign_seen_prefix(campaign: CampaignId, scope: DedupScope, channel: ChannelId) -> str:
    """``seen_heads``' prefix for a distributed campaign's own dedup scope: ``campaign`` (this
    campaign) or ``channel`` (this campaign, through this channel)."""
    if scope is DedupScope.CAMPAIGN:
        within: str = campaign
    elif scope is DedupScope.CHANNEL:
        within = channel
    else:
        raise ValueError(f"scope {scope} does not live in a campaign's slot")
    return f"{campaign_tag(campaign)}:seen:{_SCOPE_LETTER[scope]}:{within}"


def campaign_cap_head(
    campaign: CampaignId, rule: CapRule, partner: PartnerId, channel: ChannelId
) -> str:
    """``cap_head`` of a distributed campaign's own cap (subjects campaign, partner, channel)."""
    if rule.subject is CapSubject.ADVERTISER:
        raise ValueError("a campaign sold to buyers has no advertiser-wide cap of its own")
    who = {
        CapSubject.CAMPAIGN: campaign,
        CapSubject.PARTNER: f"{campaign}:{partner}",
        CapSubject.CHANNEL: f"{campaign}:{channel}",
    }[rule.subject]
    letter = _SUBJECT_LETTER[rule.subject]
    return f"{campaign_tag(campaign)}:cap:{letter}:{who}:{rule.window.label}:"


def campaign_ip_velocity(campaign: CampaignId, rule_id: str, fingerprint: Fingerprint) -> str:
    """``ip_velocity`` for a distributed campaign: counted per campaign, not per buyer."""
    return f"{campaign_tag(campaign)}:vel:{rule_id}:{fingerprint}"


def campaign_anchor(campaign: CampaignId) -> str:
    """A never-written key of the campaign's slot (``slot_anchor``'s)."""
    return f"{campaign_tag(campaign)}:anchor"


def campaign_answer(campaign: CampaignId, partner: PartnerId, key_digest: str) -> str:
    """The stored answer to one Idempotency-Key of a distributed campaign's lead."""
    return f"{campaign_tag(campaign)}:idem:{partner}:{key_digest}"


def campaign_reservation(campaign: CampaignId, lead_id: str) -> str:
    """What one lead's campaign reservation took (marks and their previous values, cap
    counters), for its release, and the proof that this lead id holds it (a keyed retry)."""
    return f"{campaign_tag(campaign)}:res:{lead_id}"


def sale_lease(partner: PartnerId, key_digest: str) -> str:
    """Held (``PX``) while a keyed request to a distributed campaign is being decided: a
    second request with the key waits instead of selling the same lead id concurrently."""
    return f"{PREFIX}:{{i:{partner}}}:lease:{key_digest}"
