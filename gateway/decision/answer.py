"""``Answer``: what a partner is told about one lead, as the web layer, the metrics, the
decision log and the quality ledger all read it."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.decision.model import Decision
from gateway.types import CampaignId, ChannelId, LeadId


@dataclass(frozen=True, slots=True)
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

    def to_json(self) -> dict[str, object]:
        answer: dict[str, object] = {
            "lead_id": self.lead_id,
            "decision": self.decision.value,
            "reasons": list(self.reasons),
            "ref": self.ref,
            "campaign": self.campaign,
            "channel": self.channel,
            "test": self.test,
        }
        if self.score is not None:
            answer["score"] = self.score
        return answer
