"""Ping/post: the record an accepted ping leaves, and the holds a ping or its post carries.

A ping (``HoldMode.TAKE``) is decided as a test lead would be and, when accepted, holds a
place on each of its caps (``keys.cap_holds``) until ``expires_ms``, and leaves a record
(``keys.ping_record``) for its post. The post (``HoldMode.COMMIT``) is a plain post whose own
live hold counts for it; the script uses the hold up atomically, so of two posts naming one
ping exactly one finds it (docs/decision.md, "Ping and post").

The record is text the caller gives and reads back (``PingStore.read_pings``) to match a post
against its ping: ids, the expiry, and an opaque ``match`` (keyed fingerprints and field
digests the caller makes, never raw values). Only its first field matters to the stores: the
expiry, which ``decide.lua`` reads to tell a live hold from an ended one.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.decision.model import PING_RECORD_USED, Hold, HoldMode, PingStatus
from gateway.storage import keys
from gateway.types import AdvertiserId, CampaignId, PartnerId

#: How long a ping's record outlives its hold: a post this late is told ``expired`` (and
#: decided afresh) rather than ``unknown``.
RECORD_GRACE_MS = 15 * 60_000
#: What a record becomes once a post used its hold (committed or released), until it expires.
USED = PING_RECORD_USED


@dataclass(frozen=True, slots=True)
class PingRecord:
    """What an accepted ping leaves for its post. ``match``: the caller's own, opaque here
    (it may hold ``|``; ids never do)."""

    partner: PartnerId
    campaign: CampaignId
    expires_ms: int
    match: str

    def encode(self) -> str:
        """``<expires_ms>|<partner>|<campaign>|<match>``: the expiry first, where
        ``decide.lua`` reads it."""
        return f"{self.expires_ms}|{self.partner}|{self.campaign}|{self.match}"

    @classmethod
    def decode(cls, text: str) -> PingRecord | None:
        """``encode``'s text back; None for a used record (``USED``) or a text that is not a
        record."""
        expires, _, rest = text.partition("|")
        partner, _, rest = rest.partition("|")
        campaign, bar, match = rest.partition("|")
        if not bar or not expires.isdigit():
            return None
        return cls(PartnerId(partner), CampaignId(campaign), int(expires), match)


def ping_state(text: str | None, now_ms: int) -> tuple[PingStatus, PingRecord | None]:
    """What a post naming the ping would find now, from its record's text (``read_pings``):
    ``HELD`` (a live hold) or ``EXPIRED`` with the record, ``USED`` or ``UNKNOWN`` without.
    A read, not a promise: a concurrent post may use the hold before this one's COMMIT, which
    then reports ``used``."""
    if text is None:
        return PingStatus.UNKNOWN, None
    record = PingRecord.decode(text)
    if record is None:
        return (PingStatus.USED if text == USED else PingStatus.UNKNOWN), None
    return (PingStatus.HELD if record.expires_ms > now_ms else PingStatus.EXPIRED), record


def take_hold(advertiser: AdvertiserId, ping_id: str, record: PingRecord, *, now_ms: int) -> Hold:
    """The hold an accepted ping takes until ``record.expires_ms`` (the ping's ``now_ms`` plus
    its campaign's ``ping_ttl_s``), leaving ``record`` for its post."""
    return Hold(
        ping_id,
        keys.ping_record(advertiser, ping_id),
        HoldMode.TAKE,
        record.expires_ms,
        record.encode(),
        record.expires_ms - now_ms + RECORD_GRACE_MS,
    )


def commit_hold(advertiser: AdvertiserId, ping_id: str) -> Hold:
    """The hold a post naming ``ping_id`` uses up, if it is still live."""
    return Hold(ping_id, keys.ping_record(advertiser, ping_id), HoldMode.COMMIT)
