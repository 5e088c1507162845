"""What the gateway tells ops: Prometheus metrics and one JSON log line per decision.

Label values come only from configured ids and fixed code tables, never from request input;
log lines carry ids, codes and timings, never an email, phone, name, IP or body.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

import orjson
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from gateway import __version__
from gateway.config.model import Config, Partner
from gateway.decision.model import Decision
from gateway.errors import RequestError

if TYPE_CHECKING:
    from gateway.intake import Answer

DECISION_LOG = logging.getLogger("leadgate.decision")
_LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts``, ``level``, ``logger``, ``msg`` and the record's
    ``fields`` (a dict passed as ``extra={"fields": …}``)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            line.update(fields)
        if record.exc_info and record.exc_info[0] is not None:
            line["error"] = record.exc_info[0].__name__
        return orjson.dumps(line).decode()


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


class Observer:
    """Metrics (in its own registry, so several apps can live in one test process) and the
    decision log."""

    def __init__(self, config: Config, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.leads = Counter(
            "leadgate_leads",
            "Leads decided, by partner, campaign, channel and decision.",
            ["partner", "campaign", "channel", "decision"],
            registry=r,
        )
        self.reasons = Counter(
            "leadgate_lead_reasons",
            "Reason codes of leads not accepted, by partner, campaign and reason.",
            ["partner", "campaign", "reason"],
            registry=r,
        )
        self.refused = Counter(
            "leadgate_requests_refused",
            "Requests refused before a decision, by partner ('' when unknown) and HTTP status.",
            ["partner", "status"],
            registry=r,
        )
        self.decision_seconds = Histogram(
            "leadgate_decision_duration_seconds",
            "Time to decide one request (a lead or a batch), store round trips included.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.store_errors = Counter(
            "leadgate_store_unavailable",
            "Requests answered 503 because the decision store could not be reached.",
            registry=r,
        )
        info = Gauge("leadgate_build_info", "Build information.", ["version"], registry=r)
        info.labels(__version__).set(1)
        self.config_info = Gauge(
            "leadgate_config_loaded_timestamp_seconds",
            "When the running configuration was loaded.",
            registry=r,
        )
        self.config_info.set(time.time())
        # Known label sets start at 0 so rates exist from the first scrape.
        for partner in config.partners.values():
            for campaign in partner.campaigns:
                for channel in partner.channels:
                    for decision in Decision:
                        self.leads.labels(partner.id, campaign, channel, decision.value)

    def decisions(
        self, partner: Partner, answers: Sequence[Answer | RequestError], elapsed_s: float
    ) -> None:
        self.decision_seconds.observe(elapsed_s)
        latency_ms = round(elapsed_s * 1000, 3)
        for answer in answers:
            if isinstance(answer, RequestError):
                self.refused.labels(partner.id, str(answer.status)).inc()
                continue
            self.leads.labels(partner.id, answer.campaign, answer.channel, answer.decision).inc()
            for reason in answer.reasons:
                self.reasons.labels(partner.id, answer.campaign, reason).inc()
            if DECISION_LOG.isEnabledFor(logging.INFO):
                DECISION_LOG.info(
                    "decision",
                    extra={
                        "fields": {
                            "lead_id": answer.lead_id,
                            "partner": partner.id,
                            "campaign": answer.campaign,
                            "channel": answer.channel,
                            "decision": answer.decision.value,
                            "reasons": list(answer.reasons),
                            "test": answer.test,
                            "replayed": answer.replayed,
                            "latency_ms": latency_ms,
                        }
                    },
                )
