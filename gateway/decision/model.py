"""What a store is asked to decide and what it answers: plain data, no I/O.

A :class:`DecisionRequest` is complete: every key, window and limit is computed beforehand by
``decision.plan`` so both stores (Redis scripts, the embedded store) only check and commit.
All times are epoch milliseconds (``*_ms``), all durations milliseconds.

What is built for every lead (``DecisionRequest``, its ``DedupCheck``s, ``CapCheck``s and
``LeadIndexEntry``, the ``DecisionOutcome``) is a plain slots dataclass, not a frozen one: a
frozen dataclass's ``__init__`` sets each field through ``object.__setattr__``, four times the
cost (1.9 against 0.5 µs for a check on the bench machine; 2.4 against 0.55 µs for a
``Lead``), and nothing changes them once made. The same holds on the rest of the hot path
(``leads.lead.Lead`` and ``Consent``, ``leads.email.NormalizedEmail``,
``leads.email_syntax.ValidEmail``, ``rules.model.Verdict``, ``decision.answer.Answer``, the
intake's ``_Prepared``): change a copy (``dataclasses.replace``), never the object.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from gateway.types import AdvertiserId, LeadId


class Decision(enum.StrEnum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    CAPPED = "capped"
    REJECTED = "rejected"


@dataclass(slots=True)  # built per lead: see the module docstring
class DedupCheck:
    """One identity in one dedup scope: a duplicate when its mark is younger than ``window_ms``.

    The mark is field ``field`` of one hash per generation (``keys.seen``): ``keys`` are the
    hashes of every generation the window reaches, newest first; ``keys[0]`` is the current
    generation's (``generation``), where an accepted lead's mark is written. A mark's value is
    its acceptance time in ms since its generation began.
    """

    reason: str  # duplicate.campaign / .advertiser / .channel
    keys: tuple[str, ...]
    field: str
    generation: int
    window_ms: int
    #: How long the current generation's hash must outlive the generation's end: the rule's
    #: longest window.
    retention_ms: int
    #: False for fingerprints under a previous key during a rotation: checked, never written.
    remember: bool = True
    #: The same mark in the legacy layout (``keys.legacy_seen``: weekly generations), read
    #: while it may hold marks younger than the window; "" for none.
    legacy_head: str = ""
    legacy_bucket: int = 0


@dataclass(slots=True)  # built per lead: see the module docstring
class CapCheck:
    """One cap: a fixed counter for a calendar period, or a sliding log for a rolling window."""

    reason: str  # cap.campaign.day …
    key: str
    limit: int
    rolling: bool
    #: Calendar: time until the period ends (the counter's TTL). Rolling: the window length.
    span_ms: int
    #: The cap's holds (``keys.cap_holds``: ping ids scored by their expiry, epoch ms), whose
    #: live ones count as used; "" when no ping can hold room on this cap, which then costs
    #: exactly what it did before pings existed (no key, no command).
    holds: str = ""


@dataclass(frozen=True, slots=True)
class PersonReservation:
    """The cross-advertiser part of one identity, in the person's own slot.

    Suppression (first): refused when the identity is on one of the ``suppress`` lists.
    Network dedup: a duplicate when the person was accepted anywhere less than
    ``network_window_ms`` ago (0 = not checked). Contact pressure: at most ``pressure_limit``
    distinct ``unit`` values (advertisers or campaigns) per ``pressure_window_ms`` (0 = none).
    """

    seen_key: str
    pressure_key: str
    lead_id: LeadId
    unit: str
    now_ms: int
    dry_run: bool
    network_window_ms: int
    network_retention_ms: int
    pressure_limit: int
    pressure_window_ms: int
    #: Suppression: the identity's set of list ids, and the ``(list id, reason)`` pairs this
    #: lead's campaign checks (empty: none). Checked even in test mode; never written here.
    suppressed_key: str = ""
    suppress: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class IdempotencyRef:
    claim_key: str  # partner slot: the key's body digest, across advertisers
    answer_key: str  # advertiser slot: the answer, written with the decision
    body_digest: str
    ttl_ms: int
    #: The lead id this request would use. The claim keeps the first request's, so a retry
    #: after a crash mid-protocol decides under the same id and finds its own reservations.
    lead_id: LeadId | None = None


class HoldMode(enum.Enum):
    """What a request does with a ping's hold (``Hold``)."""

    #: The ping: decide as a test lead would (nothing remembered, nothing counted) and, when
    #: the answer is ``accepted``, hold a place on every cap with holds until ``expires_ms``.
    TAKE = "take"
    #: The post carrying the ping's id: decided as any post, its own live hold counting for
    #: it; the hold is then used up, whatever the answer.
    COMMIT = "commit"


