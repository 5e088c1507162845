"""Rule packs: one YAML file each in ``rules/``, read, validated and compiled once.

A pack::

    description: What this pack is for.        # optional
    rules:
      - id: adult                              # a-z 0-9 _, unique in the campaign's packs
        message: The person must be 18 or older
        reason: rule.adult                     # optional; rule.<id> by default
        require: {kind: age, min: 18}          # or reject_if: / when: + score: / suppression: /
                                               # ip_velocity:

Every problem is reported with the pack file, the rule (its index and id) and the key, e.g.
``rules/fr-b2c.yaml: rules[2] (adult).require.min: -3 must be at least 0``.

``suppression`` and ``ip_velocity`` rules are decided by the store, atomically with dedup and
caps: they compile to ``SuppressionRule`` and ``VelocityRule`` (``gateway.config.model``), not
to predicates.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import yaml

from gateway.config.model import SuppressionRule, VelocityRule
from gateway.config.reader import MAX_COUNT, MISSING, Reader, join, load_yaml, opt, show
from gateway.rules.conditions import compile_condition
from gateway.rules.model import Action, Rule, RuleSet

RULE_ID: Final = re.compile(r"[a-z][a-z0-9_]{0,62}")
REASON: Final = re.compile(r"rule(\.[a-z0-9_]+)+")
PACK_NAME: Final = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
_ACTIONS: Final = ("require", "reject_if", "when", "suppression", "ip_velocity")
_RULE_KEYS: Final = ("message", "reason", "score", *_ACTIONS)


@dataclass(frozen=True, slots=True)
class Pack:
    """A compiled pack. ``path``: the file as messages show it; ``digest``: SHA-256 of its bytes."""

    name: str
    path: str
    description: str
    rules: tuple[Rule, ...]
    suppression: tuple[SuppressionRule, ...] = ()
    velocity: tuple[VelocityRule, ...] = ()
    digest: str = ""


def read_pack(
    r: Reader, path: Path, *, name: str | None = None, known_lists: Collection[str] | None = None
) -> Pack | None:
    """Read and compile the pack file at ``path`` (problems reported into ``r``).

    ``known_lists``: the suppression list ids a ``suppression`` rule may name (``None``: not
    checked, for dry runs without a configuration). Returns ``None`` when the file cannot be
    read or parsed at all.
    """
    shown = os.path.normpath(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        r.fail(shown, f"cannot read rule pack: {exc.strerror or exc}")
        return None
    try:
        data = load_yaml(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        r.fail(shown, f"not UTF-8 text (byte {exc.start})")
        return None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{shown}:{mark.line + 1}:{mark.column + 1}" if mark is not None else shown
        why = ": ".join(part for part in (exc.context, exc.problem) if part)
        r.fail(where, f"YAML syntax error: {why}")
        return None
    except yaml.YAMLError as exc:
        r.fail(shown, f"YAML error: {exc}")
        return None
    return parse_pack(
        r, data, name=name or path.stem, shown=shown, known_lists=known_lists,
        digest=hashlib.sha256(raw).hexdigest(),
    )  # fmt: skip


def parse_pack(
    r: Reader,
    data: object,
    *,
    name: str,
    shown: str,
    known_lists: Collection[str] | None = None,
    digest: str = "",
) -> Pack:
    """Compile a pack from what ``load_yaml`` returned; ``shown`` prefixes every problem."""
    top = Reader()
    root = top.mapping(
        data, "", "a rule pack (a mapping with rules)", required=("rules",),
        optional=("description",),
    )  # fmt: skip
    for issue in top.issues:
        r.fail(f"{shown}: {issue.path}" if issue.path else shown, issue.message)
    description = opt(root, "description", "")
    if not isinstance(description, str):
        r.fail(f"{shown}: description", f"expected a text, got {show(description)}")
        description = ""
    rules: list[Rule] = []
    suppression: list[SuppressionRule] = []
    velocity: list[VelocityRule] = []
    first_at: dict[str, int] = {}
    items = r.items(root.get("rules", MISSING), f"{shown}: rules", "a list of rules")
    for i, item in enumerate(items):
        raw_id = item.get("id") if isinstance(item, dict) else None
        valid_id = isinstance(raw_id, str) and RULE_ID.fullmatch(raw_id) is not None
        at = f"{shown}: rules[{i}]" + (f" ({raw_id})" if valid_id else "")
        fields = r.mapping(item, at, "a rule (a mapping)", required=("id",), optional=_RULE_KEYS)
        if "id" in fields and not valid_id:
            r.fail(join(at, "id"), f"{show(raw_id)} is not a rule id (a-z 0-9 _, from a letter)")
        rule_id = str(raw_id) if valid_id else f"rules[{i}]"
        if valid_id and rule_id in first_at:
            r.fail(
                join(at, "id"), f"rule id {rule_id!r} is already used by rules[{first_at[rule_id]}]"
            )
        first_at.setdefault(rule_id, i)
        built = _rule(r, fields, at, rule_id, name, known_lists)
        if isinstance(built, Rule):
            rules.append(built)
        elif isinstance(built, SuppressionRule):
            suppression.append(built)
        elif isinstance(built, VelocityRule):
            velocity.append(built)
    return Pack(name, shown, description, tuple(rules), tuple(suppression), tuple(velocity), digest)


def _rule(
    r: Reader,
    fields: dict[str, object],
    at: str,
    rule_id: str,
    pack: str,
    known_lists: Collection[str] | None,
) -> Rule | SuppressionRule | VelocityRule | None:
    reason = opt(fields, "reason", f"rule.{rule_id}")
    if not isinstance(reason, str) or not REASON.fullmatch(reason):
        r.fail(join(at, "reason"), f"{show(reason)} is not a reason code like rule.adult")
        reason = f"rule.{rule_id}"
    message = fields.get("message", MISSING)
    if not isinstance(message, str) or not message.strip():
        r.fail(join(at, "message"), "every rule needs a message (text for people)")
        message = rule_id
    actions = [key for key in _ACTIONS if key in fields]
    if len(actions) != 1:
        what = "none" if not actions else " and ".join(actions)
        r.fail(at, f"a rule has exactly one of {', '.join(_ACTIONS)} (found {what})")
        return None
    (action,) = actions
    if "score" in fields and action != "when":
        r.fail(join(at, "score"), "only a when: rule scores (require/reject_if rules reject)")
    if action == "suppression":
        lists = _lists(r, fields["suppression"], join(at, "suppression"), known_lists)
        return SuppressionRule(rule_id, reason, message, lists)
    if action == "ip_velocity":
        spec = r.mapping(
            fields["ip_velocity"], join(at, "ip_velocity"), "a mapping with limit and window",
            required=("limit", "window"),
        )  # fmt: skip
        limit = r.integer(
            spec.get("limit", MISSING), join(at, "ip_velocity.limit"), 1, fallback=1,
            maximum=MAX_COUNT,
        )  # fmt: skip
        window_s = r.duration(spec.get("window", MISSING), join(at, "ip_velocity.window"))
        return VelocityRule(rule_id, reason, message, limit, window_s)
    test = compile_condition(r, fields[action], join(at, action))
    points = 0
    if action == "when":
        value = fields.get("score", MISSING)
        if value is MISSING:
            r.fail(join(at, "score"), "a when: rule needs a score (points, like 10 or -20)")
        elif isinstance(value, bool) or not isinstance(value, int) or value == 0:
            r.fail(join(at, "score"), f"expected whole points other than 0, got {show(value)}")
        else:
            points = value
    return Rule(rule_id, pack, reason, message, Action(action), test, points)


def _lists(r: Reader, value: object, path: str, known: Collection[str] | None) -> tuple[str, ...]:
    spec = r.mapping(value, path, "a mapping with lists", required=("lists",))
    at = join(path, "lists")
    if known is not None:
        return r.refs(spec.get("lists", MISSING), at, "suppression list", known)
    ids: list[str] = []
    for i, item in enumerate(r.items(spec.get("lists", MISSING), at, "a list of list ids")):
        if isinstance(item, str) and item:
            ids.append(item)
        else:
            r.fail(f"{at}[{i}]", f"expected a suppression list id, got {show(item)}")
    if "lists" in spec and not ids:
        r.fail(at, "needs at least one suppression list")
    return tuple(ids)


@dataclass(frozen=True, slots=True)
class CampaignRules:
    """What a campaign's ``rules:`` compile to: the pure rules and the store-decided ones."""

    rule_set: RuleSet | None
    suppression: tuple[SuppressionRule, ...] = ()
    velocity: tuple[VelocityRule, ...] = ()


