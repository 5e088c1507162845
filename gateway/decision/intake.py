"""Lead intake: from a partner's parsed request to the answer it gets (no HTTP here).

The web handlers parse the transport (JSON, form, query) and call ``Intake``; ``Intake`` checks
what the partner may do, validates and normalizes the lead, runs the campaign's rules, plans
the decision and runs it (``decision.engine``), and tells its recorders what became of each
request (the metrics and decision log, the quality ledger). Errors are raised from the
``gateway.errors`` tree; the web layer renders them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import hashlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from gateway.config.model import Buyer, Config, Partner
from gateway.decision.answer import Answer, PingAnswer, Sale
from gateway.decision.distribution import EndpointView, NoEndpointView, unsold
from gateway.decision.engine import DecisionEngine
from gateway.decision.model import (
    Decision,
    DecisionOutcome,
    DecisionRequest,
    Hold,
    HoldMode,
    PingStatus,
)
from gateway.decision.ping import (
    PING_ID,
    PingRecord,
    commit_hold,
    mismatches,
    new_ping_id,
    ping_match,
    ping_state,
    take_hold,
)
from gateway.decision.plan import Idempotency, Plan, build_refusal, build_request, digest
from gateway.decision.sale_plan import NoOffer, SalePing, SalePlan, SaleRequest, build_sale
from gateway.decision.waterfall import SaleResult, Waterfall
from gateway.errors import (
    FieldProblem,
    FingerprintKeyNotHashed,
    Forbidden,
    IdempotencyConflict,
    InvalidLead,
    PingMismatch,
    RequestError,
    detached,
)
from gateway.leads.fingerprint import Fingerprinter
from gateway.leads.ids import new_lead_id
from gateway.leads.lead import Lead
from gateway.leads.parse import parse_lead, parse_probe
from gateway.rules.model import Verdict
from gateway.storage import keys
from gateway.storage.base import PingStore
from gateway.types import AdvertiserId, ChannelId

Clock = Callable[[], float]
#: A batch's leads are prepared this many at a time between two turns of the event loop.
PREPARE_SLICE = 50


class Recorder(Protocol):
    """Told what became of every request, on the decision path (no I/O, no awaits): the
    metrics and the decision log (``observe.metrics.Observer``), the partner quality ledger
    (``quality.ledger.QualityLedger``)."""

    def refused(self, partner: Partner, error: RequestError) -> None:
        """One lead posted alone refused before a decision (invalid, campaign not open)."""
        ...

    def decided(
        self,
        partner: Partner,
        answers: Sequence[Answer | RequestError],
        elapsed_s: float,
        now_s: float,
    ) -> None:
        """The answers of one request (a batch's refused items among them), how long the
        request took, and when it was decided (epoch seconds)."""
        ...

    def probed(
        self, partner: Partner, kind: str, answer: Answer | RequestError, elapsed_s: float
    ) -> None:
        """The answer to one probe (``kind``: ``check`` or ``ping``) and how long it took: a
        probe is no lead, and is never counted as one."""
        ...


class Probe(enum.Enum):
    """What a request asks: a post decides a lead; a check and a ping ask about one known
    only by its hashed identifiers (docs/api.md)."""

    NONE = "post"
    CHECK = "check"
    PING = "ping"


@dataclass(slots=True)  # built per lead: see gateway.decision.model
class _Prepared:
    lead: Lead
    channel: ChannelId
    #: None: rejected without the store (inactive, rules) and no Idempotency-Key to record.
    request: DecisionRequest | None
    verdict: Verdict | None = None  # the campaign's rules' (None: the campaign has none)
    #: A distributed campaign's lead: its sale (``decision.waterfall``), or its answer when no
    #: buyer may be offered it (decided without the store, but for recording its key).
    sale: SaleRequest | None = None
    decided: SaleResult | None = None
    #: A post naming a ping the store will not be asked about (``unknown``): its status.
    ping_status: str = ""


class Intake:
    """Decides leads for the configuration it serves (``replace_config`` swaps it).

    ``recorders``: told about every request (metrics, ledger); ``clock``: epoch seconds;
    ``waterfall``: sells the leads of distributed campaigns (default: over ``engine``'s store,
    which must then be a ``SaleStore``); ``endpoints``: which buyers' endpoints are disabled;
    ``pings``: where posts naming a ping read its record (none: no pings)."""

    def __init__(
        self,
        config: Config,
        engine: DecisionEngine,
        fingerprinter: Fingerprinter,
        *,
        recorders: Sequence[Recorder] = (),
        clock: Clock = time.time,
        waterfall: Waterfall | None = None,
        endpoints: EndpointView | None = None,
        pings: PingStore | None = None,
    ) -> None:
        self._plan = Plan(config)
        self._sales = SalePlan(config)
        self._engine = engine
        self._waterfall = waterfall
        self._endpoints: EndpointView = endpoints or NoEndpointView()
        self._pings = pings
        self._fingerprinter = fingerprinter
        self._recorders = tuple(recorders)
        self.clock = clock

    @property
    def config(self) -> Config:
        """The configuration served now."""
        return self._plan.config

    @property
    def plan(self) -> Plan:
        """The configuration served now, compiled (``decision.plan.Plan``)."""
        return self._plan

    def replace_config(self, config: Config) -> None:
        """Serve ``config`` from now on (a reload): its compiled plan replaces the old one
        whole, in one step of the event loop. A request already under way finishes with the
        plan it started with, so no request ever sees half of each configuration."""
        self._plan = Plan(config)
        self._sales = SalePlan(config)

    def authenticate(self, api_key: str) -> Partner | None:
        """The partner holding ``api_key``, or None. Keys are stored as SHA-256 hashes and
        looked up by hash: the timing of a dict lookup can only reveal something about the
        hash of a guess, never about a real key."""
        key_hash = hashlib.sha256(api_key.encode("utf-8", "surrogatepass")).hexdigest()
        return self._plan.partner(key_hash)

    async def submit(
        self,
        partner: Partner,
        data: Mapping[str, object],
        *,
        idempotency_key: str | None = None,
        body: bytes = b"",
    ) -> Answer:
        """Decide one lead. Raises ``InvalidLead``, ``Forbidden``, ``IdempotencyConflict`` or
        ``StoreUnavailable``."""
        started = time.perf_counter()
        now_s = self.clock()
        plan = self._plan
        idem = (
            None
            if idempotency_key is None
            else self._idempotency(plan, idempotency_key, body, None)
        )
        try:
            named = data.get("ping_id")
            ping_id = None if named is None else _ping_id(named, "")
            prepared = self._prepare(plan, partner, data, now_s, idem, "", ping_id)
            request, sale = prepared.request, prepared.sale
            if request is not None and request.hold is not None:
                prepared = await self._match_ping(partner, prepared, request, request.hold)
            elif sale is not None and ping_id is not None and self._takes_pings(prepared):
                prepared = await self._match_sale_ping(partner, prepared, sale, ping_id)
        except RequestError as refused:
            # Counted per partner like a lead refused inside a batch: ops see which partner
            # sends invalid leads, whichever endpoint it posts to.
            for recorder in self._recorders:
                recorder.refused(partner, refused)
            raise
        (answer,) = await self._run(partner, [prepared], started, now_s)
        if isinstance(answer, RequestError):
            raise answer
        return answer

    async def check(self, partner: Partner, data: Mapping[str, object]) -> Answer:
        """A pre-ping check: would a post of the person these hashed identifiers name be
        accepted now? Decided as a test lead is (every dedup scope, cap and opening checked,
        nothing reserved or remembered). Raises ``InvalidLead``, ``Forbidden``,
        ``FingerprintKeyNotHashed`` or ``StoreUnavailable``."""
        started = time.perf_counter()
        now_s = self.clock()
        plan = self._plan
        lead, channel = self._parse_probe(partner, data, plan, now_s, Probe.CHECK)
        # Test mode: checked, never written, whatever the publisher sent as test.
        prepared = self._prepare_lead(
            plan, partner, dataclasses.replace(lead, test=True), channel, now_s, None
        )
        (answer,) = await self._run(partner, [prepared], started, now_s, Probe.CHECK)
        if isinstance(answer, RequestError):
            raise answer
        return answer

    async def ping(self, partner: Partner, data: Mapping[str, object]) -> PingAnswer:
        """A ping: decided as its post would be now on what it carries (rules that need the
        person wait for the post) and, when accepted, room held on every cap for the
        campaign's ``ping_ttl_s`` and a record left for the post to match. Raises
        ``InvalidLead`` (also for a campaign that takes no pings), ``Forbidden``,
        ``FingerprintKeyNotHashed`` or ``StoreUnavailable``."""
        started = time.perf_counter()
        now_s = self.clock()
        plan = self._plan
        lead, channel = self._parse_probe(partner, data, plan, now_s, Probe.PING)
        campaign = plan.config.campaigns[lead.campaign]
        ping_id = new_ping_id()
        now_ms = int(now_s * 1000)
        record = PingRecord(
            partner.id,
            campaign.id,
            now_ms + campaign.ping_ttl_s * 1000,
            ping_match(lead, channel, self._fingerprinter),
        )
        if campaign.advertiser is not None:
            hold = take_hold(campaign.advertiser, ping_id, record, now_ms=now_ms)
            prepared = self._prepare_lead(plan, partner, lead, channel, now_s, None, hold)
        else:
            # Sold to buyers: the waterfall finds those that would buy it now and holds a
            # place at each (and on the campaign's own caps).
            sale_ping = SalePing(ping_id, HoldMode.TAKE, record)
            prepared = self._prepare_lead(
                plan, partner, lead, channel, now_s, None, sale_ping=sale_ping
            )
        (answer,) = await self._run(partner, [prepared], started, now_s, Probe.PING)
        if isinstance(answer, RequestError):
            raise answer
        held = answer.decision is Decision.ACCEPTED
        return PingAnswer(answer, ping_id if held else None, campaign.ping_ttl_s)

    def _parse_probe(
        self, partner: Partner, data: Mapping[str, object], plan: Plan, now_s: float, probe: Probe
    ) -> tuple[Lead, ChannelId]:
        """A check's or a ping's probe (``parse_probe``) and its channel; a refusal is told to
        the recorders as the probe's answer, then raised."""
        try:
            if not self._fingerprinter.digest_ready:
                raise FingerprintKeyNotHashed(
                    "the gateway's fingerprint key is not a sha256 key: hashed identifiers "
                    "cannot be matched yet (docs/configuration.md, 'Moving to a sha256 key')"
                )
            ping = probe is Probe.PING
            lead, channel = self._parse(
                partner,
                data,
                "",
                lambda: parse_probe(data, plan.config.campaigns, ping=ping, now_s=now_s),
            )
            campaign = plan.config.campaigns[lead.campaign]
            if ping and campaign.ping_ttl_s <= 0:
                raise InvalidLead(
                    [FieldProblem("campaign", "this campaign takes no pings: post the lead")]
                )
        except RequestError as refused:
            for recorder in self._recorders:
                recorder.probed(partner, probe.value, refused, 0.0)
            raise
        return lead, channel

    async def submit_batch(
        self,
        partner: Partner,
        items: Sequence[object],
        *,
        idempotency_key: str | None = None,
        body: bytes = b"",
    ) -> list[Answer | RequestError]:
        """Decide many leads in one pipelined pass; one answer or error per item, in order."""
        started = time.perf_counter()
        now_s = self.clock()
        plan = self._plan
        prepared: list[_Prepared | RequestError] = []
        for index, item in enumerate(items):
            if index and index % PREPARE_SLICE == 0:
                # Preparing a lead costs ~0.2 ms: a 1,000-lead batch in one go would hold the
                # event loop for ~200 ms, and every other partner and /healthz with it.
                await asyncio.sleep(0)
            where = f"leads/{index}/"
            try:
                # JSON gives dicts: the ABC's isinstance (a Python call) only for anything else.
                if type(item) is not dict and not isinstance(item, Mapping):
                    raise InvalidLead([FieldProblem(f"leads/{index}", "expected a JSON object")])
                if item.get("ping_id") is not None:
                    raise InvalidLead(
                        [
                            FieldProblem(
                                f"{where}ping_id",
                                "a batch takes no ping_id: post each pinged lead on its own",
                            )
                        ]
                    )
                idem = (
                    None
                    if idempotency_key is None
                    else self._idempotency(plan, idempotency_key, body, index)
                )
                prepared.append(self._prepare(plan, partner, item, now_s, idem, where))
            except RequestError as refused:
                prepared.append(detached(refused))
        return await self._run(partner, prepared, started, now_s)

    def _idempotency(self, plan: Plan, key: str, body: bytes, index: int | None) -> Idempotency:
        """A request's Idempotency-Key, hashed (its callers call it only for a key: a call a
        lead saved on the hot path)."""
        # A space cannot occur in a key (printable ASCII without it), so a batch item's key
        # can never collide with a key a single post could send.
        scoped = key if index is None else f"{key} {index}"
        return Idempotency(
            digest(scoped.encode()), digest(body), plan.config.server.idempotency_ttl_s
        )

    def _prepare(
        self,
        plan: Plan,
        partner: Partner,
        data: Mapping[str, object],
        now_s: float,
        idem: Idempotency | None,
        where: str,
        ping_id: str | None = None,
    ) -> _Prepared:
        lead, channel = self._parse(
            partner,
            data,
            where,
            lambda: parse_lead(data, plan.config.campaigns, field_prefix=where, now_s=now_s),
        )
        campaign = plan.config.campaigns[lead.campaign]
        hold, naming = None, False
        if ping_id is not None and campaign.ping_ttl_s:
            if campaign.advertiser is not None:
                # The store uses the ping's hold up atomically and says what it found; a ping
                # of another campaign is no ping of this one (its record is another key).
                hold = commit_hold(campaign.advertiser, ping_id)
            else:
                naming = True  # its ping is read and matched at each buyer (_match_sale_ping)
        prepared = self._prepare_lead(
            plan, partner, lead, channel, now_s, idem, hold, naming=naming
        )
        if ping_id is not None and hold is None and not naming:
            return dataclasses.replace(prepared, ping_status=PingStatus.UNKNOWN.value)
        return prepared

    def _takes_pings(self, prepared: _Prepared) -> bool:
        """Whether the campaign of ``prepared`` takes pings (of one that takes none, a post's
        ``ping_id`` names no record: it is ``unknown`` already, ``_prepare``)."""
        return self._plan.config.campaigns[prepared.lead.campaign].ping_ttl_s > 0

    async def _match_ping(
        self, partner: Partner, prepared: _Prepared, request: DecisionRequest, hold: Hold
    ) -> _Prepared:
        """A post naming a ping, matched against the ping's record (``_matched``); a ping of
        another partner or campaign is no ping of this one (decided afresh, ``unknown``)."""
        if self._pings is not None:
            (text,) = await self._pings.read_pings([hold.record_key], request.now_ms)
            status, record = ping_state(text, request.now_ms)
            if self._matched(partner, prepared, record, status is PingStatus.HELD):
                return prepared
        return dataclasses.replace(
            prepared,
            request=dataclasses.replace(request, hold=None),
            ping_status=PingStatus.UNKNOWN.value,
        )

    async def _match_sale_ping(
        self, partner: Partner, prepared: _Prepared, sale: SaleRequest, ping_id: str
    ) -> _Prepared:
        """A post to a distributed campaign naming a ping: its record read at every buyer
        (one round trip), matched as ``_match_ping`` does, and the sale told which buyers
        hold it (``SaleRequest.naming``)."""
        unknown = dataclasses.replace(prepared, ping_status=PingStatus.UNKNOWN.value)
        if self._pings is None:
            return unknown
        buyers = [b.advertiser for b in sale.requests.buyers]
        texts = await self._pings.read_pings(
            [keys.ping_record(b, ping_id) for b in buyers], sale.now_ms
        )
        states = [ping_state(text, sale.now_ms) for text in texts]
        record = next((r for _, r in states if r is not None), None)
        held = tuple(b for b, (status, _) in zip(buyers, states, strict=True) if status is
                     PingStatus.HELD)  # fmt: skip
        if not self._matched(partner, prepared, record, bool(held)):
            return unknown
        found = tuple(b for b, text in zip(buyers, texts, strict=True) if text is not None)
        seen = {status for status, _ in states}
        status = next(
            (s for s in (PingStatus.EXPIRED, PingStatus.USED) if s in seen), PingStatus.UNKNOWN
        )
        ping = SalePing(ping_id, HoldMode.COMMIT, found=found, held=held, status=status.value)
        return dataclasses.replace(prepared, sale=sale.naming(ping))

    def _matched(
        self, partner: Partner, prepared: _Prepared, record: PingRecord | None, live: bool
    ) -> bool:
        """Whether a post may name the ping ``record`` is of (False: another partner's or
        campaign's); ``PingMismatch`` for a post that is not the pinged lead while the ping
        holds room (``live``)."""
        if record is None:
            return True  # used, unknown: the store says which
        if record.partner != partner.id or record.campaign != prepared.lead.campaign:
            return False
        if live:
            differ = mismatches(record.match, prepared.lead, prepared.channel, self._fingerprinter)
            if differ:
                raise PingMismatch([FieldProblem(name, "differs from the ping") for name in differ])
        return True

    def _parse(
        self,
        partner: Partner,
        data: Mapping[str, object],
        where: str,
        parse: Callable[[], Lead],
    ) -> tuple[Lead, ChannelId]:
        """The lead ``parse`` makes of ``data`` and its channel, resolved for ``partner``."""
        campaign_id = data.get("campaign")
        if isinstance(campaign_id, str) and campaign_id and campaign_id not in partner.campaigns:
            # Same answer whether the campaign exists or not: partners must not discover
            # the network's other campaigns.
            raise Forbidden("the campaign is not open to this partner")
        channel_raw = data.get("channel")
        problems: list[FieldProblem] = []
        channel = partner.default_channel
        if channel_raw not in (None, ""):
            if isinstance(channel_raw, str) and channel_raw in partner.channels:
                channel = ChannelId(channel_raw)
            else:
                problems.append(
                    FieldProblem(f"{where}channel", "not one of this partner's channels")
                )
        try:
            lead = parse()
        except InvalidLead as invalid:
            # One message per field: the lead's own check wins over ours (it knows the type).
            named = {p.field for p in invalid.problems}
            raise InvalidLead(
                [p for p in problems if p.field not in named] + invalid.problems
            ) from None
        if problems:
            raise InvalidLead(problems)
        return lead, channel

    def _prepare_lead(
        self,
        plan: Plan,
        partner: Partner,
        lead: Lead,
        channel: ChannelId,
        now_s: float,
        idem: Idempotency | None,
        hold: Hold | None = None,
        *,
        sale_ping: SalePing | None = None,
        naming: bool = False,
    ) -> _Prepared:
        """``hold``: a single-advertiser campaign's ping (TAKE) or the hold of the ping its
        post names (COMMIT); ``sale_ping``: a ping to a campaign sold to buyers; ``naming``:
        a post to one naming a ping."""
        campaign = plan.config.campaigns[lead.campaign]
        verdict = None
        rejected: tuple[str, ...] = ()
        if not campaign.is_active(now_s):
            rejected = ("campaign.inactive",)
        elif campaign.rules is not None:
            # Pure and in-process: a lead the rules reject costs the store nothing, unless
            # its Idempotency-Key must be recorded. A probe is judged on what it carries: the
            # rules that need the person wait for the post.
            rules = campaign.rules
            if lead.hashed:
                verdict = rules.evaluate_probe(
                    lead, now_s, lead.unknown, channel=channel, partner=partner.id
                )
            else:
                verdict = rules.evaluate(lead, now_s, channel=channel, partner=partner.id)
            if verdict.rejected:
                rejected = verdict.reasons
        if rejected and hold is not None and hold.mode is HoldMode.COMMIT:
            # A post naming a ping, refused before the store: the store still hears of it, to
            # give the ping's room back (and record the answer under its key, if any).
            request = build_request(
                lead=lead, lead_id=new_lead_id(), campaign=campaign, partner=partner,
                channel=channel, pressure=plan.config.contact_pressure,
                fingerprinter=self._fingerprinter, now_s=now_s, idempotency=idem, plan=plan,
                hold=hold,
            )  # fmt: skip
            refused = dataclasses.replace(request, person=(), rejected=rejected)
            return _Prepared(lead, channel, refused, verdict)
        if rejected and naming:
            # The same on a campaign sold to buyers: its sale, offered to no buyer, gives the
            # places its ping holds back (decision.waterfall).
            return self._prepare_sale(
                plan, partner, lead, channel, now_s, idem, verdict, naming=True, rejected=rejected
            )
        if rejected:
            if idem is None or lead.test:  # test mode remembers nothing, not even a key
                return _Prepared(lead, channel, None, verdict)
            # Every answer is replayable (docs/api.md): the store records this one under the
            # key, and answers a retry with it or a key reused with another body with a
            # conflict, whatever the campaign's state or rules are by then.
            refusal = build_refusal(
                lead_id=new_lead_id(),
                campaign=campaign,
                partner=partner,
                now_s=now_s,
                idempotency=idem,
                reasons=rejected,
            )
            return _Prepared(lead, channel, refusal, verdict)
        if campaign.distribution is not None:
            return self._prepare_sale(
                plan, partner, lead, channel, now_s, idem, verdict, sale_ping, naming=naming
            )
        request = build_request(
            lead=lead,
            lead_id=new_lead_id(),
            campaign=campaign,
            partner=partner,
            channel=channel,
            pressure=plan.config.contact_pressure,
            fingerprinter=self._fingerprinter,
            now_s=now_s,
            idempotency=idem,
            plan=plan,
            hold=hold,
        )
        return _Prepared(lead, channel, request, verdict)

    def _prepare_sale(
        self,
        plan: Plan,
        partner: Partner,
        lead: Lead,
        channel: ChannelId,
        now_s: float,
        idem: Idempotency | None,
        verdict: Verdict | None,
        sale_ping: SalePing | None = None,
        *,
        naming: bool = False,
        rejected: tuple[str, ...] = (),
    ) -> _Prepared:
        """``naming``: a post naming a ping; ``rejected``: one the gateway refused already
        (both as ``build_sale``'s): its sale is built whatever, to give back what its ping
        holds."""
        campaign = plan.config.campaigns[lead.campaign]
        sale = build_sale(
            lead=lead,
            lead_id=new_lead_id(),
            campaign=campaign,
            partner=partner,
            channel=channel,
            pressure=plan.config.contact_pressure,
            fingerprinter=self._fingerprinter,
            now_s=now_s,
            lease_s=plan.config.server.sale_lease_s,
            sales=self._sales,
            endpoints=self._endpoints,
            idempotency=idem,
            ping=sale_ping,
            naming=naming,
            rejected=rejected,
        )
        if isinstance(sale, NoOffer):
            decision, reasons = unsold(refusal for _, refusal in sale.passed)
            outcome = DecisionOutcome(decision, reasons, new_lead_id())
            offers = tuple((buyer, refusal.value) for buyer, refusal in sale.passed)
            decided = SaleResult(outcome, offers)
            if idem is None or lead.test:
                return _Prepared(lead, channel, None, verdict, decided=decided)
            # Replayable like every answer: recorded under its key (always ``rejected``: the
            # buyers' filters, hours and endpoints are the gateway's own refusals).
            refusal = build_refusal(
                lead_id=outcome.lead_id, campaign=campaign, partner=partner, now_s=now_s,
                idempotency=idem, reasons=reasons,
            )  # fmt: skip
            return _Prepared(lead, channel, refusal, verdict, decided=decided)
        return _Prepared(lead, channel, None, verdict, sale=sale)

    async def _decide(
        self, prepared: Sequence[_Prepared | RequestError]
    ) -> tuple[list[DecisionOutcome | None], list[SaleResult | RequestError]]:
        """The store's part: single-advertiser leads through the engine, distributed ones
        through the waterfall, both at once (their round trips share the pipeline)."""
        if len(prepared) == 1:
            # A lead posted alone (the common case): what the lines below come to for it.
            (item,) = prepared
            if isinstance(item, _Prepared) and item.sale is None:
                request = item.request
                return (await self._engine.run([request]) if request is not None else []), []
        singles = [p.request for p in prepared if isinstance(p, _Prepared) and p.request]
        sales = [p.sale for p in prepared if isinstance(p, _Prepared) and p.sale]
        if not sales:
            return (await self._engine.run(singles) if singles else []), []
        waterfall = self._waterfall
        if waterfall is None:
            raise RuntimeError("a distributed campaign's leads need a Waterfall")
        if not singles:
            return [], await waterfall.run(sales)
        # `gather` gives a list where its type says a tuple, which the compiled module
        # (setup.py) would refuse: awaited as Any, then unpacked.
        both: Any = asyncio.gather(self._engine.run(singles), waterfall.run(sales))
        decided, sold = await both
        return decided, sold

    async def _run(
        self,
        partner: Partner,
        prepared: Sequence[_Prepared | RequestError],
        started: float,
        now_s: float,
        probe: Probe = Probe.NONE,
    ) -> list[Answer | RequestError]:
        decided, sold = await self._decide(prepared)
        outcomes, sales = iter(decided), iter(sold)
        config = self._plan.config
        answers: list[Answer | RequestError] = []
        for item in prepared:
            if isinstance(item, RequestError):
                answers.append(item)
                continue
            if item.sale is not None:
                result = next(sales)
                if isinstance(result, RequestError):
                    answers.append(result)
                else:
                    answers.append(_sold_answer(item, result, config))
                continue
            outcome: DecisionOutcome | None
            if item.request is None:
                if item.decided is not None:  # no buyer may be offered it, no key to record
                    answers.append(_sold_answer(item, item.decided, config))
                    continue
                why = item.verdict.reasons if item.verdict is not None else ("campaign.inactive",)
                outcome = DecisionOutcome(Decision.REJECTED, why, new_lead_id())
            else:
                outcome = next(outcomes)
            if outcome is None:
                answers.append(
                    IdempotencyConflict("this Idempotency-Key was used with another body")
                )
                continue
            campaign = config.campaigns.get(item.lead.campaign)
            if campaign is not None and campaign.distribution is not None:
                # A distributed campaign's lead rejected before its buyers, recorded under its
                # key: the buyers' part is the one decided in the gateway (none on a replay).
                offers = item.decided.offers if item.decided and not outcome.replayed else ()
                answers.append(_sold_answer(item, SaleResult(outcome, offers), config))
                continue
            answer = Answer(
                lead_id=outcome.lead_id,
                decision=outcome.decision,
                reasons=outcome.reasons,
                ref=item.lead.ref,
                campaign=item.lead.campaign,
                channel=item.channel,
                test=item.lead.test,
                replayed=outcome.replayed,
                score=item.verdict.score if item.verdict is not None else None,
                payout=campaign.payout if campaign is not None else None,
                ping_status=outcome.ping_status or item.ping_status or None,
            )
            answers.append(answer)
        elapsed_s = time.perf_counter() - started
        if probe is Probe.NONE:
            for recorder in self._recorders:
                recorder.decided(partner, answers, elapsed_s, now_s)
        else:
            for recorder in self._recorders:
                recorder.probed(partner, probe.value, answers[0], elapsed_s)
        return answers


def _sold_answer(item: _Prepared, result: SaleResult, config: Config) -> Answer:
    """The answer to a distributed campaign's lead: its buyers and their prices (the
    campaign's current ones: a replay tells the buyers of the first answer)."""
    outcome = result.outcome
    campaign = config.campaigns.get(item.lead.campaign)
    distribution = campaign.distribution if campaign is not None else None
    buyers = distribution.buyers if distribution is not None else ()
    return Answer(
        lead_id=outcome.lead_id,
        decision=outcome.decision,
        reasons=outcome.reasons,
        ref=item.lead.ref,
        campaign=item.lead.campaign,
        channel=item.channel,
        test=item.lead.test,
        replayed=outcome.replayed,
        score=item.verdict.score if item.verdict is not None else None,
        sales=tuple(Sale(b, _price(buyers, b)) for b in outcome.buyers),
        payout=campaign.payout if campaign is not None else None,
        show_buyers=distribution.show_buyers if distribution is not None else False,
        offers=result.offers,
        ping_status=outcome.ping_status or item.ping_status or None,
    )


def _price(buyers: Sequence[Buyer], advertiser: AdvertiserId) -> float | None:
    """The price of ``advertiser`` among ``buyers`` (a lead has one to a few sales)."""
    return next((b.price for b in buyers if b.advertiser == advertiser), None)


def _ping_id(value: object, where: str) -> str | None:
    """A post's ``ping_id``: ``None`` when absent; ``InvalidLead`` when not one leadgate
    could have given (``decision.ping.new_ping_id``)."""
    if value is None or value == "":
        return None
    if isinstance(value, str) and PING_ID.fullmatch(value):
        return value
    raise InvalidLead([FieldProblem(f"{where}ping_id", "not a ping id leadgate gave")])