class PingStatus(enum.StrEnum):
    """``DecisionOutcome.ping_status``: what became of a ping's hold."""

    #: TAKE: the ping was accepted and holds its room (in test mode: would hold it).
    HELD = "held"
    #: COMMIT, live hold, post accepted: the room it held is the lead's.
    COMMITTED = "committed"
    #: COMMIT, live hold, post refused (a duplicate, a cap, the person's slot): the room it
    #: held is given back.
    RELEASED = "released"
    #: COMMIT after the hold expired: decided afresh.
    EXPIRED = "expired"
    #: COMMIT of a ping already committed or released: decided afresh.
    USED = "used"
    #: COMMIT of a ping the store does not know (never held, or forgotten): decided afresh.
    UNKNOWN = "unknown"


#: What a ping's record (``keys.ping_record``) becomes once a post used its hold.
PING_RECORD_USED = "used"


@dataclass(slots=True)  # built per ping or post that names a ping: see the module docstring
class Hold:
    """A ping's hold, carried by the ping (TAKE) or by the post naming it (COMMIT); built by
    ``decision.ping`` (``take_hold``, ``commit_hold``). All its keys are in the advertiser's
    slot, with the decision's."""

    ping_id: str
    #: ``keys.ping_record``: the ping's record (``decision.ping.PingRecord``), then ``used``.
    record_key: str
    mode: HoldMode
    #: TAKE: when the hold ends, epoch ms (the holds' score). COMMIT: unused (0).
    expires_ms: int = 0
    #: TAKE: the record text stored when the hold is taken (ids, times, digests; never
    #: personal data), starting with ``<expires_ms>|``. COMMIT: unused.
    record: str = ""
    #: TAKE: how long the record is kept, ms: past the hold's end, so that a late post is
    #: told ``expired`` rather than ``unknown``. COMMIT: unused.
    record_ttl_ms: int = 0


@dataclass(slots=True)  # built per lead: see the module docstring
class DecisionRequest:
    lead_id: LeadId
    now_ms: int
    #: Test mode: decide, remember nothing.
    dry_run: bool
    dedup: tuple[DedupCheck, ...]
    caps: tuple[CapCheck, ...]
    person: tuple[PersonReservation, ...]
    stream_key: str
    #: The delivery record appended to the advertiser's stream when accepted (JSON bytes).
    payload: bytes
    idempotency: IdempotencyRef | None = None
    #: Bookkeeping key in the advertiser slot any script may use as a placeholder KEYS entry.
    slot_anchor: str = ""
    #: The lead-id index entry written when accepted, for advertiser feedback; None: none.
    index: LeadIndexEntry | None = None
    #: Not empty: the lead was rejected before the store (an inactive campaign, the rules) with
    #: these reasons. Only its Idempotency-Key brings it to the store, which checks nothing
    #: and records the answer, so a retry is answered with it (``plan.build_refusal``).
    rejected: tuple[str, ...] = ()
    #: A ping (TAKE) or a post naming one (COMMIT); None: a plain post. A distributed
    #: campaign's lead carries one in each buyer's request that holds or may hold its ping
    #: (``sale_plan.SaleRequest.hold_for``), and one in its ``CampaignReservation``.
    hold: Hold | None = None


