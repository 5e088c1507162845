"""Compiled rules and their evaluation: ``RuleSet.evaluate(lead, now_s)`` returns a ``Verdict``.

A rule is a predicate (a plain closure over an ``Env``) with an action:

- ``require``: the lead fails the rule when the predicate is false;
- ``reject_if``: the lead fails the rule when the predicate is true;
- ``score``: the rule never fails a lead; when the predicate is true its points (positive or
  negative) are added to the lead's score, which starts at 0.

A lead is rejected when it fails any rule, or when the campaign sets a minimum score and the
score is below it. Evaluation runs every rule (every failure is reported, not the first one),
allocates one ``Env`` and, when something failed or a rule scored, one ``Verdict``.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, cast

import phonenumbers

from gateway.leads.lead import Lead

SCORE_BELOW_MINIMUM: Final = "score.below_minimum"


class Env:
    """What a predicate sees: the lead, the instant of evaluation (epoch seconds), the
    resolved channel and partner, and the country a lead without one is taken to be in (its
    campaign's phone region). Values that cost something (the phone number parsed, today's
    date) are computed at most once per evaluation, and only when a rule asks."""

    __slots__ = ("_phone", "_today", "channel", "country", "lead", "now_s", "partner")

    def __init__(
        self,
        lead: Lead,
        now_s: float,
        channel: str | None = None,
        partner: str | None = None,
        country: str | None = None,
    ) -> None:
        self.lead = lead
        self.now_s = now_s
        self.channel = channel
        self.partner = partner
        self.country = country
        self._phone: phonenumbers.PhoneNumber | bool | None = False
        self._today = ""

    def phone_number(self) -> phonenumbers.PhoneNumber | None:
        """The lead's phone parsed by libphonenumber (``None`` when absent or unreadable)."""
        if self._phone is False:
            number = None
            if self.lead.phone is not None:
                number = from_e164(self.lead.phone)
            self._phone = number
        return self._phone if isinstance(self._phone, phonenumbers.PhoneNumber) else None

    def today(self) -> str:
        """Today's date in UTC at ``now_s``, as ``YYYY-MM-DD``."""
        if not self._today:
            self._today = datetime.fromtimestamp(self.now_s, UTC).date().isoformat()
        return self._today


Predicate = Callable[[Env], bool]

_COUNTRY_CODES: Final = frozenset(phonenumbers.COUNTRY_CODE_TO_REGION_CODE)


def from_e164(text: str) -> phonenumbers.PhoneNumber | None:
    """The number of an E.164 string, as ``phonenumbers.parse`` would give it, without its
    cost (about 15 µs): country calling codes are prefix-free, so the first 1 to 3 digits that
    form one are the code. Anything but ``+`` and digits goes through ``parse``."""
    digits = text[1:]
    if text[:1] == "+" and digits.isascii() and digits.isdigit() and len(digits) > 3:
        for size in (1, 2, 3):
            code = int(digits[:size])
            if code in _COUNTRY_CODES:
                national = digits[size:]
                zeros = len(national) - len(national.lstrip("0"))
                number = phonenumbers.PhoneNumber(country_code=code, national_number=int(national))
                if zeros and national.strip("0"):
                    number.italian_leading_zero = True
                    if zeros > 1:
                        number.number_of_leading_zeros = zeros
                return number
    try:
        return phonenumbers.parse(text, None)
    except phonenumbers.NumberParseException:
        return None


class _ReadLog:
    """A lead that notes which of its fields are read (``RuleSet.evaluate_probe``)."""

    def __init__(self, lead: Lead) -> None:
        self._lead = lead
        self.read: set[str] = set()

    def __getattr__(self, name: str) -> object:
        self.read.add(name)
        return getattr(self._lead, name)


class Action(enum.StrEnum):
    REQUIRE = "require"
    REJECT_IF = "reject_if"
    SCORE = "when"


@dataclass(frozen=True, slots=True)
class Rule:
    """One compiled rule of a pack. ``reason`` is its stable code (``rule.<id>`` unless the
    pack sets one), ``message`` is for people, ``points`` is only used by scoring rules."""

    id: str
    pack: str
    reason: str
    message: str
    action: Action
    test: Predicate
    points: int = 0

    def fails(self, env: Env) -> bool:
        """Whether the lead fails this rule (scoring rules never fail a lead)."""
        if self.action is Action.REQUIRE:
            return not self.test(env)
        if self.action is Action.REJECT_IF:
            return self.test(env)
        return False


