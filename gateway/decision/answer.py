"""``Answer``: what a partner is told about one lead, as the web layer, the metrics, the
decision log and the quality ledger all read it."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.decision.model import Decision
from gateway.types import AdvertiserId, CampaignId, ChannelId, LeadId


@dataclass(frozen=True, slots=True)
class Sale:
    """One buyer's purchase of a lead of a distributed campaign, at its price."""

    buyer: AdvertiserId
    price: float | None


@dataclass(slots=True)  # built per lead: see gateway.decision.model
class Answer:
    """What a partner is told about one lead."""

    lead_id: LeadId
    decision: Decision
    reasons: tuple[str, ...]
    ref: str | None
    campaign: CampaignId
    channel: ChannelId
    test: bool
    replayed: bool = False
    #: The lead's quality score; ``None`` (and absent from the JSON) when the campaign's rule
    #: packs have no scoring rule.
    score: int | None = None
    #: A campaign sold to buyers: the sales (empty: no buyer took it); ``None`` for a
    #: campaign with one advertiser.
    sales: tuple[Sale, ...] | None = None
    #: What the publisher is paid for this lead, when the campaign says and it was accepted.
    payout: float | None = None
    #: The campaign names its buyers to publishers (``sold_to``).
    show_buyers: bool = False
    #: Each buyer's part (``sold`` or a refusal code), for metrics; never shown to publishers.
    offers: tuple[tuple[AdvertiserId, str], ...] = ()
    #: A post naming a ping: what became of the ping (``committed``, ``released``,
    #: ``expired``, ``used``, ``unknown``); a ping: ``held`` when it holds room.
    ping_status: str | None = None

    def to_json(self) -> dict[str, object]:
        answer: dict[str, object] = {
            "lead_id": self.lead_id,
            # A StrEnum is its value (JSON and f-strings write "accepted"): ``.value`` is two
            # Python calls (enum's descriptor), for every answer.
            "decision": self.decision,
            "reasons": list(self.reasons),
            "ref": self.ref,
            "campaign": self.campaign,
            "channel": self.channel,
            "test": self.test,
        }
        if self.score is not None:
            answer["score"] = self.score
        if self.sales is not None:
            answer["buyers"] = len(self.sales)
            if self.show_buyers:
                answer["sold_to"] = [sale.buyer for sale in self.sales]
        if self.payout is not None and self.decision is Decision.ACCEPTED:
            answer["payout"] = self.payout
        if self.ping_status is not None:
            answer["ping_status"] = self.ping_status
        return answer


def probe_status(answer: Answer) -> str:
    """What a check or a ping says of a post made now: ``open`` (it would be accepted),
    ``duplicate``, ``capped``, ``closed`` (the campaign, or every buyer, is not taking leads
    now) or ``rejected`` (a rule, a suppression list)."""
    if answer.decision is Decision.ACCEPTED:
        return "open"
    if (
        answer.decision is Decision.REJECTED
        and answer.reasons
        and all(r in _CLOSED_REASONS for r in answer.reasons)
    ):
        return "closed"
    return answer.decision.value


#: Reasons that say no one is taking leads now, whoever the person is.
_CLOSED_REASONS = frozenset({"campaign.inactive", "buyer.closed", "buyer.disabled"})


def check_json(answer: Answer) -> dict[str, object]:
    """The answer to a pre-ping check: no lead id (nothing was created), the status a post
    would get now and its reasons; for a distributed campaign, how many buyers would take it."""
    body: dict[str, object] = {
        "campaign": answer.campaign,
        "channel": answer.channel,
        "status": probe_status(answer),
        "reasons": list(answer.reasons),
    }
    if answer.sales is not None:
        body["buyers"] = len(answer.sales)
    return body


@dataclass(frozen=True, slots=True)
class PingAnswer:
    """The answer to a ping: its decision as a post's (``answer``), and, when it holds room,
    the id its post names and how long the hold lives."""

    answer: Answer
    ping_id: str | None
    ttl_s: int

    def to_json(self) -> dict[str, object]:
        """A check's answer (``check_json``) and, when the ping holds room, its id first,
        how long the hold lives and the payout; ``buyers`` (a place held at each) only then."""
        answer = self.answer
        checked = check_json(answer)
        if self.ping_id is None:
            checked.pop("buyers", None)
            body = checked
        else:
            body = {"ping_id": self.ping_id, **checked, "expires_in_s": self.ttl_s}
            if answer.payout is not None:
                body["payout"] = answer.payout
        if answer.score is not None:
            body["score"] = answer.score
        if answer.test:
            body["test"] = True
        return body