@dataclass(slots=True)  # built per lead: see the module docstring
class LeadIndexEntry:
    """What advertiser feedback will need of an accepted lead (``keys.lead_index``): ids and
    times only. ``route``: ``partner|campaign|channel|return_window_ms|feedback_window_ms``,
    ``code``: its code (``keys.lead_route``)."""

    key: str
    routes: str
    field: str
    id_ms: int
    generation_ends_ms: int
    code: int
    route: str
    feedback_window_ms: int


@dataclass(slots=True)  # built per lead: see the module docstring
class DecisionOutcome:
    decision: Decision
    reasons: tuple[str, ...]
    #: The lead id of the answer; on an idempotent replay, the first request's id.
    lead_id: LeadId
    #: True when the answer is the stored answer to an earlier request with the same key.
    replayed: bool = False
    #: A campaign sold to buyers: the buyers (advertisers) the lead was sold to.
    buyers: tuple[AdvertiserId, ...] = ()
    #: A ping or a post naming one: a ``PingStatus`` value; "" for a plain post.
    ping_status: str = ""

    def encode(self, body_digest: str) -> str:
        """The stored form of an idempotent answer (no personal data: ids and codes only);
        the buyers, when there are, after a fifth ``|``; a ping status after a sixth (the
        buyers' part then written, empty or not). ``decide.lua`` writes the same form."""
        parts = [body_digest, self.lead_id, self.decision.value, ",".join(self.reasons)]
        if self.buyers or self.ping_status:
            parts.append(",".join(self.buyers))
        if self.ping_status:
            parts.append(self.ping_status)
        return "|".join(parts)

    @classmethod
    def decode(cls, stored: str) -> tuple[str, DecisionOutcome]:
        """``encode``'s text back, whichever version stored it: answers stored before ping
        statuses (four or five parts) read as having none."""
        digest, lead_id, decision, reasons, *rest = stored.split("|", 5)
        outcome = cls(
            Decision(decision),
            tuple(r for r in reasons.split(",") if r),
            LeadId(lead_id),
            replayed=True,
            buyers=tuple(AdvertiserId(b) for b in rest[0].split(",") if b) if rest else (),
            ping_status=rest[1] if len(rest) > 1 else "",
        )
        return digest, outcome


class ClaimStatus(enum.Enum):
    NEW = "new"  # first use of the key (or a retry whose first attempt decided nothing)
    REPLAY = "replay"  # same key, same body, answer stored: return it
    CONFLICT = "conflict"  # same key, another body


@dataclass(frozen=True, slots=True)
class ClaimResult:
    status: ClaimStatus
    answer: DecisionOutcome | None = None
    #: NEW only: the lead id of an earlier request with this key that stored no answer yet
    #: (it crashed, or it is still deciding); None when this request made the claim.
    lead_id: LeadId | None = None


@dataclass(frozen=True, slots=True)
class CampaignReservation:
    """A distributed campaign's own dedup and caps (IP velocity too), in its slot, for one lead:
    checked, then taken (marks written, caps counted) before the buyers are offered the lead,
    with what each write replaced kept in ``key``, so that a lead no buyer takes gives it all
    back. Taken again under the same lead id (a keyed retry after a crash), it is the lead's
    own: nothing is checked or taken twice."""

    key: str  # keys.campaign_reservation
    lead_id: LeadId
    now_ms: int
    dry_run: bool
    dedup: tuple[DedupCheck, ...]
    caps: tuple[CapCheck, ...]
    #: How long ``key`` is kept: the Idempotency-Key's life for a keyed request (a retry may
    #: find it), the sale lease's otherwise.
    ttl_ms: int
    #: A ping to the campaign (TAKE: checked as in test mode, then a place held on each cap
    #: with holds, nothing else written) or a post naming one (COMMIT: its own live hold
    #: counts for it on each cap, and is used up whatever the answer). In the campaign's slot
    #: the holds sets are the whole truth (``record_key`` unused): a hold is the post's while
    #: its ping id is in them with an end after now. None: a plain lead (live holds still
    #: count on caps that have them).
    hold: Hold | None = None
