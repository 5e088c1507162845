"""The strict reader every configuration file goes through: ``leadgate.yaml``, rule packs,
delivery settings.

A ``Reader`` collects problems instead of raising: each method reports into ``issues`` and
returns a harmless fallback, so the rest of the file is still checked and the user fixes
everything in one pass. ``load_yaml`` refuses keys given twice.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Collection, Hashable, Mapping
from datetime import date
from enum import StrEnum
from typing import Any, Final, TypeVar

import yaml

from gateway.config.durations import parse_duration_s
from gateway.errors import ConfigIssue

# Ids end up in Redis keys and Prometheus labels: short, lower-case, no separators of either.
ID = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
ID_RULE = "use 1-63 of a-z 0-9 - _, starting with a letter or digit"
#: A required key that is absent (already reported): readers return their fallback silently.
MISSING: Final = object()
#: The largest limit a cap may name: the decision script reads it as a double (exact up to
#: 2^53; a larger whole number could not even be sent).
MAX_COUNT: Final = 2**53 - 1

_E = TypeVar("_E", bound=StrEnum)


def duration_of(value: object) -> int:
    """``parse_duration_s`` for a value of any type YAML may produce."""
    if isinstance(value, str | int):
        return parse_duration_s(value)
    raise ValueError(f"{show(value)} is not a duration like 30m, 1h, 1d")


def opt(fields: Mapping[str, object], key: str, default: object) -> object:
    """An optional key's value; an empty value (``key:`` with everything below commented
    out) counts as absent, which is what the user meant."""
    value = fields.get(key)
    return default if value is None else value


def join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def show(value: object) -> str:
    """The bad value as a message shows it: short, and never a whole structure."""
    if value is None:
        return "nothing"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    text = repr(value.isoformat() if isinstance(value, date) else value)
    return text if len(text) <= 60 else text[:57] + "..."


class Reader:
    """Collects issues; every reader reports into ``issues`` and returns a fallback on failure.

    A value of ``MISSING`` (a required key that is absent, already reported by ``mapping``)
    returns the fallback silently so one problem is reported once.
    """

    def __init__(self) -> None:
        self.issues: list[ConfigIssue] = []

    def fail(self, path: str, message: str) -> None:
        self.issues.append(ConfigIssue(path, message))

    def mapping(
        self,
        value: object,
        path: str,
        what: str,
        *,
        required: tuple[str, ...] = (),
        optional: tuple[str, ...] = (),
    ) -> dict[str, object]:
        if value is MISSING:
            return {}
        if not isinstance(value, dict):
            self.fail(path, f"expected {what}, got {show(value)}")
            return {}
        allowed = required + optional
        fields: dict[str, object] = {}
        for key, item in value.items():
            # Without declared keys (dedup `channels:`) every key is data, checked by the caller.
            if not allowed or (isinstance(key, str) and key in allowed):
                fields[str(key)] = item
                continue
            close = difflib.get_close_matches(str(key), allowed, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            self.fail(join(path, str(key)), f"unknown key{hint}")
        for key in required:
            if key not in value:
                self.fail(join(path, key), "required key is missing")
        return fields

    def items(self, value: object, path: str, what: str) -> list[object]:
        if value is MISSING:
            return []
        if not isinstance(value, list):
            self.fail(path, f"expected {what}, got {show(value)}")
            return []
        return value

    def id(self, value: object, path: str, kind: str) -> str:
        if value is MISSING:
            return ""
        if not isinstance(value, str) or not ID.fullmatch(value):
            self.fail(path, f"{show(value)} is not a valid {kind} id ({ID_RULE})")
            return ""
        return value

    def ref(self, value: object, path: str, kind: str, known: Collection[str]) -> str:
        if value is MISSING:
            return ""
        if not isinstance(value, str):
            self.fail(path, f"expected a {kind} id, got {show(value)}")
            return ""
        if value not in known:
            names = list(known)  # file order, which is how the user thinks of them
            listed = ", ".join(names[:10]) + (", ..." if len(names) > 10 else "") or "none"
            self.fail(path, f"unknown {kind} {value!r} (known: {listed})")
        return value

    def refs(
        self, value: object, path: str, kind: str, known: Collection[str], *, empty: bool = False
    ) -> tuple[str, ...]:
        ids: list[str] = []
        items = self.items(value, path, f"a list of {kind} ids")
        if value == [] and not empty:
            self.fail(path, f"needs at least one {kind}")
        for i, item in enumerate(items):
            id_ = self.ref(item, f"{path}[{i}]", kind, known)
            if id_ in ids:
                self.fail(f"{path}[{i}]", f"{id_!r} is listed twice")
            elif id_:
                ids.append(id_)
        return tuple(ids)

    def choice(self, value: object, path: str, enum: type[_E]) -> _E:
        options = [member.value for member in enum]
        if value is MISSING:
            return enum(options[0])
        if isinstance(value, str) and value in options:
            return enum(value)
        self.fail(path, f"{show(value)} is not one of {', '.join(options)}")
        return enum(options[0])

    def integer(
        self, value: object, path: str, minimum: int, *, fallback: int, maximum: int | None = None
    ) -> int:
        if value is MISSING:
            return fallback
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(path, f"expected a whole number, got {show(value)}")
            return fallback
        if value < minimum:
            self.fail(path, f"{value} must be at least {minimum}")
            return fallback
        if maximum is not None and value > maximum:
            self.fail(path, f"{value} must be at most {maximum:,}")
            return fallback
        return value

    def number(self, value: object, path: str, *, positive: bool) -> float:
        if value is MISSING:
            return 1.0
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            self.fail(path, f"expected a number, got {show(value)}")
            return 1.0
        if value < 0 or (positive and value == 0):
            self.fail(path, f"{value} must be {'more than 0' if positive else '0 or more'}")
            return 1.0
        return float(value)

    def boolean(self, value: object, path: str) -> bool:
        if not isinstance(value, bool):
            self.fail(path, f"expected true or false, got {show(value)}")
            return False
        return value

    def duration(self, value: object, path: str) -> int:
        if value is MISSING:
            return 1
        try:
            return duration_of(value)
        except ValueError as exc:
            self.fail(path, str(exc))
            return 1


def display_name(r: Reader, fields: Mapping[str, object], path: str, id_: str) -> str:
    """An entry's optional display ``name`` (channels, advertisers, campaigns, partners,
    suppression lists); its id when absent or invalid (reported)."""
    name = opt(fields, "name", id_)
    if not isinstance(name, str) or not name.strip():
        r.fail(path + ".name", f"expected a display name (text), got {show(name)}")
        return id_
    return name


# --- YAML --------------------------------------------------------------------------------


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader, but a key repeated in one mapping is an error: PyYAML would keep
    the last silently, so a second ``caps:`` in a campaign would drop the first caps."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        seen: dict[Hashable, yaml.Node] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *defaults` then overriding a key is the point of merges
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, Hashable):
                continue  # the base class reports unhashable keys itself
            if key in seen:
                first = seen[key].start_mark.line + 1
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"duplicate key {key!r} (first at line {first})",
                    key_node.start_mark,
                )
            seen[key] = key_node
        return super().construct_mapping(node, deep)


def load_yaml(text: str) -> object:
    loader = _StrictLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()