@dataclass(slots=True)  # built per lead: see gateway.decision.model
class Verdict:
    """What the rules said about one lead.

    ``failed``: every rule the lead failed, in pack order. ``scored``: every scoring rule whose
    condition held. ``score``: the sum of their points, ``None`` when the rule set has no
    scoring rule. ``below_minimum``: the campaign's minimum score was not reached.
    """

    failed: tuple[Rule, ...] = ()
    scored: tuple[Rule, ...] = ()
    score: int | None = None
    below_minimum: bool = False

    @property
    def rejected(self) -> bool:
        return bool(self.failed) or self.below_minimum

    @property
    def reasons(self) -> tuple[str, ...]:
        """The reason codes of a rejection, each once: every failed rule's, then, below the
        minimum score, ``score.below_minimum`` and the codes of the rules that took points off."""
        codes = [rule.reason for rule in self.failed]
        if self.below_minimum:
            codes.append(SCORE_BELOW_MINIMUM)
            codes += [rule.reason for rule in self.scored if rule.points < 0]
        return tuple(dict.fromkeys(codes))


PASSED: Final = Verdict()


class RuleSet:
    """A campaign's compiled rules (its packs combined, in the order the campaign names them).

    ``default_country``: the country of leads that name none (the campaign's phone region).
    ``min_score``: leads scoring below it are rejected (``None``: no minimum).
    """

    __slots__ = ("_gates", "_scorers", "default_country", "min_score", "packs", "rules")

    def __init__(
        self,
        rules: tuple[Rule, ...],
        *,
        packs: tuple[str, ...] = (),
        default_country: str | None = None,
        min_score: float | None = None,
    ) -> None:
        self.rules = rules
        self.packs = packs
        self.default_country = default_country
        self.min_score = min_score
        # (rule, predicate, the predicate's value that fails the lead)
        self._gates = tuple(
            (rule, rule.test, rule.action is Action.REJECT_IF)
            for rule in rules
            if rule.action is not Action.SCORE
        )
        self._scorers = tuple((rule, rule.test) for rule in rules if rule.action is Action.SCORE)

    @property
    def scoring(self) -> bool:
        """Whether any rule scores (answers then carry the score)."""
        return bool(self._scorers)

    def __repr__(self) -> str:
        return f"RuleSet(packs={self.packs!r}, rules={len(self.rules)}, min_score={self.min_score})"

    def evaluate(
        self,
        lead: Lead,
        now_s: float,
        *,
        channel: str | None = None,
        partner: str | None = None,
    ) -> Verdict:
        """Run every rule on ``lead`` at ``now_s`` (epoch seconds). Pure; never raises."""
        env = Env(lead, now_s, channel, partner, self.default_country)
        failed = [rule for rule, test, failing in self._gates if test(env) is failing]
        if not self._scorers:
            return Verdict(tuple(failed)) if failed else PASSED
        score = 0
        scored = []
        for rule, test in self._scorers:
            if test(env):
                score += rule.points
                scored.append(rule)
        below = self.min_score is not None and score < self.min_score
        return Verdict(tuple(failed), tuple(scored), score, below)

    def evaluate_probe(
        self,
        lead: Lead,
        now_s: float,
        unknown: frozenset[str],
        *,
        channel: str | None = None,
        partner: str | None = None,
    ) -> Verdict:
        """The rules a probe can decide (a ping: ``leads.parse.parse_probe``), run on ``lead``
        whose fields named in ``unknown`` are the person's, not sent yet.

        A rule is decided at the ping when what it read to reach its answer holds none of
        ``unknown`` (reads are recorded as the predicate runs, so ``any:`` that found its
        answer in the postal code is decided, one that had to look at the email is not).
        Undecided rules are left to the post, where every rule runs again. The minimum score
        rejects a ping only when even every undecided scoring rule's points could not reach
        it. Pure; never raises."""
        reads = _ReadLog(lead)
        env = Env(cast(Lead, reads), now_s, channel, partner, self.default_country)

        def decided(test: Predicate) -> bool | None:
            reads.read.clear()
            value = test(env)
            return None if reads.read & unknown else value

        failed = [rule for rule, test, failing in self._gates if decided(test) is failing]
        if not self._scorers:
            return Verdict(tuple(failed)) if failed else PASSED
        score = best = 0
        scored = []
        for rule, test in self._scorers:
            value = decided(test)
            if value is None:
                best += max(0, rule.points)
            elif value:
                score += rule.points
                scored.append(rule)
        below = self.min_score is not None and score + best < self.min_score
        return Verdict(tuple(failed), tuple(scored), score, below)

    def explain(
        self,
        lead: Lead,
        now_s: float,
        *,
        channel: str | None = None,
        partner: str | None = None,
    ) -> list[tuple[Rule, bool]]:
        """Each rule with whether its condition held for ``lead`` (for ``leadgate rules``)."""
        env = Env(lead, now_s, channel, partner, self.default_country)
        return [(rule, rule.test(env)) for rule in self.rules]
