"""Erasure: forget one person everywhere the gateway remembers them, in one call.

What a person leaves behind, and how each trace is found without keeping an index of people
(an index would itself be a record of them):

* **dedup marks** (``keys.seen``): a field of one hash per advertiser, scope, campaign or
  channel, generation and bucket. They are enumerated from the configuration: every
  advertiser's campaigns (the distributed campaigns it buys from among them), every channel,
  the advertiser-wide scope, every generation the longest configured window still reaches,
  for the fingerprint of each identity under every fingerprint key still configured (a key
  rotation leaves marks under the previous key), in both the current layout and the legacy
  one (``keys.legacy_seen``, weekly generations) that may still hold marks written before an
  upgrade; and each distributed campaign's own marks in its slot (campaign and channel
  scopes), in the current layout only: they are new with it, no legacy mark exists there.
* **the person's slot** (``keys.person_network_seen``, ``keys.person_pressure``): network
  dedup and contact pressure.
* **queued leads**: every advertiser's delivery queue (new, in flight, waiting for a retry,
  dead letters) is read through and the person's leads are deleted (``Queue.erase``).

Suppression entries (``keys.person_suppressed``) stay: they are how an opt-out is honoured
after the erasure, hold only keyed fingerprints, and are taken off with ``leadgate suppress
remove``. Nothing of the request is written anywhere: the log line and the answer hold counts.

Not covered, by design: keys of a campaign, channel or advertiser removed from the
configuration (they expire with their windows), IP velocity logs (keyed by the IP's
fingerprint and counting an address, not a person; they expire with their window), and a
delivery already on its way to the CRM at the instant of the erasure (it was sent before).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import orjson

from gateway.config.model import Config, DedupScope
from gateway.delivery.queue_base import Erased, Queue
from gateway.errors import InvalidValue
from gateway.leads.email import DEFAULT_PROVIDER_RULES, email_identity, normalize_email
from gateway.leads.fingerprint import Fingerprinter
from gateway.leads.phone import normalize_phone
from gateway.storage import keys
from gateway.storage.base import ErasureStore
from gateway.types import CampaignId, ChannelId, Fingerprint

LOG = logging.getLogger("leadgate.erasure")

#: Keys deleted per store round trip.
_CHUNK = 5_000
#: Stands in for the campaign or channel a scope's key does not name.
_ANY_CAMPAIGN = CampaignId("-")
_ANY_CHANNEL = ChannelId("-")


@dataclass(frozen=True, slots=True)
class Person:
    """The identities to erase, in the forms the gateway fingerprints: the email's identity
    (provider rules applied) and the phone in E.164."""

    email: str | None = None
    phone: str | None = None

    @classmethod
    def parse(cls, email: str | None, phone: str | None, region: str | None = "FR") -> Person:
        """Normalize what an operator typed exactly as a lead's fields are. Raises
        ``InvalidValue`` for a bad value, or when neither is given."""
        if not email and not phone:
            raise InvalidValue("email", "give an email and/or a phone")
        identity = None
        if email:
            try:
                identity = normalize_email(email).identity
            except ValueError as bad:
                raise InvalidValue("email", str(bad)) from None
        e164 = None
        if phone:
            try:
                e164 = normalize_phone(phone, region)
            except ValueError as bad:
                raise InvalidValue("phone", str(bad)) from None
        return cls(identity, e164)

    def identities(self) -> list[tuple[str, str]]:
        found = [("email", self.email), ("phone", self.phone)]
        return [(kind, value) for kind, value in found if value is not None]


@dataclass(frozen=True, slots=True)
class ErasureReport:
    #: Marks of the person that were deleted: dedup marks (hash fields) and the keys of the
    #: person's slot (network dedup, contact pressure).
    keys: int
    queue: Erased
    #: Suppression lists the person stays on (ids).
    suppressed_on: tuple[str, ...]
    seconds: float

    def to_json(self) -> dict[str, object]:
        return {
            "erased": {
                "keys": self.keys,
                "undelivered_leads": self.queue.undelivered,
                "dead_letters": self.queue.dead_letters,
            },
            "still_on_suppression_lists": list(self.suppressed_on),
            "took_ms": round(self.seconds * 1000, 1),
        }

    def lines(self) -> list[str]:
        kept = ", ".join(self.suppressed_on) or "none"
        return [
            f"erased: {self.keys} dedup/person keys, {self.queue.undelivered} undelivered "
            f"leads, {self.queue.dead_letters} dead letters in {self.seconds * 1000:.0f} ms",
            f"still on suppression lists: {kept}",
        ]


def fingerprints(fingerprinter: Fingerprinter, person: Person) -> list[Fingerprint]:
    """The person's fingerprints under the current and every previous key."""
    return [fp for kind, value in person.identities() for fp in fingerprinter.lookups(kind, value)]


def person_keys(fps: Sequence[Fingerprint]) -> list[str]:
    """The keys of the person's own slot: network dedup and contact pressure."""
    return [k for fp in fps for k in (keys.person_network_seen(fp), keys.person_pressure(fp))]