class PackLibrary:
    """The packs one configuration names, each read and compiled once, from ``rules_dir``
    (``<rules_dir>/<name>.yaml``). Problems go to the configuration's ``Reader``."""

    def __init__(
        self, r: Reader, rules_dir: Path, *, known_lists: Collection[str] | None = None
    ) -> None:
        self.r = r
        self.rules_dir = rules_dir
        self.known_lists = known_lists
        self._packs: dict[str, Pack | None] = {}

    def pack(self, name: str) -> Pack | None:
        if name not in self._packs:
            path = self.rules_dir / f"{name}.yaml"
            self._packs[name] = read_pack(self.r, path, name=name, known_lists=self.known_lists)
        return self._packs[name]

    def checksum(self, base: str) -> str:
        """``base`` (the config file's digest) combined with every pack read, so a change to
        any pack file changes the configuration's checksum; ``base`` alone without packs."""
        packs = sorted((name, pack.digest) for name, pack in self._packs.items() if pack)
        if not packs:
            return base
        text = base + "".join(f"\n{name}:{digest}" for name, digest in packs)
        return hashlib.sha256(text.encode()).hexdigest()

    def campaign_rules(
        self,
        value: object,
        path: str,
        *,
        default_country: str,
        min_score: float | None,
        min_score_path: str,
    ) -> CampaignRules:
        """Compile a campaign's ``rules: [pack names]`` into one ``RuleSet``."""
        names: list[str] = []
        packs: list[tuple[str, Pack]] = []
        for i, name in enumerate(self.r.items(value, path, "a list of rule pack names")):
            at = f"{path}[{i}]"
            if not isinstance(name, str) or not PACK_NAME.fullmatch(name):
                self.r.fail(at, f"{show(name)} is not a rule pack name (a file in rules_dir)")
            elif name in names:
                self.r.fail(at, f"{name!r} is listed twice")
            else:
                names.append(name)
                pack = self.pack(name)
                if pack is not None:
                    packs.append((at, pack))
        return combine_packs(
            self.r, packs, default_country=default_country, min_score=min_score,
            min_score_path=min_score_path,
        )  # fmt: skip


