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

The match (``ping_match``): the post that follows must be the same lead: its identifiers
must give the pinged fingerprints and the fields the ping carried must be the same
(``mismatches`` names those a post changed). Field values are fingerprinted too, under the
gateway's key (``pingfield`` kind): a postal code alone is no secret, but what the store
keeps stays unreadable without the key.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass

from gateway.decision.model import PING_RECORD_USED, Hold, HoldMode, PingStatus
from gateway.leads.fingerprint import Fingerprinter
from gateway.leads.lead import Lead
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


#: A ping id: ``pg_`` and 22 characters of URL-safe base64 (128 random bits).
PING_ID = re.compile(r"pg_[A-Za-z0-9_-]{22}")


def new_ping_id() -> str:
    """A new ping id: random (it says nothing about the ping), and unguessable, though a
    ping of another partner is never used anyway."""
    return "pg_" + secrets.token_urlsafe(16)


#: The pinged fields a post must repeat, when the ping carried them (the channel always).
MATCHED_FIELDS = ("postal_code", "city", "country")
_FIELD_KIND = "pingfield"


def ping_match(lead: Lead, channel: str, fingerprinter: Fingerprinter) -> str:
    """The match text of a ping (``lead`` is its probe, ``hashed``)."""
    parts = [f"channel={channel}"]
    for kind, digest in sorted(lead.identities.items()):
        # The current key only: a post within the ping's TTL is fingerprinted under it.
        (current, *_) = fingerprinter.digest_lookups(kind, bytes.fromhex(digest))
        parts.append(f"{kind}={current}")
    parts += [f"{name}={fp}" for name, fp in _fields(lead, fingerprinter)]
    return ";".join(parts)


def mismatches(match: str, lead: Lead, channel: str, fingerprinter: Fingerprinter) -> list[str]:
    """The fields of the post ``lead`` (through ``channel``) that differ from its ping's
    ``match``, by name, in the order the ping named them."""
    expected = dict(part.split("=", 1) for part in match.split(";") if part)
    given = {"channel": channel, **dict(_fields(lead, fingerprinter))}
    for kind, value in lead.identities.items():
        given[kind] = fingerprinter.fingerprint(kind, value)
    return [name for name, fp in expected.items() if given.get(name) != fp]


def _fields(lead: Lead, fingerprinter: Fingerprinter) -> list[tuple[str, str]]:
    fields: list[tuple[str, str]] = []
    for name in MATCHED_FIELDS:
        value = getattr(lead, name)
        if value is not None:
            fields.append((name, fingerprinter.fingerprint(_FIELD_KIND, f"{name}={value}")))
    return fields
