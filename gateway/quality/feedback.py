"""Advertiser feedback: an advertiser's verdict on leads it received (no HTTP here).

An advertiser authenticates with its own API keys (``advertisers[].api_keys``; a partner's key
never works here) and reports ``converted``, ``returned`` (with a reason) or ``rejected`` per
lead id. The lead is found through the index ``decide`` wrote at acceptance in the advertiser's
own slot, so a lead id that is unknown, another advertiser's, or past its campaign's feedback
window gets the same answer: nothing tells one from the other. A distributed campaign's lead
sold to several buyers has an index in each buyer's slot: each buyer's verdict is its own
sale's (a return from one does not touch another's). Each status is recorded once
per lead (a repeat answers ``already_recorded`` and counts nothing); a return after the
campaign's return window is refused. What is kept is ids, statuses and times, never personal
data; the advertiser's free-text reason is mapped to a fixed code and then dropped.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from gateway.config.model import Advertiser, Config
from gateway.errors import FieldProblem, InvalidLead, RequestError, ReturnWindowOver, UnknownLead
from gateway.quality.ledger import QualityLedger
from gateway.quality.metrics import STATUSES, FeedbackMetrics, return_reason
from gateway.storage import keys
from gateway.storage.base import FeedbackRef, FeedbackStore
from gateway.types import AdvertiserId, CampaignId

#: Lead ids are UUIDs; anything else cannot be one of ours (and must not reach a key name).
_LEAD_ID = re.compile(r"[0-9A-Za-z-]{1,64}")
_FIELDS = frozenset({"lead_id", "status", "reason", "value"})
MAX_REASON_CHARS = 200


@dataclass(frozen=True, slots=True)
class FeedbackItem:
    lead_id: str
    status: str
    #: The fixed return-reason code (``quality.RETURN_REASONS``); "" unless returned.
    reason: str = ""
    value: float | None = None


@dataclass(frozen=True, slots=True)
class Recorded:
    lead_id: str
    status: str
    #: ``recorded`` now, or ``already_recorded`` (a repeat: nothing changed).
    result: str

    def to_json(self) -> dict[str, object]:
        return {"lead_id": self.lead_id, "status": self.status, "result": self.result}


def parse_item(data: object, where: str = "") -> FeedbackItem:
    """One ``{lead_id, status, reason?, value?}``. Raises ``InvalidLead`` naming every bad
    field (``where`` prefixes the field paths inside a list)."""
    if not isinstance(data, Mapping):
        raise InvalidLead([FieldProblem(where.rstrip("/") or "body", "expected a JSON object")])
    problems: list[FieldProblem] = []
    problems += [
        FieldProblem(f"{where}{str(name)[:64]}", "unknown field")
        for name in sorted(set(map(str, data)) - _FIELDS)[:20]
    ]
    lead_id = data.get("lead_id")
    if not isinstance(lead_id, str) or not _LEAD_ID.fullmatch(lead_id):
        problems.append(FieldProblem(f"{where}lead_id", "expected the lead_id of an answer"))
    status = data.get("status")
    if status not in STATUSES:
        problems.append(FieldProblem(f"{where}status", f"expected one of {', '.join(STATUSES)}"))
    reason = data.get("reason")
    if reason is not None and (not isinstance(reason, str) or len(reason) > MAX_REASON_CHARS):
        problems.append(
            FieldProblem(f"{where}reason", f"expected text of at most {MAX_REASON_CHARS} chars")
        )
    value = data.get("value")
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            value = float(value)  # a postback's query string carries text
    if value is not None and (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value < 0
    ):
        problems.append(FieldProblem(f"{where}value", "expected a number, 0 or more"))
    if problems:
        raise InvalidLead(problems)
    assert isinstance(lead_id, str)
    assert isinstance(status, str)
    code = return_reason(reason if isinstance(reason, str) else None)
    return FeedbackItem(
        lead_id,
        status,
        code if status == "returned" else "",
        float(value) if isinstance(value, int | float) else None,
    )


class FeedbackDesk:
    """Authenticates advertisers and records their feedback; reads the configuration served
    now (``config``) on every call, so a reload changes keys and windows at once.

    ``store``: where verdicts are recorded; ``metrics``/``ledger``: told about each new one;
    ``clock``: epoch seconds."""

    def __init__(
        self,
        config: Callable[[], Config],
        store: FeedbackStore,
        metrics: FeedbackMetrics,
        ledger: QualityLedger,
        clock: Callable[[], float],
    ) -> None:
        self._current = config
        self._store = store
        self._metrics = metrics
        self._ledger = ledger
        self._clock = clock
        self._by_key: dict[str, Advertiser] = {}
        self._config: Config | None = None

    def authenticate(self, api_key: str) -> Advertiser | None:
        """The advertiser holding ``api_key`` (compared by SHA-256, like partners' keys)."""
        config = self._current()
        if config is not self._config:
            self._by_key = {h: a for a in config.advertisers.values() for h in a.api_key_hashes}
            self._config = config
        digest = hashlib.sha256(api_key.encode("utf-8", "surrogatepass")).hexdigest()
        return self._by_key.get(digest)

    async def record(
        self, advertiser: AdvertiserId, items: Sequence[FeedbackItem]
    ) -> list[Recorded | RequestError]:
        """Record each item in one store round trip; one answer or refusal per item, in order.
        Raises ``StoreUnavailable`` (nothing was recorded, or it may have been: a retry is
        safe, statuses are recorded once)."""
        now_ms = int(self._clock() * 1000)
        refs = [
            FeedbackRef(
                keys.lead_index(advertiser, i.lead_id),
                keys.legacy_lead_index(advertiser, i.lead_id),
                keys.lead_feedback(advertiser, i.lead_id),
                i.status,
            )
            for i in items
        ]
        results = await self._store.record_feedback(refs, now_ms) if refs else []
        answers: list[Recorded | RequestError] = []
        for item, (result, index) in zip(items, results, strict=True):
            if result == "unknown":
                answers.append(
                    UnknownLead(
                        "no lead with this id awaits your feedback: it is unknown, not yours, "
                        "or its campaign's feedback window is over"
                    )
                )
                continue
            partner, campaign, _channel, accepted_ms, return_until, _until = index.split("|")
            if result == "window":
                ended = datetime.fromtimestamp(int(return_until) / 1000, UTC)
                answers.append(
                    ReturnWindowOver(
                        f"the return window of campaign {campaign!r} ended at "
                        f"{ended.isoformat(timespec='seconds')}: this lead can no longer be "
                        "returned"
                    )
                )
                continue
            if result == "ok":
                self._metrics.recorded(partner, campaign, item.status, item.reason, item.value)
                sold = self._current().campaigns.get(CampaignId(campaign))
                buyer = advertiser if sold is not None and sold.distribution is not None else ""
                self._ledger.feedback(partner, campaign, item.status, int(accepted_ms), buyer)
            done = "recorded" if result == "ok" else "already_recorded"
            answers.append(Recorded(item.lead_id, item.status, done))
        return answers