def person_marks(config: Config, fps: Sequence[Fingerprint], now_ms: int) -> list[tuple[str, str]]:
    """Every ``(hash key, field)`` that may hold a dedup mark of these fingerprints: each scope
    of each advertiser, in every generation still alive under the longest configured window,
    in this layout and in the legacy one (weekly generations) until its last hash expired;
    and each distributed campaign's own scopes (this layout only: they never had another)."""
    rules = [rule for c in config.campaigns.values() for rule in c.dedup]
    rules += [
        rule
        for c in config.campaigns.values()
        if c.distribution is not None
        for buyer in c.distribution.buyers
        for rule in buyer.dedup
    ]
    longest_ms = 1000 * max((rule.retention_s for rule in rules), default=0)
    if longest_ms == 0:
        return []
    # A generation's hashes live until it ends plus the retention: one generation more.
    generations = keys.seen_generations(now_ms, longest_ms + keys.SEEN_GENERATION_MS)
    # The legacy layout's hashes, whenever they were written (an erasure does not know when
    # the upgrade happened): every week that can still be alive.
    legacy = keys.seen_generations(
        now_ms, longest_ms + keys.LEGACY_SEEN_GENERATION_MS, keys.LEGACY_SEEN_GENERATION_MS
    )
    channels: list[ChannelId] = list(config.channels)
    campaigns_of: dict[str, list[CampaignId]] = {a: [] for a in config.advertisers}
    distributed: list[CampaignId] = []
    for declared in config.campaigns.values():
        if declared.advertiser is not None:
            campaigns_of.setdefault(declared.advertiser, []).append(declared.id)
        if declared.distribution is not None:
            distributed.append(declared.id)
            for buyer in declared.distribution.buyers:
                campaigns_of.setdefault(buyer.advertiser, []).append(declared.id)
    found: list[tuple[str, str]] = []
    for fp in fps:
        mark = keys.seen_mark(fp)
        for campaign in distributed:
            prefixes = [keys.campaign_seen_prefix(campaign, DedupScope.CAMPAIGN, _ANY_CHANNEL)]
            prefixes += [
                keys.campaign_seen_prefix(campaign, DedupScope.CHANNEL, ch) for ch in channels
            ]
            for prefix in prefixes:
                heads = keys.seen_heads(prefix, mark.key_id, generations)
                found += [(key, mark.field) for key in keys.seen_in(heads, mark)]
        for advertiser in config.advertisers:
            spaces = [
                keys.SeenSpace(advertiser, DedupScope.ADVERTISER, _ANY_CAMPAIGN, _ANY_CHANNEL)
            ]
            spaces += [
                keys.SeenSpace(advertiser, DedupScope.CAMPAIGN, c, _ANY_CHANNEL)
                for c in campaigns_of[advertiser]
            ]
            spaces += [
                keys.SeenSpace(advertiser, DedupScope.CHANNEL, _ANY_CAMPAIGN, ch) for ch in channels
            ]
            for space in spaces:
                found += [(key, mark.field) for key in keys.seen_each(space, mark, generations)]
                head = keys.legacy_seen_head(space.prefix(), mark.key_id)
                found += [
                    (keys.legacy_seen(head, g, mark.legacy_bucket), mark.field) for g in legacy
                ]
    return found


def record_matcher(person: Person) -> Callable[[bytes], bool]:
    """A test of one queued record (the accepted lead's JSON): is it this person's? An email
    matches by identity (``J.Ean+x@gmail.com`` is ``jean@gmail.com``), a phone by E.164.

    A byte search first skips records that cannot match without parsing them: erasure reads
    every queued lead of every advertiser."""
    needles: list[bytes] = []
    if person.phone is not None:
        needles.append(person.phone.encode())
    if person.email is not None:
        domain = person.email.rpartition("@")[2]
        # Every domain whose addresses share this identity's domain (googlemail.com, gmail.com).
        domains = {domain} | {
            d
            for d, rule in DEFAULT_PROVIDER_RULES.items()
            if (rule.canonical_domain or d) == domain
        }
        needles += [f"@{d}".encode() for d in domains]

    def matches(record: bytes) -> bool:
        if not any(needle in record for needle in needles):
            return False
        try:
            doc = orjson.loads(record)
        except orjson.JSONDecodeError:
            return False
        lead = doc.get("lead") if isinstance(doc, dict) else None
        if not isinstance(lead, dict):
            return False
        phone, email = lead.get("phone"), lead.get("email")
        if person.phone is not None and phone == person.phone:
            return True
        return (
            person.email is not None
            and isinstance(email, str)
            and email_identity(email) == person.email
        )

    return matches


@dataclass
class Eraser:
    """Erases people from a store and, when there is one, its delivery queue."""

    config: Config
    fingerprinter: Fingerprinter
    store: ErasureStore
    queue: Queue | None = None
    #: Called with each finished report (metrics); never given the person.
    on_erased: list[Callable[[ErasureReport], None]] = field(default_factory=list)
    #: Epoch seconds: which dedup generations may still hold marks.
    clock: Callable[[], float] = time.time

    async def erase(self, person: Person) -> ErasureReport:
        """Delete every trace of ``person``. Raises ``StoreError``/``StoreUnavailable``; a
        retry is safe (an erasure of what is already gone finds nothing)."""
        started = time.perf_counter()
        fps = fingerprints(self.fingerprinter, person)
        # The queue first: once its leads are gone, no delivery can bring them back, and a
        # failure half-way leaves the marks (which hold no personal data) to a retry.
        erased = Erased()
        if self.queue is not None:
            matches = record_matcher(person)
            for advertiser in self.config.advertisers:
                erased = erased + await self.queue.erase(advertiser, matches)
        deleted = await self.store.erase_keys(person_keys(fps))
        marks = person_marks(self.config, fps, int(self.clock() * 1000))
        for start in range(0, len(marks), _CHUNK):
            deleted += await self.store.erase_fields(marks[start : start + _CHUNK])
        kept = await self.store.suppression_lists([keys.person_suppressed(fp) for fp in fps])
        report = ErasureReport(deleted, erased, tuple(sorted(kept)), time.perf_counter() - started)
        LOG.info(
            "person erased",
            extra={
                "fields": {
                    "keys": report.keys,
                    "undelivered_leads": erased.undelivered,
                    "dead_letters": erased.dead_letters,
                    "took_ms": round(report.seconds * 1000, 1),
                }
            },
        )
        for hook in self.on_erased:
            hook(report)
        return report
