"""Partner quality from advertiser feedback: the metrics and the fixed table of return reasons.

Label values are configured ids (partner, campaign) and fixed codes only: an advertiser's
free-text reason is mapped to one of ``RETURN_REASONS`` (``other`` when it matches none) and
never becomes a label, a log field or a stored value.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge

from gateway.config.model import Config

#: Feedback statuses an advertiser may send (metric label values).
STATUSES = ("converted", "returned", "rejected")

#: Why an advertiser returns a lead: a fixed table (metric label values, report columns).
RETURN_REASONS = (
    "invalid_contact",  # the email bounces, the phone does not exist
    "unreachable",  # valid, but nobody answers
    "duplicate",  # the advertiser already had this person
    "not_interested",  # the person denies asking
    "fake",  # made-up identity, bot, fraud
    "out_of_target",  # outside the campaign's target (area, age, profile)
    "no_consent",  # consent missing or disputed
    "other",
)
#: Common spellings advertisers' CRMs send, mapped to the table.
_ALIASES: Mapping[str, str] = {
    "invalid": "invalid_contact",
    "invalid_email": "invalid_contact",
    "invalid_phone": "invalid_contact",
    "wrong_number": "invalid_contact",
    "bounce": "invalid_contact",
    "bounced": "invalid_contact",
    "no_answer": "unreachable",
    "dup": "duplicate",
    "duplicated": "duplicate",
    "existing_customer": "duplicate",
    "fraud": "fake",
    "bot": "fake",
    "fraudulent": "fake",
    "out_of_area": "out_of_target",
    "underage": "out_of_target",
    "consent": "no_consent",
    "opt_out": "no_consent",
}
_NON_WORD = re.compile(r"[^a-z0-9]+")


def return_reason(text: str | None) -> str:
    """The table's code for an advertiser's reason (free text, any case): ``other`` when it
    names none of them."""
    if not text:
        return "other"
    word = _NON_WORD.sub("_", text.strip().lower()).strip("_")
    if word in RETURN_REASONS:
        return word
    return _ALIASES.get(word, "other")


class FeedbackMetrics:
    """Conversions, returns (by reason) and rejections per partner and campaign, and each
    campaign's CPL, so cost figures are PromQL over ``leadgate_leads_total``. Every
    configured (partner, campaign) pair's series exist at 0 from the start."""

    def __init__(self, config: Config, registry: CollectorRegistry) -> None:
        r = registry
        self.feedback = Counter(
            "leadgate_feedback",
            "Advertiser feedback recorded, by partner, campaign and status "
            "(converted, returned, rejected); repeats are not counted.",
            ["partner", "campaign", "status"],
            registry=r,
        )
        self.returns = Counter(
            "leadgate_returns",
            "Leads returned by the advertiser, by partner, campaign and reason (a fixed table).",
            ["partner", "campaign", "reason"],
            registry=r,
        )
        self.value = Counter(
            "leadgate_conversion_value",
            "Sum of the values advertisers reported with conversions, by partner and campaign.",
            ["partner", "campaign"],
            registry=r,
        )
        self.cpl = Gauge(
            "leadgate_campaign_cpl",
            "The configured cost per accepted lead of a campaign (0 when not set).",
            ["campaign"],
            registry=r,
            multiprocess_mode="livemostrecent",
        )
        self._pairs: set[tuple[str, str]] = set()
        self.configure(config)

    def configure(self, config: Config) -> None:
        for campaign in config.campaigns.values():
            self.cpl.labels(campaign.id).set(campaign.cpl or 0.0)
        for partner in config.partners.values():
            for campaign_id in partner.campaigns:
                if (partner.id, campaign_id) in self._pairs:
                    continue
                self._pairs.add((partner.id, campaign_id))
                for status in STATUSES:
                    self.feedback.labels(partner.id, campaign_id, status)
                for reason in RETURN_REASONS:
                    self.returns.labels(partner.id, campaign_id, reason)
                self.value.labels(partner.id, campaign_id)

    def recorded(
        self, partner: str, campaign: str, status: str, reason: str, value: float | None
    ) -> None:
        """One new feedback on a lead of a configured (partner, campaign); others are not
        counted (the pair left the configuration since the lead was accepted)."""
        if (partner, campaign) not in self._pairs or status not in STATUSES:
            return
        self.feedback.labels(partner, campaign, status).inc()
        if status == "returned":
            code = reason if reason in RETURN_REASONS else "other"
            self.returns.labels(partner, campaign, code).inc()
        if status == "converted" and value:
            self.value.labels(partner, campaign).inc(value)