def combine_packs(
    r: Reader,
    packs: list[tuple[str, Pack]],
    *,
    default_country: str | None,
    min_score: float | None,
    min_score_path: str,
) -> CampaignRules:
    """One ``RuleSet`` from several packs, in order (``packs``: where each is named, and it).
    Rule ids must be unique across the packs: a reason code names one rule."""
    rules: list[Rule] = []
    suppression: list[SuppressionRule] = []
    velocity: list[VelocityRule] = []
    owner: dict[str, str] = {}
    for at, pack in packs:
        ids = [
            *(x.id for x in pack.rules),
            *(x.id for x in pack.suppression),
            *(x.id for x in pack.velocity),
        ]
        for rule_id in ids:
            if rule_id in owner:
                r.fail(at, f"rule id {rule_id!r} is in packs {owner[rule_id]!r} and {pack.name!r}")
            owner.setdefault(rule_id, pack.name)
        rules += pack.rules
        suppression += pack.suppression
        velocity += pack.velocity
    rule_set = None
    if rules:
        rule_set = RuleSet(
            tuple(rules), packs=tuple(pack.name for _, pack in packs),
            default_country=default_country, min_score=min_score,
        )  # fmt: skip
    if min_score is not None and (rule_set is None or not rule_set.scoring):
        r.fail(min_score_path, "needs a rule pack with scoring rules (when: + score:)")
    return CampaignRules(rule_set, tuple(suppression), tuple(velocity))
